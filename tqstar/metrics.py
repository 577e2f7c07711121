"""Metrics of the paper's comparison: per response (KL to the reference, diversity, coherence) and
per method (means with 95% bootstrap intervals, win/tie/lose by the target reward)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

from .decoder import GenerationResult

BOOTSTRAP_SAMPLES = 1000
TIE_TOLERANCE = 1e-6  # rewards closer than this are a tie (identical responses score identically)


# --- per response ---------------------------------------------------------------------------------

def diversity(text: str) -> float:
    """``∏_{n=2..4} (1 − rep_n/100)``, rep_n = 100·(1 − distinct n-grams / n-grams) of the response's words."""
    words = text.split()
    score = 1.0
    for n in (2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if grams:
            score *= len(set(grams)) / len(grams)
    return score


def trace_kl(result: GenerationResult) -> float:
    """``Σ_t KL(π_alg(·|s_t) ‖ ρ_ref(·|s_t))`` along the response, from the decoder's own per-token
    distributions (the trace's prior log-probs are the reference's when the prior is the reference)."""
    total = 0.0
    for step in result.trace:
        for p, log_ref in zip(step.probabilities, step.prior_logprobs):
            if p > 0:
                total += p * (math.log(p) - log_ref)
    return total


def path_log_prob(result: GenerationResult) -> float:
    """``log π_alg(y|x)``: the log-probability the value-guided decoder gave its own choices."""
    return sum(math.log(max(step.probabilities[step.candidates.index(step.chosen)], 1e-300))
               for step in result.trace)


def best_of_n_kl(n: int) -> float:
    """The standard analytic KL of Best-of-N to its sampler: ``log N − (N − 1)/N``."""
    return math.log(n) - (n - 1) / n


# --- per method -----------------------------------------------------------------------------------

@dataclass
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def bootstrap_mean(values: Sequence[float], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> Interval:
    """Mean with a 95% percentile-bootstrap interval (resampling responses)."""
    values = [v for v in values if v is not None]
    if not values:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(samples))
    return Interval(sum(values) / n, means[int(0.025 * samples)], means[int(0.975 * samples) - 1], n)


@dataclass
class Duel:
    """Method A against method B on the prompts both answered, judged by the target reward."""

    win: int
    tie: int
    lose: int
    win_tie: Interval  # (win + tie) / n with a bootstrap interval over prompts


def duel(rewards_a: dict[int, float], rewards_b: dict[int, float], seed: int = 0) -> Duel:
    shared = sorted(set(rewards_a) & set(rewards_b))
    outcomes = [_outcome(rewards_a[i], rewards_b[i]) for i in shared]
    win_tie = bootstrap_mean([1.0 if o >= 0 else 0.0 for o in outcomes], seed)
    return Duel(outcomes.count(1), outcomes.count(0), outcomes.count(-1), win_tie)


def _outcome(a: float, b: float) -> int:
    if abs(a - b) <= TIE_TOLERANCE:
        return 0
    return 1 if a > b else -1


METRICS = ("reward", "kl", "diversity", "coherence", "tokens", "seconds", "forward_tokens")


def summarise(records: Sequence[dict]) -> dict:
    """Per method: every metric as mean with a 95% interval, and the duels with every other method."""
    by_method: dict[str, list[dict]] = {}
    for record in records:
        by_method.setdefault(record["method"], []).append(record)
    table = {label: {m: bootstrap_mean([r.get(m) for r in rows]).as_dict() for m in METRICS}
             for label, rows in by_method.items()}
    rewards = {label: {r["prompt_index"]: r["reward"] for r in rows} for label, rows in by_method.items()}
    duels = {a: {b: vars(duel(rewards[a], rewards[b])) for b in rewards if b != a} for a in rewards}
    for row in duels.values():
        for d in row.values():
            d["win_tie"] = d["win_tie"].as_dict()
    return {"methods": table, "duels": duels}
