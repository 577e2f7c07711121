"""Field checks and small pieces of the OpenAI wire format shared by the method and the raw requests."""

from __future__ import annotations

import json
import math
import uuid

from ..errors import ConfigError
from ..options import temperature as check_temperature
from .protocol import ApiError

COMMON_FIELDS = {"model", "max_tokens", "stream", "stream_options", "n", "seed", "temperature", "top_p", "stop",
                 "user", "trace"}


def check_openai_sampling(body: dict, n_allowed: int | None) -> None:
    if n_allowed is not None and body.get("n") not in (None, n_allowed):
        raise ApiError(422, f"n={body['n']!r} is not supported: a tqstar method returns one choice per request. "
                            "Send n=1 or several requests.", "n", "unsupported_option")
    if body.get("top_p") not in (None, 1, 1.0):
        raise ApiError(422, f"top_p={body['top_p']!r} is not supported; tqstar chooses among the top_k candidates. "
                            "Leave top_p unset (or 1).", "top_p", "unsupported_option")
    if body.get("stop") not in (None, [], ""):
        raise ApiError(422, "stop sequences are not supported; the response ends at EOS or max_tokens.", "stop",
                       "unsupported_option")


def integer(body: dict, name: str, low: int, high: int | None, default=None):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(422, f"{name} must be an integer, got {value!r}.", name, "invalid_type")
    if value < low or (high is not None and value > high):
        cap = f" (the server's cap is {high})" if high is not None else ""
        raise ApiError(422, f"{name}={value} is out of range: use {low} to {high}{cap}." if high is not None
                       else f"{name}={value} is out of range: use {low} or more.", name, "out_of_range")
    return value


def number(body: dict, name: str, low: float, high: float | None):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, f"{name} must be a number, got {value!r}.", name, "invalid_type")
    require_finite(name, value)
    if value < low or (high is not None and value > high):
        raise ApiError(422, f"{name}={value} is out of range: use a value ≥ {low}.", name, "out_of_range")
    return float(value)


def temperature(body: dict, name: str = "temperature") -> float | None:
    """The OpenAI temperature: 0 (greedy) or at least the sampler's lowest (tqstar.options.temperature)."""
    value = number(body, name, 0.0, None)
    if value is not None:
        try:
            check_temperature(name, value)
        except ConfigError as exc:
            raise ApiError(422, str(exc), name, "out_of_range") from None
    return value


def flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(422, f"{name} must be true or false, got {value!r}.", name, "invalid_type")
    return value


def require_finite(name: str, value) -> None:
    """Refuse infinities (a JSON number such as 1e999 parses as one) and integers too large for a float."""
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise ApiError(422, f"{name}={value!r} is not a finite number. Send an ordinary value.", name,
                       "out_of_range")


def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(payload: dict) -> str:
    """One server-sent event."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
