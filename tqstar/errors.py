"""Typed errors. Every message names the problem and the fix; the CLI prints it and exits 2."""

from __future__ import annotations


class TQStarError(Exception):
    """Base class for every error tqstar raises on purpose."""


class ConfigError(TQStarError, ValueError):
    """An option is out of range or two options conflict."""


class PromptError(TQStarError, ValueError):
    """A prompt is empty or does not fit in the model's context."""


class ModelLoadError(TQStarError):
    """A model name, path or file cannot be resolved or loaded."""


class RemoteModelError(ModelLoadError):
    """An HTTP endpoint cannot be reached, refuses a request, or answers without what tqstar needs.
    ``status`` is the HTTP status of the refusal, or None when no answer came."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class VocabularyMismatchError(TQStarError):
    """The chosen mode needs two models to share token ids, and they do not."""


class RewardError(TQStarError):
    """A reward cannot be loaded, or returned unusable scores."""
