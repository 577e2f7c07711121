"""A remote OpenAI-compatible *completions* endpoint (vLLM, ``tqstar serve``) as a ``LanguageModel``.

Spec: ``openai:http://HOST:PORT/v1#MODEL`` with optional ``?key=value&...`` options (``RemoteSpec``).

Token ids stay exact both ways: prompts go out as token-id lists (``prompt: list[int]``) and tokens come
back as ``"token_id:N"`` strings (vLLM's ``return_tokens_as_token_ids``). A local tokenizer only turns
text into ids and back, so a remote baseline shares its ids with a local reference of the same family.

How the protocol's calls map to requests (the requests of one call run concurrently):

* ``next_token_logprobs``: ``max_tokens=1, temperature=0, logprobs=L`` → the top-L log-probs; every
  other token gets −inf, so a remote model proposes at most L candidates (keep ``top_k ≤ L``).
* ``sample_continuations``: one request per prefix and branch token ``z``: ``prompt = prefix + [z]``,
  ``n = N``, ``max_tokens = H``, ``stop_token_ids`` = the local EOS ids; ``log ρ(z | prefix)`` comes from
  the prefix's top-L log-probs (or an echo request when ``z`` is not among them). A continuation that
  runs past a local EOS id anyway is cut after it.
* ``continuation_logprobs``: ``echo=True`` returns the prompt's token log-probs; the continuation's
  sum is read off its positions.
"""

from __future__ import annotations

import math
import os
import time
from typing import Sequence

import torch

from ..errors import RemoteModelError
from .http import HttpClient
from .protocol import Continuation, per_prefix
from .spec import REMOTE_PREFIX, RemoteSpec
from .tokenizer import ChatTokenizer

API_KEY_ENV = "TQSTAR_REMOTE_API_KEY"
TOKEN_ID = "token_id:"


