"""The value-estimator role: ``Q̂(s_t, z)`` for every candidate token. The methods of the paper differ
only here (docs/algorithm.md, "Decoding rule"; which method uses which: ``tqstar.decoding.methods``):

=================  ==========================================================================
ARGS               ``PartialReward``      r(x, [y_<t, z]), no look-ahead
CD                 ``MeanRolloutValue``   mean r over rollouts of the *reference*
TQ* direct         ``MeanRolloutValue``   mean r over rollouts of the aligned *baseline*
CD, TQ* direct     ``BestRolloutValue``   best r of N rollouts: the value of Best-of-N of the rollout model
CD, TQ* direct     ``FirstStepsValue``    N sampled rollouts for the first S tokens, one greedy rollout after
TQ* indirect       ``IndirectValue``      self-normalised importance-weighted mean, with ESS
soft transfer      ``SoftTransferValue``  β · log mean exp((r − r_BL)/β)
=================  ==========================================================================
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..models.protocol import LanguageModel
from ..rewards.protocol import Reward, checked_scores, reward_bounds
from .protocol import ValueEstimate, ValueQuery
from .pruning import active_pairs, pairs_query, scattered
from .rollouts import RolloutSpec, candidate_texts, score_rollouts

#: How the N rollouts of cd and tq-direct make Q̂: their mean reward, or the best of them.
ROLLOUT_MEAN, ROLLOUT_BEST = "mean", "best"
ROLLOUT_VALUES = (ROLLOUT_MEAN, ROLLOUT_BEST)


def require_weighted_rollouts(method: str, num_rollouts: int, temperature: float) -> None:
    """The precondition of the importance-weighted estimators (tq-indirect, soft): N ≥ 2 sampled rollouts.

    One self-normalised weight is always 1, and greedy rollouts repeat one text, so either makes r_BL
    irrelevant: tq-indirect would silently equal tq-direct, soft would be biased.
    """
    if num_rollouts < 2:
        raise ConfigError(f"{method} weights several rollouts per candidate, but num_rollouts={num_rollouts}: one "
                          "self-normalised weight is always 1, so the baseline reward would have no effect. "
                          "Set num_rollouts to 2 or more (default 4).")
    if temperature == 0:
        raise ConfigError(f"{method} importance-weights sampled rollouts, but rollout_temperature=0 makes every "
                          "rollout the same greedy text. Set rollout_temperature > 0 (default 1; other "
                          "temperatures are corrected exactly).")


class PartialReward:
    """ARGS: the reward of the partial response ``[y_<t, z]``."""

    def __init__(self, text_model: LanguageModel, reward: Reward):
        self.text_model, self.reward = text_model, reward
        self.models = (text_model,)
        self.value_bounds = reward_bounds(reward)

    def estimate(self, query: ValueQuery) -> ValueEstimate:
        pairs = active_pairs(query)
        if pairs is not None:
            values = self.estimate(pairs_query(query, pairs)).values if pairs else torch.empty(0, 1)
            return ValueEstimate(scattered(values, pairs, tuple(query.candidates.shape)))
        texts = candidate_texts(self.text_model, query)
        k = query.candidates.shape[1]
        prompts = [p for p in query.prompts for _ in range(k)]
        scores = checked_scores(self.reward, prompts, [t for row in texts for t in row])
        return ValueEstimate(torch.tensor(scores, dtype=torch.float64).view(-1, k))


class MeanRolloutValue:
    """CD (rollouts from the reference) and TQ* direct (rollouts from the aligned baseline):
    ``Q̂ = (1/N) Σ_i r(x, [y_<t, z, τ_i])``."""

    def __init__(self, spec: RolloutSpec):
        self.spec, self.models = spec, spec.models
        self.value_bounds = reward_bounds(spec.reward)  # a mean of rewards stays in their range

    def estimate(self, query: ValueQuery) -> ValueEstimate:
        return ValueEstimate(score_rollouts(self.spec, query).rewards.mean(-1))


class BestRolloutValue:
    """CD and TQ* direct with ``rollout_value='best'``: ``Q̂ = max_i r(x, [y_<t, z, τ_i])``, an unbiased
    estimate of the value at (s_t, z) of Best-of-N of the rollout model: the policy that draws N continuations
    and keeps the best. Best-of-N of the baseline is more aligned than the baseline (KL to it at most
    log N − (N−1)/N), so in the paper's terms it transfers from a stronger policy at the compute of the mean
    of N. Needs N ≥ 2 sampled rollouts (``DecodeConfig``). Measured against the mean: docs/results.md."""

    def __init__(self, spec: RolloutSpec):
        self.spec, self.models = spec, spec.models
        self.value_bounds = reward_bounds(spec.reward)  # the best of some rewards is one of them

    def estimate(self, query: ValueQuery) -> ValueEstimate:
        return ValueEstimate(score_rollouts(self.spec, query).rewards.amax(-1))


class FirstStepsValue:
    """``sampled_steps=S``: Q̂ from ``early`` (N sampled rollouts) at the states whose response has fewer than S
    tokens, from ``late`` (one greedy rollout) after. An answer's stance is set by its first tokens, where one
    greedy rollout decides by chance whether a candidate leads to a refusal; later, sampled values add noise
    to choices between answers that differ by tenths. Measured: docs/results.md."""

    def __init__(self, early, late, steps: int):
        self.early, self.late, self.steps = early, late, steps
        self.models = tuple(dict.fromkeys((*early.models, *late.models)))
        self.value_bounds = early.value_bounds if early.value_bounds == late.value_bounds else None

    def estimate(self, query: ValueQuery) -> ValueEstimate:
        early = [b for b, response in enumerate(query.responses) if len(response) < self.steps]
        late = [b for b, response in enumerate(query.responses) if len(response) >= self.steps]
        if not late or not early:
            return (self.early if early else self.late).estimate(query)
        values = torch.empty(tuple(query.candidates.shape), dtype=torch.float64)
        values[early] = self.early.estimate(query.rows(early)).values.to(torch.float64)
        values[late] = self.late.estimate(query.rows(late)).values.to(torch.float64)
        return ValueEstimate(values)


class IndirectValue:
    """TQ* indirect: ``w_i = exp((r_i − r_BL,i)/β)``, ``Q̂ = Σ w_i r_i / Σ w_i``, ESS = (Σw)²/Σw².

    Preconditions (``require_weighted_rollouts``): N ≥ 2 sampled rollouts, since one self-normalised
    weight is always 1 and would make the estimate direct transfer's. Rollouts drawn at a temperature
    T ≠ 1 are weighted exactly by ``ρ_BL(τ)/q_T(τ)`` on top.

    ``normalise=False`` is the authors' released score ``exp((r − r_BL)/β) · r`` (one greedy rollout, no
    normalisation), kept for the compatibility switch; its weights go to ``raw_weights``.
    """

    def __init__(self, spec: RolloutSpec, normalise: bool = True):
        if normalise:
            require_weighted_rollouts("tq-indirect", spec.num_rollouts, spec.temperature)
        self.spec, self.normalise, self.models = spec, normalise, spec.models
        # a weighted mean of rewards stays in their range; the unnormalised score does not
        self.value_bounds = reward_bounds(spec.reward) if normalise else None

    def estimate(self, query: ValueQuery) -> ValueEstimate:
        scores = score_rollouts(self.spec, query)
        if not self.normalise:
            raw = scores.log_ratio.exp()
            return ValueEstimate((raw * scores.rewards).mean(-1), raw_weights=raw)
        weights = torch.softmax(scores.log_ratio, dim=-1)  # (B, k, N), Σ_i w_i = 1, overflow-safe
        values = (weights * scores.rewards).sum(-1)
        ess = 1.0 / (weights ** 2).sum(-1)
        return ValueEstimate(values, weights, ess)


class SoftTransferValue:
    """Soft transfer (docs/algorithm.md, "Soft transfer"): ``Q̂ = β · log (1/N) Σ_i exp((r_i − r_BL,i)/β)``.

    Used with proposal = prior = baseline and α = 1/β, the decoder samples ρ*_r exactly when the baseline
    is exactly aligned and the expectation is exact. Same preconditions as ``IndirectValue``.
    """

    def __init__(self, spec: RolloutSpec):
        require_weighted_rollouts("soft", spec.num_rollouts, spec.temperature)
        self.spec, self.models = spec, spec.models

    def estimate(self, query: ValueQuery) -> ValueEstimate:
        log_ratio = score_rollouts(self.spec, query).log_ratio
        N = log_ratio.shape[-1]
        values = self.spec.beta * (torch.logsumexp(log_ratio, dim=-1) - math.log(N))
        weights = torch.softmax(log_ratio, dim=-1)
        return ValueEstimate(values, weights, 1.0 / (weights ** 2).sum(-1))
