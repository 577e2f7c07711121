"""tqstar.models: the language-model role — its protocol, the transformers and remote backends, and loading
a model from a spec. Names load on first use, so importing the package stays cheap."""

from ..lazy import lazy_getattr

_EXPORTS = {
    **dict.fromkeys(["LanguageModel", "Continuation", "check_prompt", "require_shared_vocabulary", "per_prefix",
                     "max_candidates", "forward_tokens"], "protocol"),
    **dict.fromkeys(["EMBEDDED_NAMES", "REMOTE_PREFIX", "is_remote", "RemoteSpec", "same_model", "resolve_device",
                     "resolve_dtype"], "spec"),
    **dict.fromkeys(["DEFAULT_BASELINE", "shipped_adapters", "shipped_adapter_path", "adapter_dir", "adapter_base",
                     "adapter_metadata"], "baselines"),
    "ChatTokenizer": "tokenizer",
    "HttpClient": "http",
    "HFLanguageModel": "hf",
    "RemoteLanguageModel": "remote",
    **dict.fromkeys(["load_language_model", "load_remote_model", "local_tokenizer", "embedded_gguf_path",
                     "cache_root"], "loader"),
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
