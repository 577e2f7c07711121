"""The options of ``tqstar serve``: how the HTTP server listens and what it accepts."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..options import at_least, check_field_types, option

API_KEY_ENV = "TQSTAR_API_KEY"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeConfig:
    """How the HTTP server listens and what it accepts. Decode options given to ``tqstar serve`` are the
    defaults of every request; roles (models, rewards) are fixed for the server's life."""

    host: str = option("127.0.0.1", "Address to listen on. The default keeps the server on this machine; "
                                    "another address exposes it, so pair it with --api-key.")
    port: int = option(8000, "TCP port; 0 picks a free one (the chosen URL is printed).")
    api_key: str | None = option(None, f"Require 'Authorization: Bearer KEY' on every request "
                                       f"(default: ${API_KEY_ENV} when set).")
    max_batch: int = option(16, "Most requests decoded together in one batch.")
    queue_size: int = option(64, "Most requests waiting for a batch; beyond it requests get 429 at once.")
    max_tokens: int = option(256, "Cap on a request's max_tokens, and on the horizon it may ask for.")
    max_body_bytes: int = option(1_048_576, "Cap on a request body, in bytes (413 beyond it).")
    max_samples: int = option(16, "Cap on n for the raw models' completions, and on the num_rollouts and "
                                  "best_of a request may ask for.")
    max_logprobs: int = option(20, "Cap on logprobs for the raw models' completions.")
    max_top_k: int = option(64, "Cap on the top_k a request may ask for.")
    log_level: str = option("warning", "uvicorn log level.", choices=("critical", "error", "warning", "info", "debug"))

    def __post_init__(self):
        check_field_types(self)
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0 to 65535, got {self.port!r}. Use --port 8000, or 0 for any free port.")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty. Pass a non-empty --api-key, or leave it out.")
        for name in ("max_batch", "queue_size", "max_tokens", "max_samples", "max_top_k"):
            at_least(name, getattr(self, name), 1)
        at_least("max_body_bytes", self.max_body_bytes, 1024)
        at_least("max_logprobs", self.max_logprobs, 0)

    @property
    def exposed(self) -> bool:
        return self.host not in LOOPBACK
