"""tqstar: Transfer Q* decoding — align a language model to a reward at decoding time.

Importing the package is cheap: torch, transformers and the rewards load on first use. The code lives in
five wings (models, rewards, decoding, eval, serve; docs/architecture.md); the public API is here.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "generate": "tqstar.decoding.build:generate",
    "build_decoder": "tqstar.decoding.build:build_decoder",
    "Roles": "tqstar.decoding.roles:Roles",
    "DecodeConfig": "tqstar.decoding.config:DecodeConfig",
    "RolesConfig": "tqstar.decoding.config:RolesConfig",
    "METHODS": "tqstar.decoding.methods:METHODS",
    "GenerationResult": "tqstar.decoding.protocol:GenerationResult",
    "Decoder": "tqstar.decoding.protocol:Decoder",
    "ValueEstimator": "tqstar.decoding.protocol:ValueEstimator",
    "ValueGuidedDecoder": "tqstar.decoding.decoder:ValueGuidedDecoder",
    "SamplingDecoder": "tqstar.decoding.decoder:SamplingDecoder",
    "LanguageModel": "tqstar.models.protocol:LanguageModel",
    "load_language_model": "tqstar.models.loader:load_language_model",
    "Reward": "tqstar.rewards.protocol:Reward",
    "load_reward": "tqstar.rewards.loading:load_reward",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tqstar' has no attribute {name!r}")
    module, attribute = _EXPORTS[name].split(":")
    return getattr(import_module(module), attribute)


__all__ = list(_EXPORTS)