class RemoteLanguageModel(ChatTokenizer):
    """A model served over HTTP behind the ``LanguageModel`` protocol, with a local tokenizer (the text side
    is the transformers backend's: same chat template, same ids)."""

    def __init__(self, spec: RemoteSpec, tokenizer, eos_token_ids: frozenset[int]):
        super().__init__(tokenizer)
        self.spec = spec
        self.name = f"{REMOTE_PREFIX}{spec.url}#{spec.model}"
        self.eos_token_ids = frozenset(eos_token_ids)
        key = os.environ.get(API_KEY_ENV)
        self.client = HttpClient(spec.url, headers={"Authorization": f"Bearer {key}"} if key else None,
                                 timeout=spec.timeout, retries=spec.retries, concurrency=spec.concurrency,
                                 hint=", or raise ?timeout= / ?retries= in the model spec")
        try:
            self.max_length = spec.max_length or self._served_context()
        except BaseException:
            self.client.close()
            raise
        #: Next tokens this model can rank: the endpoint returns only its top log-probs.
        self.max_candidates = spec.top_logprobs
        #: Tokens the endpoint reports processing (its usage: prompt + completion), for reports.
        self.forward_tokens = 0
        self.rollout_tokens = 0
        self.rollout_seconds = 0.0

    def _served_context(self) -> int:
        """The model's context length from ``GET /models``, refusing an endpoint that does not serve it."""
        served = self.client.get("models").get("data", [])
        entry = next((m for m in served if m.get("id") == self.spec.model), None)
        if entry is None:
            names = ", ".join(repr(m.get("id")) for m in served) or "none"
            raise RemoteModelError(f"{self.spec.url} does not serve model {self.spec.model!r} (it serves {names}). "
                                   "Put one of those after '#' in the spec.")
        context = entry.get("max_model_len") or getattr(self.tokenizer, "model_max_length", 0)
        return int(context) if 0 < int(context) < 10**7 else 2048

    def close(self) -> None:
        """Close the connections and the request threads; the model cannot be used afterwards."""
        self.client.close()

    # ---- model calls ---------------------------------------------------------------------
    def next_token_logprobs(self, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        top = self.spec.top_logprobs
        answers = self._complete([self._body(p, max_tokens=1, temperature=0.0, logprobs=top) for p in prefixes])
        out = torch.full((len(prefixes), len(self.tokenizer)), -math.inf)  # (B, V)
        for row, answer in enumerate(answers):
            given = _top_logprobs(answer, self.spec)
            if len(given) < min(top, len(self.tokenizer)):
                raise RemoteModelError(
                    f"{self.spec.url} returned {len(given)} log-probs per token, fewer than the {top} asked for. "
                    f"Lower ?top_logprobs= in the model spec (and top_k to at most that), or raise the server's "
                    "limit (vllm serve --max-logprobs N).")
            for key, logprob in given.items():
                out[row, _token_id(key, self.spec, out.shape[1])] = logprob
        return out

    def sample_continuations(
        self,
        prefixes: Sequence[Sequence[int]],
        branches: Sequence[Sequence[int]] | None,
        num_samples: int,
        max_new_tokens: int | Sequence[int],
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> list[list[list[Continuation]]]:
        started = time.perf_counter()
        limits = per_prefix(max_new_tokens, len(prefixes))
        if branches is None:  # the first token is sampled too, then max_new_tokens more
            asks = [(b, 0, list(p), None, limits[b] + 1) for b, p in enumerate(prefixes)]
            branch_logprobs = [[0.0] for _ in prefixes]
        else:
            asks = [(b, j, [*p, z], z, limits[b]) for b, (p, row) in enumerate(zip(prefixes, branches))
                    for j, z in enumerate(row)]
            branch_logprobs = self._branch_logprobs(prefixes, branches)
        needed = [a for a in asks if a[4] > 0 and a[3] not in self.eos_token_ids]
        # stop_token_ids: a server that stops only at its tokenizer's EOS (vLLM with --generation-config vllm)
        # would otherwise roll past a chat model's end-of-turn token
        bodies = [self._body(prompt, max_tokens=limit, temperature=temperature, n=num_samples, logprobs=1,
                             stop_token_ids=sorted(self.eos_token_ids), **_seed(temperature, generator))
                  for _, _, prompt, _, limit in needed]
        sampled = dict(zip([(b, j) for b, j, *_ in needed], self._complete(bodies)))
        out = [[[] for _ in row] for row in branches] if branches is not None else [[[]] for _ in prefixes]
        for b, j, _, first, _ in asks:
            head = () if first is None else (first,)
            tails = self._continuations(sampled[b, j]) if (b, j) in sampled else [((), 0.0)] * num_samples
            out[b][j] = [Continuation(head + tokens, branch_logprobs[b][j] + lp) for tokens, lp in tails]
        self.rollout_seconds += time.perf_counter() - started
        self.rollout_tokens += sum(len(c.tokens) for row in out for branch in row for c in branch)
        return out

    def continuation_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[Sequence[int]]],
    ) -> list[list[float]]:
        pairs = [(b, tuple(c)) for b, group in enumerate(continuations) for c in group if c]
        # max_tokens=1 rather than 0: every server accepts it, and the generated token is ignored
        bodies = [self._body([*prefixes[b], *c], max_tokens=1, temperature=0.0, logprobs=0, echo=True)
                  for b, c in pairs]
        scores = {}
        for (b, c), answer in zip(pairs, self._complete(bodies)):
            start = len(prefixes[b])
            given = _logprobs(answer, self.spec)[0]["token_logprobs"][start:start + len(c)]
            if len(given) != len(c) or any(lp is None for lp in given):
                raise RemoteModelError(f"{self.spec.url} did not echo the prompt's log-probs (echo=true); "
                                       "serve the model with vLLM or tqstar serve.")
            scores[b, c] = float(sum(given))
        return [[scores.get((b, tuple(c)), 0.0) for c in group] for b, group in enumerate(continuations)]

    def _continuations(self, answer: dict) -> list[tuple[tuple[int, ...], float]]:
        """Each choice's generated ids up to and including the first local EOS id, and their summed log-prob."""
        out = []
        for logprobs in _logprobs(answer, self.spec):
            tokens = [_token_id(t, self.spec, len(self.tokenizer)) for t in logprobs["tokens"]]
            scores = logprobs.get("token_logprobs")
            if not isinstance(scores, list) or len(scores) != len(tokens):
                raise RemoteModelError(f"{self.spec.url} answered without a log-prob for every token. tqstar needs "
                                       "an endpoint that returns them (logprobs=N): vLLM or tqstar serve.")
            end = next((i + 1 for i, t in enumerate(tokens) if t in self.eos_token_ids), len(tokens))
            out.append((tuple(tokens[:end]), float(sum(lp for lp in scores[:end] if lp is not None))))
        return out

    # ---- requests ------------------------------------------------------------------------
    def _body(self, prompt: Sequence[int], **params) -> dict:
        # top_p=1 overrides sampling defaults a server may take from the model's generation_config
        return {"model": self.spec.model, "prompt": list(prompt), "return_tokens_as_token_ids": True,
                "top_p": 1.0, **params}

    def _complete(self, bodies: list[dict]) -> list[dict]:
        answers = self.client.post_all("completions", bodies) if bodies else []
        for answer in answers:
            self.forward_tokens += int((answer.get("usage") or {}).get("total_tokens", 0))
        return answers

    def _branch_logprobs(self, prefixes, branches) -> list[list[float]]:
        """``log ρ(z | prefix)`` per branch: from the top-L log-probs, else an echo request."""
        top = self.next_token_logprobs(prefixes)
        found = top.gather(1, torch.tensor([list(row) for row in branches])).tolist()  # (B, k)
        missing = [[(z,) for z, lp in zip(row, lps) if lp == -math.inf] for row, lps in zip(branches, found)]
        if any(missing):
            scored = self.continuation_logprobs(prefixes, missing)
            for lps, row, extra in zip(found, branches, scored):
                fill = iter(extra)
                for j, lp in enumerate(lps):
                    if lp == -math.inf:
                        lps[j] = next(fill)
        return found


