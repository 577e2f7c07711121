"""tqstar: Transfer Q* decoding — align a language model to a reward at decoding time.

Importing the package is cheap: torch, transformers and the rewards load on first use. The code lives in
five wings (models, rewards, decoding, eval, serve; docs/architecture.md); the public API is here.
"""

from .lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "generate": "decoding.build",
    "build_decoder": "decoding.build",
    "Roles": "decoding.roles",
    "DecodeConfig": "decoding.config",
    "RolesConfig": "decoding.config",
    "METHODS": "decoding.methods",
    "GenerationResult": "decoding.protocol",
    "Decoder": "decoding.protocol",
    "ValueEstimator": "decoding.protocol",
    "ValueGuidedDecoder": "decoding.decoder",
    "SamplingDecoder": "decoding.decoder",
    "LanguageModel": "models.protocol",
    "load_language_model": "models.loader",
    "Reward": "rewards.protocol",
    "load_reward": "rewards.loading",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
