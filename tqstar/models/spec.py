"""What a model spec names, without loading anything: the embedded model's names, remote specs and their
options, whether two specs are one model, and the device and dtype to load on (torch is imported only
when those are resolved)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigError, ModelLoadError
from ..options import coerce

EMBEDDED_NAMES = ("smollm2", "embedded")
REMOTE_PREFIX = "openai:"


def is_remote(spec: str) -> bool:
    """Whether a model spec names a model served over HTTP (``openai:URL#MODEL``)."""
    return str(spec).startswith(REMOTE_PREFIX)


@dataclass(frozen=True)
class RemoteSpec:
    """Where the remote model lives and how to talk to it."""

    url: str  # base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1
    model: str  # the served model name (the request's "model" field)
    tokenizer: str | None = None  # local model spec whose tokenizer maps text ↔ ids; default: model
    top_logprobs: int = 20  # L: log-probs asked per next-token query (vLLM's default --max-logprobs)
    concurrency: int = 16  # requests in flight at once
    timeout: float = 120.0  # seconds per request
    retries: int = 4  # extra attempts on connect errors, timeouts, 429 and 5xx
    max_length: int | None = None  # context length; default: the server's max_model_len

    def __post_init__(self):
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ModelLoadError(f"Remote model URL {self.url!r} is not an http(s) URL. "
                                 "Write openai:http://HOST:PORT/v1#MODEL.")
        if not self.model:
            raise ModelLoadError(f"Remote spec for {self.url} names no model. Write openai:{self.url}#MODEL.")
        # the bounds keep a typo from opening a billion connections or asking a billion log-probs per token
        for name, lowest, highest in (("top_logprobs", 1, 1024), ("concurrency", 1, 256), ("retries", 0, 100),
                                      ("max_length", 2, None)):
            value = getattr(self, name)
            if value is not None and value < lowest:
                raise ModelLoadError(f"Remote option {name}={value} must be ≥ {lowest}.")
            if value is not None and highest is not None and value > highest:
                raise ModelLoadError(f"Remote option {name}={value} must be ≤ {highest}. Set {name}={highest} or "
                                     "less.")
        if not self.timeout > 0:
            raise ModelLoadError(f"Remote option timeout={self.timeout} must be > 0 seconds.")

    @classmethod
    def parse(cls, spec: str) -> "RemoteSpec":
        """``openai:URL#MODEL?option=value&...`` → a spec, refusing unknown options."""
        if not is_remote(spec) or "#" not in spec:
            raise ModelLoadError(f"Remote model spec {spec!r} needs the form openai:http://HOST:PORT/v1#MODEL "
                                 "(options after '?', e.g. #MODEL?tokenizer=smollm2).")
        url, _, rest = spec[len(REMOTE_PREFIX):].partition("#")
        model, _, query = rest.partition("?")
        known = [f.name for f in fields(cls) if f.name not in ("url", "model")]
        options = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key not in known:
                raise ModelLoadError(f"Unknown remote option {key!r} in {spec!r}. Known options: {', '.join(known)}.")
            try:
                options[key] = coerce(cls, key, value)
            except ConfigError as exc:
                raise ModelLoadError(f"Remote option {exc}") from None
        return cls(url.rstrip("/"), model, **options)


def same_model(a: str, b: str) -> bool:
    """Whether two model specs name one model (embedded aliases and paths are normalised)."""
    def canonical(spec: str) -> str:
        if spec in EMBEDDED_NAMES:
            return EMBEDDED_NAMES[0]
        path = Path(spec).expanduser()
        return str(path.resolve()) if path.exists() else spec

    return canonical(str(a)) == canonical(str(b))


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"Device {device!r} was asked for but CUDA is not available. Use --device cpu.")
    return device


#: What ``--dtype`` and ``--baseline-dtype`` accept; 'auto' is bfloat16 on CUDA, float32 on a CPU.
DTYPE_NAMES = ("auto", "float32", "float16", "bfloat16")


def resolve_dtype(dtype: str | None, device: str):
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPE_NAMES[1:]:
        raise ModelLoadError(f"Unknown dtype {dtype!r}. Use one of: {', '.join(DTYPE_NAMES)}.")
    return getattr(torch, dtype)
