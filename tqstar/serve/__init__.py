"""tqstar.serve: the decoders behind an OpenAI-compatible HTTP API (docs/serving.md) — options, request
parsing, the queue and model thread, the app and its entry points. Names load on first use, so importing
the package stays cheap."""

from ..lazy import lazy_getattr

_EXPORTS = {
    **dict.fromkeys(["ServeConfig", "API_KEY_ENV"], "config"),
    **dict.fromkeys(["run_serve", "bind", "serve_in_thread", "RunningServer", "raw_model_names"], "server"),
    "create_app": "app",
    "Engine": "engine",
    **dict.fromkeys(["ApiError", "Limits", "MethodRequest", "RawRequest", "Finished", "RawFinished"], "protocol"),
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
