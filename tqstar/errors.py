"""Typed errors. Every message names the problem and the fix; the CLI prints it and exits 2."""


class TQStarError(Exception):
    """Base class for every error tqstar raises on purpose."""


class ConfigError(TQStarError, ValueError):
    """An option is out of range or two options conflict."""


class PromptError(TQStarError, ValueError):
    """A prompt is empty or does not fit in the model's context."""


class ModelLoadError(TQStarError):
    """A model name, path or file cannot be resolved or loaded."""


class VocabularyMismatchError(TQStarError):
    """The chosen mode needs two models to share token ids, and they do not."""


class RewardError(TQStarError):
    """A reward cannot be loaded, or returned unusable scores."""
