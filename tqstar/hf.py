"""The transformers backend of the language-model role, with a KV cache shared across rollouts.

Speed comes from two things behind the ``LanguageModel`` calls:

* the prefix state (KV cache of every prefix in the batch, last-position logits) is kept between
  calls and extended by the one token chosen at each decoding step instead of being re-encoded;
* rollouts copy that cache ``k × N`` times (``repeat_interleave`` on the batch axis) and decode all
  ``B × k × N`` rows together, one token per forward pass.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import torch

from .lm import Continuation

#: Rows decoded together in one rollout batch; larger requests are split into chunks of this size.
MAX_ROLLOUT_ROWS = 256


@dataclass
class _PrefixState:
    """KV cache and last logits of a batch of left-padded prefixes."""

    prefixes: list[tuple[int, ...]]
    cache: object  # transformers DynamicCache, batch axis = len(prefixes)
    attention_mask: torch.Tensor  # (B, L) 1 on real tokens, 0 on left padding
    next_position: torch.Tensor  # (B,) position id of the next token
    last_logits: torch.Tensor  # (B, V) logits for the next token, float32


class HFLanguageModel:
    """A transformers causal LM behind the ``LanguageModel`` protocol.

    Build one with ``tqstar.models.load_language_model(spec)``, or wrap a model and tokenizer you
    already hold: ``HFLanguageModel(model, tokenizer, name="my-model")``.
    """

    def __init__(self, model, tokenizer, name: str, chat_template: bool = True):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.use_chat_template = chat_template and getattr(tokenizer, "chat_template", None) is not None
        self.vocabulary = f"{type(tokenizer).__name__}:{len(tokenizer)}:{_vocab_fingerprint(tokenizer)}"
        eos = {tokenizer.eos_token_id, *_as_list(getattr(model.generation_config, "eos_token_id", None))}
        self.eos_token_ids = frozenset(i for i in eos if i is not None)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_token_ids)
        self.max_length = int(getattr(model.config, "max_position_embeddings", 2048))
        self.device = next(model.parameters()).device
        self._state: _PrefixState | None = None
        #: Tokens run through the model (prefill + decode), for benchmarks and reports.
        self.forward_tokens = 0

    # ---- tokenizer -----------------------------------------------------------------------
    def encode_prompt(self, prompt: str) -> list[int]:
        if self.use_chat_template:
            messages = [{"role": "user", "content": prompt}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt)["input_ids"]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    # ---- model calls ---------------------------------------------------------------------
    @torch.inference_mode()
    def next_token_logprobs(self, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        return torch.log_softmax(self._prefix_state(prefixes).last_logits, dim=-1).cpu()

    @torch.inference_mode()
    def sample_continuations(
        self,
        prefixes: Sequence[Sequence[int]],
        branches: Sequence[Sequence[int]] | None,
        num_samples: int,
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> list[list[list[Continuation]]]:
        state = self._prefix_state(prefixes)
        width = 1 if branches is None else len(branches[0])
        if branches is not None and any(len(b) != width for b in branches):
            raise ValueError("every prefix needs the same number of branch tokens")
        # Whole prefixes per chunk, so that each chunk fans out one slice of the cache.
        per_chunk = max(1, MAX_ROLLOUT_ROWS // (width * num_samples))
        out: list[list[list[Continuation]]] = []
        for start in range(0, len(prefixes), per_chunk):
            rows = list(range(start, min(start + per_chunk, len(prefixes))))
            chunk_branches = None if branches is None else [branches[b] for b in rows]
            out.extend(self._rollout_chunk(state, rows, chunk_branches, width, num_samples,
                                           max_new_tokens, temperature, generator))
        return out

    @torch.inference_mode()
    def continuation_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[Sequence[int]]],
    ) -> list[list[float]]:
        state = self._prefix_state(prefixes)
        counts = [len(c) for c in continuations]
        owner = torch.repeat_interleave(torch.arange(len(prefixes)), torch.tensor(counts))
        flat = [list(c) for group in continuations for c in group]
        scores: list[float] = []
        for start in range(0, len(flat), MAX_ROLLOUT_ROWS):
            idx = owner[start:start + MAX_ROLLOUT_ROWS].to(self.device)
            scores.extend(self._score_rows(state, idx, flat[start:start + MAX_ROLLOUT_ROWS]))
        out, pos = [], 0
        for n in counts:
            out.append(scores[pos:pos + n])
            pos += n
        return out

    # ---- prefix state --------------------------------------------------------------------
    def _prefix_state(self, prefixes: Sequence[Sequence[int]]) -> _PrefixState:
        keys = [tuple(p) for p in prefixes]
        state = self._state
        if state is not None and keys == state.prefixes:
            return state
        if state is not None:
            extended = self._extend(state, keys)
            if extended is not None:
                self._state = extended
                return extended
        self._state = self._encode(keys)
        return self._state

    def _encode(self, keys: list[tuple[int, ...]]) -> _PrefixState:
        """Encode prefixes from scratch, left-padded to one length."""
        width = max(len(k) for k in keys)
        ids = torch.full((len(keys), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(keys), width), dtype=torch.long)
        for row, key in enumerate(keys):
            if key:
                ids[row, width - len(key):] = torch.tensor(key)
                mask[row, width - len(key):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = (t.to(self.device) for t in (ids, mask, positions))
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        self.forward_tokens += int(mask.sum())
        return _PrefixState(keys, out.cache, mask, mask.sum(-1), out.logits[:, -1].float())

    def _extend(self, state: _PrefixState, keys: list[tuple[int, ...]]) -> _PrefixState | None:
        """Reuse the cache when every new prefix is a cached prefix plus one token."""
        row_of = {key: row for row, key in enumerate(state.prefixes)}
        rows = [row_of.get(key[:-1]) for key in keys]
        if any(r is None for r in rows) or any(len(k) == 0 for k in keys):
            return None
        index = torch.tensor(rows, device=self.device)
        # Same rows in the same order: extend the cache in place instead of copying it.
        cache = state.cache if rows == list(range(len(state.prefixes))) else _select_rows(state.cache, index)
        new_tokens = torch.tensor([[k[-1]] for k in keys], device=self.device)
        mask = torch.cat([state.attention_mask[index], torch.ones_like(new_tokens)], dim=1)
        position = state.next_position[index]
        out = self.model(input_ids=new_tokens, attention_mask=mask, position_ids=position[:, None],
                         cache=cache, use_cache=True)
        self.forward_tokens += len(keys)
        return _PrefixState(keys, out.cache, mask, position + 1, out.logits[:, -1].float())

    # ---- rollouts ------------------------------------------------------------------------
    def _rollout_chunk(self, state, rows, branches, width, num_samples, max_new_tokens, temperature, generator):
        fan_out = width * num_samples
        index = torch.tensor(rows, device=self.device).repeat_interleave(fan_out)  # (R,)
        cache = _select_rows(state.cache, index)
        mask = state.attention_mask[index]
        position = state.next_position[index].clone()
        logprobs_next = torch.log_softmax(state.last_logits[index], dim=-1)  # (R, V)
        if branches is None:
            token = _sample(logprobs_next, temperature, generator)
        else:
            token = torch.tensor(branches, device=self.device).repeat_interleave(num_samples, dim=1).reshape(-1)
        total = logprobs_next.gather(1, token[:, None]).squeeze(1)
        generated = [token]
        eos = torch.tensor(sorted(self.eos_token_ids), device=self.device)
        finished = torch.isin(token, eos)
        for _ in range(max_new_tokens):
            if bool(finished.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None],
                             cache=cache, use_cache=True)
            self.forward_tokens += int((~finished).sum())
            cache, position = out.cache, position + 1
            step_logprobs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            token = _sample(step_logprobs, temperature, generator)
            token = torch.where(finished, torch.full_like(token, self.pad_token_id), token)
            total += torch.where(finished, 0.0, step_logprobs.gather(1, token[:, None]).squeeze(1))
            generated.append(token)
            finished |= torch.isin(token, eos)
        return _unflatten(torch.stack(generated, 1), total, len(rows), width, num_samples, self.eos_token_ids)

    def _score_rows(self, state: _PrefixState, index: torch.Tensor, rows: list[list[int]]) -> list[float]:
        """log ρ(row | prefix) for continuation rows, right-padded and run in one forward pass."""
        width = max(1, max(len(r) for r in rows))
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        valid = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            valid[i, :len(r)] = True
        ids, valid = ids.to(self.device), valid.to(self.device)
        cache = _select_rows(state.cache, index)
        mask = torch.cat([state.attention_mask[index], torch.ones_like(ids)], dim=1)
        positions = state.next_position[index][:, None] + torch.arange(width, device=self.device)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
        self.forward_tokens += int(valid.sum())
        # Token j of a row is predicted by the logits before it: the prefix's last logits for j = 0.
        logits = torch.cat([state.last_logits[index][:, None], out.logits[:, :-1].float()], dim=1)
        token_lp = torch.log_softmax(logits, dim=-1).gather(2, ids[:, :, None]).squeeze(2)
        return (token_lp * valid).sum(1).tolist()


def _select_rows(cache, index: torch.Tensor):
    """A new cache holding rows ``index`` of ``cache`` (rows may repeat); the original is untouched."""
    from transformers import DynamicCache

    return DynamicCache([(k[index], v[index]) for k, v, *_ in cache])


def _sample(logprobs: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature == 0:
        return logprobs.argmax(-1)
    probs = torch.softmax(logprobs / temperature, dim=-1)
    if generator is not None and generator.device != probs.device:
        probs = probs.to(generator.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logprobs.device)


def _unflatten(tokens: torch.Tensor, logprobs: torch.Tensor, num_prefixes: int, width: int, num_samples: int,
               eos_token_ids: frozenset[int]) -> list[list[list[Continuation]]]:
    """(R, T) token rows → out[b][j][n], each cut after its first EOS."""
    rows = []
    for seq, lp in zip(tokens.tolist(), logprobs.tolist()):
        cut = next((i + 1 for i, t in enumerate(seq) if t in eos_token_ids), len(seq))
        rows.append(Continuation(tuple(seq[:cut]), lp))
    per_prefix = width * num_samples
    return [
        [rows[b * per_prefix + j * num_samples: b * per_prefix + (j + 1) * num_samples] for j in range(width)]
        for b in range(num_prefixes)
    ]


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _vocab_fingerprint(tokenizer) -> int:
    """A cheap stable checksum of a few token strings: same tokenizer family, same ids."""
    probe = [0, 1, 2, 100, 1000, len(tokenizer) // 2, len(tokenizer) - 1]
    tokens = tokenizer.convert_ids_to_tokens([i for i in probe if i < len(tokenizer)])
    return zlib.crc32("\x00".join(map(str, tokens)).encode())
