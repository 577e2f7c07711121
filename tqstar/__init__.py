"""tqstar: Transfer Q* decoding — align a language model to a reward at decoding time.

Importing the package is cheap: torch, transformers and the rewards load on first use.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "generate": "tqstar.api:generate",
    "build_decoder": "tqstar.api:build_decoder",
    "Roles": "tqstar.api:Roles",
    "DecodeConfig": "tqstar.config:DecodeConfig",
    "RolesConfig": "tqstar.config:RolesConfig",
    "GenerationResult": "tqstar.decoder:GenerationResult",
    "ValueGuidedDecoder": "tqstar.decoder:ValueGuidedDecoder",
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
