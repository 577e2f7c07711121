"""A transformers sequence-classification model (a local directory or a hub id) as a reward."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import RewardError, TQStarError
from ..models.spec import resolve_device


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
    if looks_like_path(spec) and not (path / "config.json").is_file():
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


def looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or os.sep in spec and Path(spec).expanduser().exists()
