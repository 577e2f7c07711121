"""The decoders: one value-guided token decoder (Algorithm 1), plus sampling and Best-of-N.

Both implement the ``Decoder`` protocol (``tqstar.decoding.protocol``). ARGS, CD, TQ* direct, TQ* indirect
and soft transfer are all ``ValueGuidedDecoder`` with a different ``ValueEstimator``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm import tqdm

from ..errors import ConfigError, RewardError
from ..jsonl import dumps
from ..models.protocol import (LanguageModel, check_prompt, forward_tokens, max_candidates, per_prefix,
                               require_shared_vocabulary)
from ..rewards.protocol import Reward, checked_scores
from .pruning import needing_values, winners, without_losers
from .protocol import (SELECT_GREEDY, GenerationResult, OnToken, StepTrace, ValueEstimate, ValueEstimator,
                       ValueQuery)


@dataclass
class StepDistribution:
    """π_alg over the top-k candidates of a batch of A states."""

    candidates: torch.Tensor  # (A, k) token ids
    prior: torch.Tensor  # (A, k) log π_prior(z | s_t)
    values: torch.Tensor  # (A, k) Q̂(s_t, z)
    logits: torch.Tensor  # (A, k) log π_prior + α·Q̂; −inf for candidates --prune ruled out
    estimate: ValueEstimate | None

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    def chosen_from(self, selection: str, temperature: float) -> torch.Tensor:
        """The distribution a token is actually chosen from: π_alg for the argmax, π_alg^(1/T) renormalised
        when sampling at temperature T."""
        return self.probabilities if selection == SELECT_GREEDY else torch.softmax(self.logits / temperature, dim=-1)


@dataclass
class DecodingSettings:
    """What the value-guided loop itself needs (a subset of ``DecodeConfig``)."""

    top_k: int = 10
    alpha: float = 1.0
    selection: str = SELECT_GREEDY
    selection_temperature: float = 1.0
    max_new_tokens: int = 32
    batch_size: int = 8
    prune: bool = False  # greedy selection: skip the value of candidates that cannot win (exact choices)


class ValueGuidedDecoder:
    """Algorithm 1: ``π_alg(z | s_t) ∝ π_prior(z | s_t) · exp(α · Q̂(s_t, z))`` over the proposal's top-k."""

    def __init__(self, *, proposal: LanguageModel, prior: LanguageModel, estimator: ValueEstimator | None,
                 settings: DecodingSettings, method: str = "value-guided", reward: Reward | None = None,
                 generator: torch.Generator | None = None, progress: bool = False):
        require_shared_vocabulary(proposal, prior, "Taking the prior's log-probs of the proposal's candidates")
        known = max_candidates(proposal)  # a remote proposal ranks only its top log-probs
        if known is not None and settings.top_k > known:
            raise ConfigError(f"top_k={settings.top_k} but the proposal model {proposal.name!r} "
                              f"returns only {known} log-probs per token. Lower --top-k to {known} or raise "
                              "?top_logprobs= in its spec (and the server's --max-logprobs).")
        self.proposal, self.prior, self.estimator = proposal, prior, estimator
        self.settings, self.method, self.reward = settings, method, reward
        self.generator = generator
        self.progress = progress
        # everything that runs a model in a step, so forward_tokens is the step's whole compute
        self.models = _unique(proposal, prior, *getattr(estimator, "models", ()))
        self.output_model = proposal

    def generate(self, prompts: Sequence[str], *, on_token: OnToken | None = None,
                 max_new_tokens: int | Sequence[int] | None = None) -> list[GenerationResult]:
        """Decode one response per prompt.

        ``on_token(index, token)``, when given, sees every token as it is chosen for ``prompts[index]``;
        returning True ends that response there (a server streams and cancels with it).
        ``max_new_tokens``: one budget for every prompt or one per prompt (default: the settings'), so
        that each prompt's rollouts stop where its response must, whatever its batch-mates may write.
        """
        default = self.settings.max_new_tokens if max_new_tokens is None else max_new_tokens
        budgets = per_prefix(default, len(prompts))
        results = []
        for start in range(0, len(prompts), self.settings.batch_size):
            end = start + self.settings.batch_size
            results.extend(self._generate_batch(list(prompts[start:end]), budgets[start:end], on_token, start))
        return results

    def _generate_batch(self, prompts: list[str], budgets: list[int], on_token=None, offset: int = 0
                        ) -> list[GenerationResult]:
        started, counted = time.perf_counter(), _forward_tokens(*self.models)
        prior_prompts = [check_prompt(self.prior, p, n) for p, n in zip(prompts, budgets)]
        proposal_prompts = prior_prompts if self.proposal is self.prior else [
            check_prompt(self.proposal, p, n) for p, n in zip(prompts, budgets)]
        responses: list[list[int]] = [[] for _ in prompts]
        traces: list[list[StepTrace]] = [[] for _ in prompts]
        active = list(range(len(prompts)))
        for _ in _steps(max(budgets), self.progress, len(prompts)):
            if not active:
                break
            blocks = self._next_blocks([prompts[b] for b in active], [prior_prompts[b] for b in active],
                                       [proposal_prompts[b] for b in active], [responses[b] for b in active],
                                       [traces[b] for b in active], [budgets[b] for b in active])
            stopped = _commit(responses, active, blocks, on_token, offset)
            active = [b for b in active if b not in stopped
                      and responses[b][-1] not in self.proposal.eos_token_ids and len(responses[b]) < budgets[b]]
        texts = [self.proposal.decode(r) for r in responses]
        rewards = checked_scores(self.reward, prompts, texts) if self.reward else [None] * len(prompts)
        seconds = (time.perf_counter() - started) / len(prompts)
        forward = (_forward_tokens(*self.models) - counted) // len(prompts)
        return [GenerationResult(p, t, r, self.method, s, seconds, forward, tr)
                for p, t, r, s, tr in zip(prompts, texts, responses, rewards, traces)]

    def step_distribution(self, prompts: Sequence[str], responses: Sequence[Sequence[int]],
                          prior_prompts=None, proposal_prompts=None, max_new_tokens: Sequence[int] | None = None
                          ) -> "StepDistribution":
        """π_alg at the states ``[x, y_<t]``: the candidates, their prior log-probs, Q̂ and probabilities.
        ``max_new_tokens[a]`` is state a's response budget (default: the settings')."""
        prior_prompts = prior_prompts or [self.prior.encode_prompt(p) for p in prompts]
        prior_lp = self.prior.next_token_logprobs([list(p) + list(r) for p, r in zip(prior_prompts, responses)])
        if self.proposal is self.prior:
            proposal_lp = prior_lp  # (A, V)
        else:
            proposal_prompts = proposal_prompts or [self.proposal.encode_prompt(p) for p in prompts]
            proposal_lp = self.proposal.next_token_logprobs(
                [list(p) + list(r) for p, r in zip(proposal_prompts, responses)])
        k = min(self.settings.top_k, proposal_lp.shape[-1])
        candidates = proposal_lp.topk(k, dim=-1).indices  # (A, k)
        prior = prior_lp.gather(1, candidates).double()  # (A, k) log π_prior(z | s_t)
        estimate = None
        values = torch.zeros_like(prior)
        can_win = winners(prior, self.settings, self.estimator)
        if self.estimator is not None:
            limits = max_new_tokens or [self.settings.max_new_tokens] * len(responses)
            budgets = [n - len(r) - 1 for n, r in zip(limits, responses)]  # tokens each state may emit after z
            query = ValueQuery(prompts, responses, candidates, budgets, needing_values(can_win))
            estimate = self.estimator.estimate(query)
            values = estimate.values.double()
        logits = without_losers(prior + self.settings.alpha * values, prior, can_win)  # log π_alg + const
        _require_usable(logits, self.settings.alpha)
        return StepDistribution(candidates, prior, values, logits, estimate)

    def _next_blocks(self, *state) -> list[list[int]]:
        """The tokens each active state commits this step: ``_step``'s one token. The hook that
        ``BlockwiseDecoder`` (tqstar.decoding.blocks) overrides to commit blocks of B tokens."""
        return [[token] for token in self._step(*state)]

    def _step(self, prompts, prior_prompts, proposal_prompts, responses, traces, budgets) -> list[int]:
        """One token for each active state: candidates, values, π_alg, choice, trace."""
        step = self.step_distribution(prompts, responses, prior_prompts, proposal_prompts, budgets)
        probabilities = step.chosen_from(self.settings.selection, self.settings.selection_temperature)
        picks = self._select(probabilities)
        chosen = step.candidates.gather(1, picks[:, None]).squeeze(1).tolist()
        for a, trace in enumerate(traces):
            trace.append(self._trace(len(responses[a]), step.candidates[a], step.prior[a], step.values[a],
                                     probabilities[a], chosen[a], step.estimate, a))
        return chosen

    def _select(self, probabilities: torch.Tensor) -> torch.Tensor:
        if self.settings.selection == SELECT_GREEDY:
            return probabilities.argmax(-1)
        return torch.multinomial(probabilities.float(), 1, generator=self.generator).squeeze(1)

    def _trace(self, position, candidates, prior, values, probabilities, chosen, estimate, row) -> StepTrace:
        ids = candidates.tolist()
        return StepTrace(
            position=position,
            candidates=ids,
            candidate_texts=[self.proposal.decode([z]) for z in ids],
            prior_logprobs=prior.tolist(),
            values=values.tolist(),
            probabilities=probabilities.tolist(),
            chosen=chosen,
            chosen_text=self.proposal.decode([chosen]),
            weights=None if estimate is None or estimate.weights is None else estimate.weights[row].tolist(),
            ess=None if estimate is None or estimate.ess is None else estimate.ess[row].tolist(),
            raw_weights=None if estimate is None or estimate.raw_weights is None
            else estimate.raw_weights[row].tolist(),
        )


