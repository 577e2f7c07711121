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
    attribute, used in error messages and traces. Example::

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
    return scores


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

    def __init__(self, fn: Callable[[list[str], list[str]], Sequence[float]], name: str | None = None):
        if not callable(fn):
            raise ConfigError(f"{fn!r} is not callable. Pass a function (prompts, responses) -> scores.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__

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

    def score(self, prompts, responses):
        total = [0.0] * len(responses)
        for weight, term in self.terms:
            for i, value in enumerate(checked_scores(term, prompts, responses)):
                total[i] += weight * value
        return total
