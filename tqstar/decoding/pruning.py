"""Exact pruning for greedy selection: which top-k candidates can still be π_alg's argmax.

When every value lies in a known range [lo, hi] (a mean of rewards that declare their bounds), a
candidate z loses to the prior's favourite z* whatever the values once
``log π(z) + α·hi < log π(z*) + α·lo``: its prior trails by more than α·(hi − lo). Its value need not be
estimated, and a state left with one possible winner needs no rollout at all. The choice is the one the
unpruned decoder makes; the trace shows no Q̂ for the pruned candidates and π_alg over the others.
"""

from __future__ import annotations

import math

import torch

from .protocol import SELECT_GREEDY, ValueQuery


def can_win(prior: torch.Tensor, alpha: float, bounds: tuple[float, float]) -> torch.Tensor:
    """(A, k) bool from (A, k) prior log-probs: the candidates that can still be the argmax."""
    lo, hi = bounds
    best = prior.max(-1, keepdim=True).values  # (A, 1) log π(z*)
    slack = 1e-9 * (1 + alpha * (hi - lo))  # float rounding must never prune a candidate that ties
    return prior + alpha * hi >= best + alpha * lo - slack


def winners(prior: torch.Tensor, settings, estimator) -> torch.Tensor | None:
    """``can_win`` when pruning applies: ``settings.prune``, greedy selection, and an estimator that
    declares ``value_bounds``; None (every candidate counts) otherwise."""
    bounds = getattr(estimator, "value_bounds", None)
    if not settings.prune or settings.selection != SELECT_GREEDY or bounds is None:
        return None
    return can_win(prior, settings.alpha, bounds)


def needing_values(possible: torch.Tensor | None) -> torch.Tensor | None:
    """The candidates whose Q̂ is needed: those that can win, in states where more than one can."""
    return None if possible is None else possible & (possible.sum(-1, keepdim=True) > 1)


def without_losers(logits: torch.Tensor, prior: torch.Tensor, possible: torch.Tensor | None) -> torch.Tensor:
    """π_alg's logits with the candidates that cannot win at −inf; a lone possible winner, left unvalued
    (NaN), keeps its prior so that it is the argmax."""
    if possible is None:
        return logits
    lone = possible & (possible.sum(-1, keepdim=True) == 1)  # an estimator's own NaN still reaches the check
    return torch.where(possible, torch.where(lone, prior, logits), -math.inf)


def active_pairs(query: ValueQuery) -> list[tuple[int, int]] | None:
    """The (state, candidate) pairs to value when the query leaves some out, else None (value them all)."""
    if query.active is None or bool(query.active.all()):
        return None
    return [tuple(pair) for pair in query.active.nonzero().tolist()]


def pairs_query(query: ValueQuery, pairs: list[tuple[int, int]]) -> ValueQuery:
    """The chosen pairs as a query of their own: one state per pair, holding its one candidate."""
    return ValueQuery([query.prompts[b] for b, _ in pairs], [query.responses[b] for b, _ in pairs],
                      query.candidates[[b for b, _ in pairs], [j for _, j in pairs]][:, None],
                      None if query.budgets is None else [query.budgets[b] for b, _ in pairs])


def scattered(per_pair: torch.Tensor, pairs: list[tuple[int, int]], shape: tuple[int, ...]) -> torch.Tensor:
    """(P, 1, ...) results of a pairs query put back at their (state, candidate) places; NaN elsewhere."""
    out = torch.full(shape, math.nan, dtype=torch.float64)
    if pairs:
        out[[b for b, _ in pairs], [j for _, j in pairs]] = per_pair[:, 0].to(torch.float64)
    return out