class SamplingDecoder:
    """Plain decoding from one model: greedy (temperature 0) or temperature sampling; with
    ``best_of > 1``, Best-of-N: sample N responses and keep the one the reward scores highest."""

    def __init__(self, *, model: LanguageModel, temperature: float, max_new_tokens: int, method: str,
                 reward: Reward | None = None, best_of: int = 1, batch_size: int = 8,
                 generator: torch.Generator | None = None):
        if best_of > 1 and reward is None:
            raise ValueError("Best-of-N needs a reward to pick the best response")
        self.model, self.temperature, self.max_new_tokens = model, temperature, max_new_tokens
        self.method, self.reward, self.best_of = method, reward, best_of
        self.batch_size, self.generator = batch_size, generator
        self.models, self.output_model = (model,), model

    def generate(self, prompts: Sequence[str], *, on_token: OnToken | None = None,
                 max_new_tokens: int | Sequence[int] | None = None) -> list[GenerationResult]:
        """Decode one response per prompt (the ``Decoder`` contract). Whole responses are drawn first;
        ``on_token`` then sees each chosen response's tokens in order, and a True cuts it after that token."""
        limits = per_prefix(self.max_new_tokens if max_new_tokens is None else max_new_tokens, len(prompts))
        results = []
        for start in range(0, len(prompts), self.batch_size):
            end = start + self.batch_size
            results.extend(self._generate_batch(list(prompts[start:end]), limits[start:end], on_token, start))
        return results

    def _generate_batch(self, prompts: list[str], limits: list[int], on_token, offset: int) -> list[GenerationResult]:
        started, counted = time.perf_counter(), _forward_tokens(self.model)
        prefixes = [check_prompt(self.model, p, n) for p, n in zip(prompts, limits)]
        samples = self.model.sample_continuations(prefixes, None, self.best_of, [n - 1 for n in limits],
                                                  self.temperature, self.generator)
        n = self.best_of
        texts = [self.model.decode(c.tokens) for row in samples for c in row[0]]
        rewards = None
        if self.reward is not None:
            rewards = checked_scores(self.reward, [p for p in prompts for _ in range(n)], texts)
        chosen = []
        for b in range(len(prompts)):
            best = b * n if rewards is None else max(range(b * n, (b + 1) * n), key=rewards.__getitem__)
            chosen.append((list(samples[b][0][best - b * n].tokens), texts[best],
                           None if rewards is None else rewards[best]))
        if on_token is not None:
            chosen = self._streamed(prompts, chosen, on_token, offset)
        seconds = (time.perf_counter() - started) / len(prompts)
        forward = (_forward_tokens(self.model) - counted) // len(prompts)
        return [GenerationResult(prompt, text, tokens, self.method, reward, seconds, forward)
                for prompt, (tokens, text, reward) in zip(prompts, chosen)]

    def _streamed(self, prompts, chosen, on_token: OnToken, offset: int) -> list[tuple]:
        """Each response's tokens through ``on_token``; responses it ends early are cut and re-scored."""
        cut = {}
        for b, (tokens, _, _) in enumerate(chosen):
            stop = next((i + 1 for i, token in enumerate(tokens) if on_token(offset + b, token)), len(tokens))
            if stop < len(tokens):
                cut[b] = tokens[:stop]
        if not cut:
            return chosen
        texts = [self.model.decode(tokens) for tokens in cut.values()]
        scores = checked_scores(self.reward, [prompts[b] for b in cut], texts) if self.reward else [None] * len(cut)
        for (b, tokens), text, score in zip(cut.items(), texts, scores):
            chosen[b] = (tokens, text, score)
        return chosen


