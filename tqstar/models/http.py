"""JSON over HTTP with retries, backoff and a pool for concurrent requests: the one client of the remote
models and the LLM judge."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import httpx

from ..errors import RemoteModelError

#: Answers worth retrying: rate limiting and server-side failures.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class HttpClient:
    """Requests to ``base_url``: up to ``retries`` extra attempts on connect errors, timeouts, 429 and 5xx
    (jittered exponential backoff, or the server's Retry-After), at most ``concurrency`` at once.

    Every failure raises ``RemoteModelError`` with the HTTP status (None when no answer came); ``hint``
    ends the message of a request that never succeeded (e.g. which option to check)."""

    def __init__(self, base_url: str, *, headers: dict | None = None, timeout: float = 120.0, retries: int = 4,
                 concurrency: int = 1, hint: str = ""):
        self.base_url, self.retries, self.hint = base_url.rstrip("/"), retries, hint
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.http = httpx.Client(base_url=self.base_url + "/", timeout=timeout, headers=headers or {}, limits=limits)
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="tqstar-http")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()

    def get(self, path: str) -> dict:
        return self._request("GET", path, None)

    def post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def post_all(self, path: str, bodies: Sequence[dict]) -> list[dict]:
        """POST every body concurrently; answers in the order of ``bodies``."""
        if len(bodies) == 1:
            return [self.post(path, bodies[0])]
        return list(self.pool.map(lambda body: self.post(path, body), bodies))

    def _request(self, method: str, path: str, body: dict | None) -> dict:
        failure, status = "", None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(wait)
            try:
                response = self.http.request(method, path, json=body)
            except httpx.TransportError as exc:  # refused or dropped connection, timeout
                failure, wait = f"{type(exc).__name__}: {exc}", _backoff(attempt)
                continue
            if response.is_success:  # 2xx only: a redirect or a 1xx carries no answer
                return self._json(response)
            status, failure = response.status_code, f"HTTP {response.status_code}: {_error_message(response)}"
            if status not in TRANSIENT_STATUS:
                raise RemoteModelError(f"{self.base_url}/{path} refused the request ({failure}).", status)
            wait = _retry_after(response)
            wait = _backoff(attempt) if wait is None else wait
        raise RemoteModelError(f"{self.base_url}/{path} failed after {self.retries + 1} attempt(s) ({failure}). "
                               f"Check that the server is running and reachable{self.hint}.", status)

    def _json(self, response) -> dict:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise RemoteModelError(f"{self.base_url} answered with something other than a JSON object: "
                                   f"{response.text[:200]!r}", response.status_code)
        return answer


def _backoff(attempt: int) -> float:
    return min(8.0, 0.25 * 2 ** attempt) * random.uniform(0.75, 1.25)  # jitter spreads concurrent retries


def _retry_after(response) -> float | None:
    try:
        return min(30.0, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return None


def _error_message(response) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("message", error)) if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        return response.text[:200]
