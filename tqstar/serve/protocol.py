"""The server's contract, at the bottom of the serve wing: its error answer, the caps, the two kinds of
parsed request, and what the model thread sends back to the HTTP side (typed events and finished records).

Status codes: 400 malformed or unknown fields, 401 API key, 403 a Host name not served without a key,
404 unknown model, 413 body too large, 415 not JSON, 422 out-of-range values, 429 queue full, 502 a
remote model behind the server failed, 503 the model thread has stopped; the body is always
``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..decoding.config import DecodeConfig


class ApiError(Exception):
    """An answer other than 200, with the OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    """The caps a request must respect (from ``ServeConfig``)."""

    max_tokens: int  # also caps a request's horizon
    max_samples: int  # n of raw completions; num_rollouts and best_of of a request
    max_logprobs: int
    max_top_k: int

    def caps(self) -> dict[str, tuple[int, str]]:
        """The decode options a request may raise only this far: option → (cap, the server flag)."""
        return {"top_k": (self.max_top_k, "--max-top-k"), "num_rollouts": (self.max_samples, "--max-samples"),
                "best_of": (self.max_samples, "--max-samples"), "horizon": (self.max_tokens, "--max-tokens")}


@dataclass
class MethodRequest:
    """Decode one prompt with a tqstar method."""

    model: str
    prompt: str
    config: DecodeConfig  # max_new_tokens is this request's max_tokens
    stream: bool = False
    include_usage: bool = False
    trace: bool = False
    chat: bool = True


@dataclass
class RawRequest:
    """A plain completion from a served model (the vLLM-compatible part of the API)."""

    model: str
    role: str
    prompt: str | list[int]
    max_tokens: int
    n: int = 1
    temperature: float = 1.0
    seed: int | None = None
    logprobs: int | None = None
    echo: bool = False
    token_ids: bool = False  # return_tokens_as_token_ids
    stop_token_ids: tuple[int, ...] = ()  # a sample ends at the first of these (kept), as at EOS


@dataclass(frozen=True)
class Finished:
    """A method request's answer."""

    text: str
    token_ids: list[int]
    reward: float | None
    seconds: float
    forward_tokens: int
    finish_reason: str  # "stop" (EOS) or "length"
    prompt_tokens: int
    completion_tokens: int
    trace: list[dict] | None  # the per-token trace (empty for greedy, sample, best-of-n); sent when asked


@dataclass(frozen=True)
class RawFinished:
    """A raw completion's answer: one choice (text, finish reason, logprobs) per sample."""

    choices: list[dict]
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class TokenEvent:
    """Text a request's response has gained (``token`` None: the rest of the text, at the end)."""

    token: int | None
    text: str


@dataclass(frozen=True)
class DoneEvent:
    """The request's last event when it succeeded."""

    result: Finished | RawFinished


@dataclass(frozen=True)
class ErrorEvent:
    """The request's last event when it failed."""

    error: ApiError


Event = TokenEvent | DoneEvent | ErrorEvent
