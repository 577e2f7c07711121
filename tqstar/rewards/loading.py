"""``load_reward``: a reward spec (name, weighted sum, reward-model directory, ``hf:ID``, callable) → a ``Reward``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

from ..errors import RewardError
from .builtin import NontoxicReward, RelevanceReward, SentimentReward
from .composite import helpful_harmless, upbeat_relevant
from .classifier import HFRewardModel, looks_like_path
from .protocol import CallableReward, Reward, WeightedSum
from .stance import StanceReward, is_stance_model_dir
from .trained import HarmlessReward, TrainedRewardModel, is_trained_reward_model_dir

_CHOICES = (
    "sentiment, nontoxic, relevance, harmless, stance, helpful_harmless, upbeat_relevant, a weighted sum like 'relevance+0.5*sentiment', "
    "a local reward-model directory (transformers, or trained by 'tqstar reward-model train' or 'stance'), hf:MODEL_ID, "
    "or a Python callable"
)


def load_reward(spec: str | Reward | Callable, *, device: str | None = None) -> Reward:
    """Resolve a reward spec to a ``Reward``.

    * ``"sentiment"``, ``"nontoxic"``, ``"relevance"``, ``"harmless"``, ``"stance"``: the built-in terms;
    * ``"helpful_harmless"`` (the default), ``"upbeat_relevant"``: the composites;
    * ``"relevance+0.5*sentiment"``: a ``WeightedSum`` (terms joined by '+', optional ``W*``);
    * a directory written by ``tqstar reward-model train``: a ``TrainedRewardModel``;
    * a directory written by ``tqstar reward-model stance``: a ``StanceReward``;
    * a local directory holding ``config.json``, or ``"hf:MODEL_ID"``: an ``HFRewardModel``;
    * an object with a ``score`` method passes through; another callable becomes a ``CallableReward``.

    Anything else raises ``RewardError`` listing these choices.
    """
    if not isinstance(spec, (str, os.PathLike)):
        if callable(getattr(spec, "score", None)):
            return spec
        if callable(spec):
            return CallableReward(spec)
        raise RewardError(f"Unknown reward {spec!r}. Use one of: {_CHOICES}.")
    return _loader(str(spec).strip())(device)


def check_reward_spec(spec: str) -> None:
    """Raise ``RewardError`` where ``load_reward(spec)`` would refuse it, without loading any model (so a run
    refuses a bad spec before its work starts; an ``hf:MODEL_ID`` is not looked up)."""
    _loader(str(spec).strip())


def _loader(text: str) -> Callable[[str | None], Reward]:
    """What loads the reward ``text`` names, on a device; every refusal of a spec is raised here."""
    if not text:
        raise RewardError(f"The reward spec is empty. Use one of: {_CHOICES}.")
    if text in _BUILTINS:
        return _BUILTINS[text]
    if text.startswith("hf:") and len(text) > 3:
        return lambda device: HFRewardModel(text[3:], device=device)
    path = Path(text).expanduser()
    if is_trained_reward_model_dir(path):
        return lambda device: TrainedRewardModel(path, device=device)
    if is_stance_model_dir(path):
        return lambda device: StanceReward(device, path=path)
    if (path / "config.json").is_file():
        return lambda device: HFRewardModel(text, device=device)
    if path.is_dir() or (looks_like_path(text) and "+" not in text):
        raise RewardError(f"Reward model directory {text!r} does not exist or holds no config.json. Check the path.")
    if "+" in text or "*" in text:
        terms = _weighted_terms(text)
        return lambda device: WeightedSum([(factor, load_reward(name, device=device)) for factor, name in terms],
                                          name=text.replace(" ", ""))
    raise RewardError(f"Unknown reward {text!r}. Use one of: {_CHOICES}.")


_BUILTINS: dict[str, Callable[[str | None], Reward]] = {
    "sentiment": lambda device: SentimentReward(),
    "nontoxic": lambda device: NontoxicReward(),
    "relevance": RelevanceReward,
    "harmless": HarmlessReward,
    "stance": StanceReward,
    "helpful_harmless": helpful_harmless,
    "upbeat_relevant": upbeat_relevant,
}


def _weighted_terms(text: str) -> list[tuple[float, str]]:
    """Parse ``"relevance+0.5*sentiment"``: terms joined by '+', each with an optional ``W*`` factor."""
    terms = []
    for part in text.split("+"):
        weight, _, name = part.strip().rpartition("*")
        try:
            factor = float(weight) if weight.strip() else 1.0
        except ValueError:
            factor = math.nan
        if not math.isfinite(factor):
            raise RewardError(f"Cannot read the weight {weight.strip()!r} in {text!r}. Write terms like '0.5*name'.")
        name = name.strip()
        if name not in _BUILTINS and not name.startswith("hf:"):
            raise RewardError(f"Unknown reward {name!r} in {text!r}. Use one of: {_CHOICES}.")
        terms.append((factor, name))
    return terms