def write_trace(results: Sequence[GenerationResult], path, num_prompts: int | None = None) -> None:
    """Write every result's trace as JSON Lines, one record per step (a token, or a block). ``num_prompts``:
    results are several methods' answers to the same prompts, method after method, and ``prompt_index`` names
    the prompt (so a viewer puts one prompt's answers side by side); None: each result is its own prompt."""
    with open(path, "w", encoding="utf-8") as out:
        for index, result in enumerate(results):
            for record in result.trace_records(index % num_prompts if num_prompts else index):
                out.write(dumps({"method": result.method, **record}) + "\n")


def _commit(responses, active, blocks, on_token: OnToken | None, offset: int) -> set[int]:
    """Append each active state's tokens, in order, through ``on_token``; the states it ended (a block is
    cut at the token that ended it)."""
    stopped = set()
    for b, block in zip(active, blocks):
        for token in block:
            responses[b].append(token)
            if on_token is not None and on_token(offset + b, token):
                stopped.add(b)
                break
    return stopped


def _require_usable(logits: torch.Tensor, alpha: float) -> None:
    """π_alg is a distribution only when each row's logits are below +inf, not NaN, and not all −inf; the
    configs bound α and β so this holds for any reward of ordinary size, and this names the rest."""
    if torch.isnan(logits).any() or torch.isposinf(logits).any() or torch.isneginf(logits).all(-1).any():
        raise RewardError(f"π_alg is undefined at this step: log π_prior + α·Q̂ is not finite (α = {alpha:g}). "
                          "Lower alpha, or scale the reward to ordinary magnitudes.")


def _unique(*models: LanguageModel) -> tuple[LanguageModel, ...]:
    return tuple({id(m): m for m in models}.values())


def _forward_tokens(*models: LanguageModel) -> int:
    return sum(forward_tokens(m) for m in _unique(*models))


def _steps(budget: int, progress: bool, batch: int):
    if not progress:
        return range(budget)
    return tqdm(range(budget), desc=f"decoding {batch} prompt(s)", unit="tok", leave=False)
