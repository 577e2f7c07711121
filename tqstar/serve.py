"""``tqstar serve``: the decoders behind an OpenAI-compatible HTTP API (docs/serving.md).

This module holds the server's options and its entry points; it imports nothing heavy, so the CLI can
build its flags from ``ServeConfig`` cheaply. The app is ``tqstar.serve_app``, the queue and batching
``tqstar.serve_engine``, the wire format ``tqstar.serve_protocol``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

from .decoding.config import DecodeConfig, RolesConfig
from .decoding.roles import Roles, baseline_spec_for
from .options import at_least, check_field_types, from_args, option
from .errors import ConfigError

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


def raw_model_names(roles: RolesConfig) -> dict[str, str]:
    """The raw models' names (their specs) → role: what ``openai:URL#MODEL`` puts after '#'."""
    names = {roles.reference: "reference"}
    baseline = baseline_spec_for(roles)
    if baseline:
        names.setdefault(baseline, "baseline")
    return names


def run_serve(args) -> int:
    """The ``tqstar serve`` command: load the roles once, then serve until interrupted."""
    import uvicorn

    from .serve_app import create_app

    config, defaults, roles_config = from_args(args, ServeConfig, DecodeConfig, RolesConfig,
                                               base={"api_key": os.environ.get(API_KEY_ENV) or None})
    sock = bind(config.host, config.port)  # before loading models: a taken port fails fast
    roles = Roles.load(roles_config)
    app = create_app(config, roles, defaults, raw_model_names(roles_config))
    host, port = sock.getsockname()[:2]
    print(f"tqstar serve: listening on http://{_url_host(host)}:{port}/v1 (default method {defaults.method}"
          f"{', API key required' if config.api_key else ''})", flush=True)
    if config.exposed and not config.api_key:
        print(f"tqstar serve: warning: {config.host} is reachable from other machines and no API key is set; "
              f"pass --api-key or set {API_KEY_ENV}.", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level=config.log_level, timeout_graceful_shutdown=5)).run(sockets=[sock])
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a clear error when the address is taken or unknown."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Pick another --port "
                          "(0 chooses a free one) or --host.") from None
    sock.listen(128)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class RunningServer:
    """A server running on a background thread (tests, load runs, notebooks)."""

    url: str  # base URL of the API, ending in /v1
    server: object
    thread: threading.Thread

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> RunningServer:
    """Serve ``app`` on a background thread; returns once it accepts connections."""
    import uvicorn

    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="tqstar-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the HTTP server did not start")
        time.sleep(0.01)
    return RunningServer(f"http://{_url_host(host)}:{sock.getsockname()[1]}/v1", server, thread)
