"""The reward role: text in, one float per (prompt, response) pair out.

Every reward is called through ``checked_scores``, the one place that validates what it returns. This is
the bottom of the rewards wing: the protocol and the two ways to build a reward from others.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence

from ..errors import ConfigError, RewardError, TQStarError


class Reward(Protocol):
    """Scores responses to prompts, batch-first: ``score(prompts, responses)[i]`` scores pair ``i``.

    Higher is better; scores must be finite. Implementations should also carry a readable ``name``
    attribute, used in error messages and traces, and may declare ``bounds = (lo, hi)``, a range every
    score lies in: a greedy decoder with ``prune`` then skips candidates that cannot win whatever their
    value (``checked_scores`` holds the reward to its declared range). Example::

        class LengthReward:
            name = "length"

            def score(self, prompts, responses):
                return [float(len(r)) for r in responses]
    """

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """One float per pair; ``len(out) == len(prompts) == len(responses)``."""


def reward_name(reward) -> str:
    """The ``name`` of a reward, or its class name when it has none."""
    return str(getattr(reward, "name", None) or type(reward).__name__)


def reward_bounds(reward) -> tuple[float, float] | None:
    """The range ``(lo, hi)`` that ``reward`` declares every score lies in, or None when it declares none."""
    bounds = getattr(reward, "bounds", None)
    if bounds is None:
        return None
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ConfigError(f"Reward {reward_name(reward)!r} declares bounds={bounds!r}; declare a pair of numbers "
                          "(lo, hi), or None.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ConfigError(f"Reward {reward_name(reward)!r} declares bounds=({lo}, {hi}); they must be finite with "
                          "lo ≤ hi.")
    return lo, hi


def checked_scores(
    reward: Reward, prompts: Sequence[str], responses: Sequence[str], name: str | None = None
) -> list[float]:
    """Call ``reward.score`` and return plain, finite floats, or raise ``RewardError`` saying why."""
    name = name or reward_name(reward)
    if len(prompts) != len(responses):
        raise RewardError(
            f"Reward {name!r} got {len(prompts)} prompts but {len(responses)} responses; pass one prompt per response."
        )
    if not responses:
        return []
    try:
        raw = reward.score(list(prompts), list(responses))
    except TQStarError:
        raise  # already names the problem and the fix
    except Exception as exc:
        raise RewardError(
            f"Reward {name!r} raised {type(exc).__name__}: {exc}. Fix the reward function or its inputs."
        ) from exc
    scores = _as_floats(raw, name)
    if len(scores) != len(responses):
        raise RewardError(
            f"Reward {name!r} returned {len(scores)} scores for {len(responses)} responses. "
            "Return exactly one score per (prompt, response) pair, in order."
        )
    for i, value in enumerate(scores):
        if not math.isfinite(value):
            raise RewardError(
                f"Reward {name!r} returned {value} at index {i} (response {responses[i][:60]!r}). "
                "Scores must be finite; clip or replace NaN/inf inside the reward."
            )
    return _within_bounds(reward, scores, responses, name)


def _within_bounds(reward, scores: list[float], responses: Sequence[str], name: str) -> list[float]:
    """A declared range is a promise decoders rely on to skip candidates, so a score outside it is an
    error; float slack of 1e-6 of the range is allowed and clamped away, so the promise holds exactly."""
    bounds = reward_bounds(reward)
    if bounds is None:
        return scores
    lo, hi = bounds
    slack = 1e-6 * max(1.0, hi - lo)
    for i, value in enumerate(scores):
        if not lo - slack <= value <= hi + slack:
            raise RewardError(
                f"Reward {name!r} returned {value} at index {i} (response {responses[i][:60]!r}), outside the "
                f"bounds ({lo:g}, {hi:g}) it declares. Fix its bounds attribute, or clip its scores to them."
            )
    return [min(hi, max(lo, value)) for value in scores]


def _as_floats(raw, name: str) -> list[float]:
    """Lists, numpy arrays and torch tensors of numbers become a list of Python floats."""
    if hasattr(raw, "tolist"):  # numpy arrays and torch tensors
        raw = raw.tolist()
    try:
        return [float(item) for item in raw]
    except (TypeError, ValueError):
        raise RewardError(
            f"Reward {name!r} returned {str(raw)[:80]}, not a flat sequence of numbers. Return a list of floats."
        ) from None


class CallableReward:
    """Any callable ``fn(prompts, responses) -> scores`` as a ``Reward``."""

    def __init__(self, fn: Callable[[list[str], list[str]], Sequence[float]], name: str | None = None,
                 bounds: tuple[float, float] | None = None):
        if not callable(fn):
            raise ConfigError(f"{fn!r} is not callable. Pass a function (prompts, responses) -> scores.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.bounds = bounds
        reward_bounds(self)  # a malformed range is refused here, not at the first score

    def score(self, prompts, responses):
        return self.fn(list(prompts), list(responses))


class WeightedSum:
    """``sum(w * term(x, y))`` over ``terms``; each term scores the whole batch once."""

    def __init__(self, terms: Sequence[tuple[float, Reward]], name: str | None = None):
        if not terms:
            raise ConfigError("WeightedSum needs at least one (weight, reward) term.")
        for weight, _ in terms:
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ConfigError(f"Weight {weight!r} is not a finite number. Use e.g. (0.5, reward).")
        self.terms = [(float(w), r) for w, r in terms]
        self.name = name or "+".join(reward_name(r) if w == 1 else f"{w:g}*{reward_name(r)}" for w, r in self.terms)

    @property
    def bounds(self) -> tuple[float, float] | None:
        """Σ w·[lo, hi] over the terms (ends swapped for a negative weight); None if a term declares none."""
        ranges = [reward_bounds(term) for _, term in self.terms]
        if any(r is None for r in ranges):
            return None
        ends = [sorted((w * lo, w * hi)) for (w, _), (lo, hi) in zip(self.terms, ranges)]
        return sum(lo for lo, _ in ends), sum(hi for _, hi in ends)

    def score(self, prompts, responses):
        total = [0.0] * len(responses)
        for weight, term in self.terms:
            for i, value in enumerate(checked_scores(term, prompts, responses)):
                total[i] += weight * value
        return total
