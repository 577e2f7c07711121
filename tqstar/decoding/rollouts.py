"""Rollouts for the value estimators: who rolls out each candidate ``[y_<t, z]``, for how many tokens, and
how every rollout text is scored (the target reward r, and for the importance-weighted estimators the log
weight toward ρ*_r). The estimators that turn these scores into Q̂: ``values.py``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..models.protocol import LanguageModel, require_shared_vocabulary
from ..rewards.protocol import Reward, checked_scores
from .protocol import ValueQuery
from .pruning import active_pairs, pairs_query, scattered

#: Rollout rows (candidates × rollouts) of one prefix sampled together; larger N is sampled in chunks.
ROLLOUT_ROWS_BOUND = 1024

def candidate_texts(text_model: LanguageModel, query: ValueQuery) -> list[list[str]]:
    """Text of ``[y_<t, z]`` for each state and candidate: (B, k) strings."""
    return [
        [text_model.decode([*response, z]) for z in row]
        for response, row in zip(query.responses, query.candidates.tolist())
    ]



@dataclass
class RolloutSpec:
    """Who rolls out, for how long, and how each rollout is scored."""

    model: LanguageModel  # ρ_BL (or ρ_ref for CD)
    text_model: LanguageModel  # the model whose vocabulary the candidates are in
    reward: Reward  # r
    num_rollouts: int = 1  # N
    horizon: int | None = 20  # H tokens after z; None runs to EOS
    fixed_horizon: bool = False  # True: H even past the response budget (the paper); False: stop at the budget
    temperature: float = 0.0
    baseline_reward: Reward | None = None  # explicit r_BL
    implicit_reference: LanguageModel | None = None  # ρ_ref of DPO's implicit r_BL = β·log(ρ_BL/ρ_ref)
    beta: float = 1.0  # β of the aligned optimum (and of DPO, for the implicit reward)
    generator: torch.Generator | None = None

    def __post_init__(self):
        if self.implicit_reference is not None:
            require_shared_vocabulary(self.model, self.implicit_reference, "The implicit baseline reward β·log(ρ_BL/ρ_ref)")

    @property
    def weighted(self) -> bool:
        """Rollouts are importance-weighted toward ρ*_r (a baseline reward r_BL is known)."""
        return self.baseline_reward is not None or self.implicit_reference is not None

    @property
    def models(self) -> tuple[LanguageModel, ...]:
        """Every model the estimate runs (their forward tokens are the estimate's compute)."""
        return tuple(m for m in (self.model, self.text_model, self.implicit_reference) if m is not None)


@dataclass
class RolloutScores:
    rewards: torch.Tensor  # (B, k, N) r(x, [y_<t, z, τ_i])
    log_ratio: torch.Tensor  # (B, k, N) log w_i = (r_i − r_BL,i)/β + log ρ_BL(τ_i) − log q_T(τ_i); 0 without r_BL


def score_rollouts(spec: RolloutSpec, query: ValueQuery) -> RolloutScores:
    """Roll out every candidate N times from the spec's model and score the full texts (only the active
    candidates, when the query names them; the others' scores are NaN)."""
    pairs = active_pairs(query)
    if pairs is not None:
        shape = (*query.candidates.shape, spec.num_rollouts)
        if not pairs:
            return RolloutScores(torch.full(shape, math.nan, dtype=torch.float64), torch.full(shape, math.nan))
        scores = score_rollouts(spec, pairs_query(query, pairs))
        return RolloutScores(scattered(scores.rewards, pairs, shape), scattered(scores.log_ratio, pairs, shape))
    B, k = query.candidates.shape
    N = spec.num_rollouts
    shared = spec.model.vocabulary == spec.text_model.vocabulary
    rollouts = _rollouts_shared(spec, query) if shared else _rollouts_by_text(spec, query)
    texts = [text for row in rollouts for cand in row for text in cand[0]]
    prompts = [p for p in query.prompts for _ in range(k * N)]
    rewards = torch.tensor(unique_scores(spec.reward, prompts, texts), dtype=torch.float64).view(B, k, N)
    log_ratio = torch.zeros_like(rewards)
    if spec.baseline_reward is not None:
        baseline = torch.tensor(unique_scores(spec.baseline_reward, prompts, texts), dtype=torch.float64)
        log_ratio = (rewards - baseline.view(B, k, N)) / spec.beta
    elif spec.implicit_reference is not None:
        log_ratio = rewards / spec.beta - _implicit_log_ratio(spec, query, rollouts)
    if spec.weighted and spec.temperature > 0:
        log_ratio = log_ratio + _tempering_correction(spec, rollouts)
    return RolloutScores(rewards, log_ratio)


def unique_scores(reward: Reward, prompts: list[str], texts: list[str]) -> list[float]:
    """``checked_scores`` with each distinct (prompt, text) scored once: sampled rollouts of a short horizon
    often repeat a text, and a reward is a function of the pair."""
    slot: dict[tuple[str, str], int] = {}
    for pair in zip(prompts, texts):
        slot.setdefault(pair, len(slot))
    if len(slot) == len(texts):
        return checked_scores(reward, prompts, texts)
    scores = checked_scores(reward, [p for p, _ in slot], [t for _, t in slot])
    return [scores[slot[pair]] for pair in zip(prompts, texts)]


def _tempering_correction(spec: RolloutSpec, rollouts) -> torch.Tensor:
    """log ρ_BL(τ_i) − log q_T(τ_i): rollouts drawn at temperature T, weighted as if drawn from ρ_BL."""
    continuations = [c for row in rollouts for cand in row for c in cand[1]]
    if spec.temperature != 1 and any(c.sampled_logprob is None for c in continuations):
        raise ConfigError(f"rollout_temperature={spec.temperature:g} needs the rollout model to report the "
                          "log-probs it sampled from, and this backend does not. Use rollout_temperature=1.")
    B, k = len(rollouts), len(rollouts[0])
    return torch.tensor([c.log_correction for c in continuations], dtype=torch.float64).view(B, k, -1)


def _rollout_prefixes(model: LanguageModel, prompts, responses) -> list[list[int]]:
    return [model.encode_prompt(p) + list(r) for p, r in zip(prompts, responses)]


def _rollouts_shared(spec: RolloutSpec, query: ValueQuery):
    """Same vocabulary: the prefix is encoded once and fans out to k × N rollouts (one batch)."""
    prefixes = _rollout_prefixes(spec.model, query.prompts, query.responses)
    horizons = _horizons(spec, prefixes, query.budgets)
    out = _sample_in_chunks(spec, prefixes, query.candidates.tolist(), horizons)
    return [
        [([spec.text_model.decode([*response, *c.tokens]) for c in cand], cand) for cand in row]
        for response, row in zip(query.responses, out)
    ]


def _rollouts_by_text(spec: RolloutSpec, query: ValueQuery):
    """Different vocabularies: each candidate's text is re-encoded by the rollout model."""
    texts = candidate_texts(spec.text_model, query)
    flat_prompts = [p for p, row in zip(query.prompts, texts) for _ in row]
    flat_texts = [t for row in texts for t in row]
    prefixes = [spec.model.encode_prompt(p) + spec.model.encode(t) for p, t in zip(flat_prompts, flat_texts)]
    k = query.candidates.shape[1]
    budgets = None if query.budgets is None else [n for n in query.budgets for _ in range(k)]
    out = _sample_in_chunks(spec, prefixes, None, _horizons(spec, prefixes, budgets))
    flat = [([t + spec.model.decode(c.tokens) for c in row[0]], row[0]) for t, row in zip(flat_texts, out)]
    return [flat[b * k:(b + 1) * k] for b in range(len(query.prompts))]


def _sample_in_chunks(spec: RolloutSpec, prefixes, branches, horizons):
    """``sample_continuations`` for N rollouts per branch, at most ROLLOUT_ROWS_BOUND rows per prefix at a
    time: memory follows the chunk (each row holds a KV cache and a vocabulary-wide row of logits), so a
    large N costs time, not memory."""
    per_prefix = len(branches[0]) if branches else 1
    chunk = max(1, ROLLOUT_ROWS_BOUND // per_prefix)
    out = None
    for start in range(0, spec.num_rollouts, chunk):
        part = spec.model.sample_continuations(prefixes, branches, min(chunk, spec.num_rollouts - start), horizons,
                                               spec.temperature, spec.generator)
        out = part if out is None else [[mine + more for mine, more in zip(row, extra)] for row, extra in zip(out, part)]
    return out


def _horizons(spec: RolloutSpec, prefixes, budgets) -> list[int]:
    """Tokens each row rolls out after z: H, cut to the row's room in the context and, unless the
    horizon is fixed, to what the decoder may still emit (text past the budget can never be the answer)."""
    horizons = []
    for row, prefix in enumerate(prefixes):
        room = spec.model.max_length - len(prefix) - 1
        horizon = room if spec.horizon is None else min(spec.horizon, room)
        if budgets is not None and not spec.fixed_horizon:
            horizon = min(horizon, budgets[row])
        horizons.append(max(0, horizon))
    return horizons


def _implicit_log_ratio(spec: RolloutSpec, query: ValueQuery, rollouts) -> torch.Tensor:
    """r_BL/β = log ρ_BL(z, τ | s) − log ρ_ref(z, τ | s), up to a constant shared by all candidates."""
    B, k = query.candidates.shape
    baseline_lp = torch.tensor([[[c.logprob for c in cand[1]] for cand in row] for row in rollouts],
                               dtype=torch.float64)
    reference = spec.implicit_reference
    prefixes = _rollout_prefixes(reference, query.prompts, query.responses)
    continuations = [[c.tokens for cand in row for c in cand[1]] for row in rollouts]
    reference_lp = torch.tensor(reference.continuation_logprobs(prefixes, continuations), dtype=torch.float64)
    return baseline_lp - reference_lp.view(B, k, -1)
