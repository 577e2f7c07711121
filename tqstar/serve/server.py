"""``tqstar serve``'s entry points: load the roles, bind the socket, run the app (on a background thread
for tests and notebooks)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

from ..decoding.config import DecodeConfig, RolesConfig
from ..decoding.roles import Roles, baseline_spec_for
from ..errors import ConfigError
from ..options import from_args
from .app import create_app
from .config import API_KEY_ENV, ServeConfig


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
              f"pass --api-key-file or set {API_KEY_ENV}. Without a key only loopback Host names are served "
              "(add others with --allowed-hosts).", file=sys.stderr, flush=True)
    _log_errors_to_stderr()
    uvicorn.Server(uvicorn.Config(app, log_level=config.log_level, timeout_graceful_shutdown=5)).run(sockets=[sock])
    return 0


def _log_errors_to_stderr() -> None:
    """Every 5xx and failed batch, with its traceback, on stderr beside uvicorn's own log."""
    log = logging.getLogger("tqstar.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tqstar serve: %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False


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
