"""The options of ``tqstar serve``: how the HTTP server listens and what it accepts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..audit.protocol import TRACE_FULL, TRACE_KEEPS
from ..decoding.config import SIZE_BOUNDS, SIZE_WHY
from ..errors import ConfigError
from ..options import between, check_choice, check_field_types, option, writable_dir

API_KEY_ENV = "TQSTAR_API_KEY"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: Bounds of the caps themselves: each cap multiplies what one request may hold in memory.
CAP_BOUNDS = {"max_batch": SIZE_BOUNDS["batch_size"], "max_tokens": SIZE_BOUNDS["max_new_tokens"],
              "max_samples": SIZE_BOUNDS["best_of"], "max_top_k": SIZE_BOUNDS["top_k"], "max_logprobs": 256,
              "queue_size": 10_000, "max_body_bytes": 64 * 2**20}


@dataclass
class ServeConfig:
    """How the HTTP server listens and what it accepts. Decode options given to ``tqstar serve`` are the
    defaults of every request; roles (models, rewards) are fixed for the server's life."""

    host: str = option("127.0.0.1", "Address to listen on. The default keeps the server on this machine; "
                                    "another address exposes it, so pair it with --api-key-file.")
    port: int = option(8000, "TCP port; 0 picks a free one (the chosen URL is printed).")
    api_key: str | None = option(None, f"Require 'Authorization: Bearer KEY' on every request but the playground's "
                                       f"page and files (default: ${API_KEY_ENV} when set). A key on the command "
                                       f"line shows in `ps`: prefer --api-key-file or ${API_KEY_ENV}.")
    api_key_file: str | None = option(None, "Read the API key from this file (its first line).")
    allowed_hosts: list[str] = option([], "Host header accepted besides loopback names when no API key is set "
                                          "(e.g. the name clients reach this machine by). Without a key only "
                                          "localhost, 127.0.0.1 and [::1] are, so a web page cannot reach the "
                                          "server through a rebound DNS name.")
    max_batch: int = option(16, "Most requests decoded together in one batch.")
    queue_size: int = option(64, "Most requests waiting for a batch; beyond it requests get 429 at once.")
    max_tokens: int = option(256, "Cap on a request's max_tokens, and on the horizon it may ask for.")
    max_body_bytes: int = option(1_048_576, "Cap on a request body, in bytes (413 beyond it).")
    max_samples: int = option(16, "Cap on n for the raw models' completions, and on the num_rollouts and "
                                  "best_of a request may ask for.")
    max_logprobs: int = option(20, "Cap on logprobs for the raw models' completions.")
    max_top_k: int = option(64, "Cap on the top_k a request may ask for.")
    audit_log: str | None = option(None, "Directory of the audit log: one JSON Lines record per answer (time, id, "
                                         "method and options, the roles' names and versions, prompt, answer, reward, "
                                         "trace), synced before the answer is sent; rotated by size. Off by default.")
    audit_max_bytes: int = option(64 * 2**20, "Size at which the audit log's file is closed and a new one begun.")
    audit_trace: str = option(TRACE_FULL, "What an audit record keeps of the per-token trace: the whole trace, or "
                                          "its sha256 digest and length.", choices=TRACE_KEEPS)
    log_level: str = option("warning", "uvicorn log level.", choices=("critical", "error", "warning", "info", "debug"))

    def __post_init__(self):
        check_field_types(self)
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0 to 65535, got {self.port!r}. Use --port 8000, or 0 for any free port.")
        if self.api_key_file is not None:
            self.api_key = _key_from_file(self.api_key_file, self.api_key)
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("api_key is empty. Pass a non-empty --api-key, or leave it out.")
        if self.audit_log is not None:  # refused at start, not at the first answer
            writable_dir(self.audit_log, "--audit-log")
        between("audit_max_bytes", self.audit_max_bytes, 4096, 2**40, "a terabyte per file is the most that is kept sensible")
        check_choice("audit_trace", self.audit_trace, TRACE_KEEPS)
        lowest = {"max_body_bytes": 1024, "max_logprobs": 0}
        for name, bound in CAP_BOUNDS.items():
            between(name, getattr(self, name), lowest.get(name, 1), bound, SIZE_WHY)

    @property
    def exposed(self) -> bool:
        return self.host not in LOOPBACK


def _key_from_file(path: str, given: str | None) -> str:
    if given is not None:
        raise ConfigError(f"Both --api-key (or ${API_KEY_ENV}) and --api-key-file are set. Keep one of them.")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--api-key-file {path!r} cannot be read ({getattr(exc, 'strerror', None) or exc}). "
                          "Name a readable UTF-8 file holding the key.") from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"--api-key-file {path!r} is empty. Write the key on its first line.")
    return lines[0].strip()