def _seed(temperature: float, generator: torch.Generator | None) -> dict:
    """A per-request seed drawn from the caller's generator, so seeded runs repeat."""
    if temperature == 0:
        return {}
    return {"seed": int(torch.randint(0, 2**31 - 1, (1,), generator=generator))}


def _logprobs(answer: dict, spec: RemoteSpec) -> list[dict]:
    """Each choice's ``logprobs`` object, in choice order, refusing an answer without them."""
    choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
    if not choices or any(not isinstance(c.get("logprobs"), dict) or not c["logprobs"].get("tokens")
                          for c in choices):
        raise RemoteModelError(f"{spec.url} answered without log-probs. tqstar needs an endpoint that returns "
                               "them (logprobs=N): serve the model with vLLM or tqstar serve.")
    return [c["logprobs"] for c in choices]


def _top_logprobs(answer: dict, spec: RemoteSpec) -> dict:
    """The first choice's top log-probs at its first token: ``{"token_id:N": log-prob}``."""
    tops = _logprobs(answer, spec)[0].get("top_logprobs")
    if not isinstance(tops, list) or not tops or not isinstance(tops[0], dict):
        raise RemoteModelError(f"{spec.url} answered without top log-probs (logprobs=N). tqstar needs an endpoint "
                               "that returns them: serve the model with vLLM or tqstar serve.")
    return tops[0]


def _token_id(token: str, spec: RemoteSpec, vocabulary: int) -> int:
    """The id in a ``"token_id:N"`` token, refusing text tokens and ids the local tokenizer does not have."""
    if not isinstance(token, str) or not token.startswith(TOKEN_ID):
        raise RemoteModelError(
            f"{spec.url} returned tokens as text ({token!r}), not as 'token_id:N', so their ids are ambiguous. "
            "Use a server that honours return_tokens_as_token_ids (vLLM, tqstar serve).")
    digits = token[len(TOKEN_ID):]
    if not (digits.isascii() and digits.isdigit()) or int(digits) >= vocabulary:
        raise RemoteModelError(
            f"{spec.url} returned token {token!r}, outside the local tokenizer's vocabulary (size {vocabulary}): "
            "the tokenizer does not match the served model. Name the served model's own with ?tokenizer=SPEC.")
    return int(digits)
