"""The OpenAI wire format of ``tqstar serve``: requests parsed into typed jobs, answers and stream chunks.

Two kinds of model are served:

* a **method** (``tq-direct``, ``tqstar/args?top_k=5``, …) decodes a user prompt with a tqstar decoder;
  its options are ``DecodeConfig`` fields, taken from the server's defaults, then from the model name's
  query, then from extra request fields (the openai client's ``extra_body``);
* a **raw model** (the reference or the baseline, by role or by spec) answers plain completions the way
  vLLM does: token-id prompts, ``n`` samples, per-token ``logprobs``, ``echo`` and
  ``return_tokens_as_token_ids``, which is what ``tqstar.models.remote`` asks of a baseline server.

Status codes: 400 malformed or unknown fields, 401 API key, 404 unknown model, 413 body too large,
422 out-of-range values, 429 queue full, 502 a remote model behind the server failed, 503 the model
thread has stopped; the body is always ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import parse_qsl

from .decoding.config import DecodeConfig, RolesConfig
from .decoding.methods import METHODS, find_method
from .decoding.protocol import SELECT_GREEDY
from .errors import ConfigError
from .options import coerce

METHOD_PREFIX = "tqstar/"
DECODE_FIELDS = tuple(f.name for f in fields(DecodeConfig))
ROLE_FIELDS = {f.name for f in fields(RolesConfig)}
COMMON_FIELDS = {"model", "max_tokens", "stream", "stream_options", "n", "seed", "temperature", "top_p", "stop",
                 "user", "trace"}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens"}
METHOD_COMPLETION_FIELDS = COMMON_FIELDS | {"prompt"}
RAW_FIELDS = {"model", "prompt", "max_tokens", "n", "seed", "temperature", "top_p", "stop", "user", "stream",
              "logprobs", "echo", "return_tokens_as_token_ids", "stop_token_ids"}


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


class Catalog:
    """The model names a server answers to: methods, and raw models by role and by spec."""

    def __init__(self, defaults: DecodeConfig, raw_names: dict[str, str]):
        self.defaults = defaults
        self.raw = {**raw_names, "reference": "reference", "baseline": "baseline"}  # name → role

    def model_ids(self) -> list[str]:
        return [METHOD_PREFIX + m for m in METHODS] + [n for n, role in self.raw.items() if n != role]

    def resolve(self, name: Any) -> tuple[str, str, dict]:
        """``("method", method, options)`` or ``("raw", role, {})`` for a request's model name."""
        if not isinstance(name, str) or not name:
            raise ApiError(400, "The request needs a model: a tqstar method such as 'tq-direct' (see GET /v1/models).",
                           "model", "missing_model")
        if name in self.raw:
            return "raw", self.raw[name], {}
        base, _, query = name.removeprefix(METHOD_PREFIX).partition("?")
        if base in ("", "tqstar"):
            base = self.defaults.method
        if find_method(base) is None:
            raise ApiError(404, f"Unknown model {name!r}. Use a method ({', '.join(METHODS)}, optionally as "
                                f"'tqstar/METHOD?top_k=5&alpha=2') or a served model ({', '.join(self.raw)}).",
                           "model", "model_not_found")
        options = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key not in DECODE_FIELDS:
                raise ApiError(422, f"Unknown option {key!r} in the model name. Use DecodeConfig fields: "
                                    f"{', '.join(DECODE_FIELDS)}.", "model", "unknown_field")
            options[key] = _decode_option(key, value)
        return "method", base, options


def parse_chat(body: dict, catalog: Catalog, limits: Limits) -> MethodRequest:
    kind, method, options = catalog.resolve(body.get("model"))
    if kind == "raw":
        raise ApiError(422, f"{body['model']!r} is a raw model served for /v1/completions only. Chat with a tqstar "
                            "method such as 'tq-direct'.", "model", "model_not_supported")
    _refuse_unknown(body, CHAT_FIELDS)
    prompt = _user_message(body.get("messages"))
    if body.get("max_completion_tokens") is not None:
        body = {**body, "max_tokens": body["max_completion_tokens"]}
    return _method_request(body, catalog, limits, method, options, prompt, chat=True)


def parse_completion(body: dict, catalog: Catalog, limits: Limits) -> MethodRequest | RawRequest:
    kind, resolved, options = catalog.resolve(body.get("model"))
    if kind == "raw":
        return _raw_request(body, resolved, limits)
    _refuse_unknown(body, METHOD_COMPLETION_FIELDS)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "prompt must be a non-empty string for a tqstar method (token-id prompts are for the "
                            "raw models).", "prompt", "invalid_prompt")
    return _method_request(body, catalog, limits, resolved, options, prompt, chat=False)


def _refuse_unknown(body: dict, known: set[str]) -> None:
    roles = sorted(set(body) & ROLE_FIELDS)
    if roles:
        raise ApiError(400, f"{', '.join(roles)} cannot change per request: models and rewards are chosen when the "
                            "server starts (tqstar serve --reference ... --reward ...).", roles[0], "unknown_field")
    unknown = sorted(set(body) - known - set(DECODE_FIELDS))
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}. Send OpenAI fields, tqstar decode options "
                            f"({', '.join(DECODE_FIELDS)}) or trace.", unknown[0], "unknown_field")


def _user_message(messages) -> str:
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list of {role, content} objects.", "messages",
                       "missing_messages")
    if len(messages) != 1 or not isinstance(messages[0], dict) or messages[0].get("role") != "user":
        raise ApiError(422, "tqstar answers one user message: send messages=[{'role': 'user', 'content': ...}] "
                            "(system prompts and earlier turns are not supported).", "messages", "unsupported_messages")
    content = messages[0].get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if not all(isinstance(text, str) for text in texts):
            raise ApiError(400, "A text part of the user message has no string 'text'. Send "
                                "{'type': 'text', 'text': '...'}.", "messages", "invalid_prompt")
        content = "".join(texts)
    if not isinstance(content, str) or not content.strip():
        raise ApiError(400, "The user message is empty. Put the prompt in messages[0].content.", "messages",
                       "invalid_prompt")
    return content


def _method_request(body, catalog, limits, method, options, prompt, chat) -> MethodRequest:
    extra = {k: _decode_option(k, v) for k, v in body.items() if k in DECODE_FIELDS}
    if ("method" in extra and find_method(extra["method"]) is not find_method(method)
            and body.get("model") not in ("tqstar", METHOD_PREFIX)):
        raise ApiError(422, f"model names method {method!r} but the method field says {extra['method']!r}. "
                            "Send one of them.", "method", "conflicting_options")
    options = {**options, "method": method, **extra}
    _check_caps(options, limits)
    _check_openai_sampling(body, n_allowed=1)
    temperature = _number(body, "temperature", 0.0, None)
    if temperature is not None:  # the OpenAI knob: 0 → greedy choice, else the temperature of π_alg
        if temperature == 0:
            options.setdefault("selection", SELECT_GREEDY)
            twin = find_method(options["method"])
            if twin is not None and twin.greedy_twin:
                options["method"] = twin.greedy_twin
        else:
            options.setdefault("selection_temperature", temperature)
    max_tokens = _max_tokens(body, options.pop("max_new_tokens", None), catalog.defaults.max_new_tokens, limits)
    if options.get("seed") is not None:  # from the body or the model name: a torch generator's range
        options["seed"] = _integer(options, "seed", 0, 2**63 - 1)
    try:
        config = replace(catalog.defaults, **options, max_new_tokens=max_tokens)
    except ConfigError as exc:
        raise ApiError(422, str(exc), _named_field(str(exc)), "invalid_option") from None
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise ApiError(422, "stream_options must be an object such as {\"include_usage\": true}.", "stream_options")
    return MethodRequest(body["model"], prompt, config, _flag(body, "stream"),
                         bool(stream_options.get("include_usage")), _flag(body, "trace"), chat)


def _check_caps(options: dict, limits: Limits) -> None:
    """Options a request sets (in the model name or the body) that multiply its work stay under the caps;
    the server's own defaults are the operator's choice and are not capped."""
    for name, (cap, flag) in limits.caps().items():
        if name not in options:
            continue
        value = options[name]
        if value is None:  # horizon 'eos': rollouts as long as the context allows
            raise ApiError(422, f"{name}='eos' is not accepted per request. Send a {name} of at most {cap} (the "
                                f"server's {flag}).", name, "out_of_range")
        if value > cap:
            raise ApiError(422, f"{name}={value} is over the server's cap of {cap} ({flag}). Send at most {cap}.",
                           name, "out_of_range")


def _raw_request(body: dict, role: str, limits: Limits) -> RawRequest:
    unknown = sorted(set(body) - RAW_FIELDS)
    if unknown:
        raise ApiError(400, f"Unknown field(s) for the raw model {body['model']!r}: {', '.join(unknown)}. It takes "
                            f"{', '.join(sorted(RAW_FIELDS))}.", unknown[0], "unknown_field")
    if _flag(body, "stream"):
        raise ApiError(422, "Streaming is offered for the tqstar methods; ask the raw model without stream.",
                       "stream", "unsupported_option")
    _check_openai_sampling(body, n_allowed=None)
    prompt = body.get("prompt")
    valid_ids = isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                             for t in prompt)
    if not (isinstance(prompt, str) and prompt) and not valid_ids:
        raise ApiError(400, "prompt must be a non-empty string or a list of token ids (one prompt per request).",
                       "prompt", "invalid_prompt")
    echo = _flag(body, "echo")
    max_tokens = _integer(body, "max_tokens", 0 if echo else 1, limits.max_tokens, default=16)
    temperature = _number(body, "temperature", 0.0, None)
    return RawRequest(body["model"], role, prompt, max_tokens, _integer(body, "n", 1, limits.max_samples, default=1),
                      1.0 if temperature is None else temperature, _integer(body, "seed", 0, 2**63 - 1),
                      _integer(body, "logprobs", 0, limits.max_logprobs), echo,
                      _flag(body, "return_tokens_as_token_ids"), _token_list(body, "stop_token_ids"))


def _token_list(body: dict, name: str) -> tuple[int, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                              for t in value):
        raise ApiError(422, f"{name} must be a list of token ids (integers ≥ 0), got {value!r}.", name,
                       "invalid_type")
    return tuple(value)


def _check_openai_sampling(body: dict, n_allowed: int | None) -> None:
    if n_allowed is not None and body.get("n") not in (None, n_allowed):
        raise ApiError(422, f"n={body['n']!r} is not supported: a tqstar method returns one choice per request. "
                            "Send n=1 or several requests.", "n", "unsupported_option")
    if body.get("top_p") not in (None, 1, 1.0):
        raise ApiError(422, f"top_p={body['top_p']!r} is not supported; tqstar chooses among the top_k candidates. "
                            "Leave top_p unset (or 1).", "top_p", "unsupported_option")
    if body.get("stop") not in (None, [], ""):
        raise ApiError(422, "stop sequences are not supported; the response ends at EOS or max_tokens.", "stop",
                       "unsupported_option")


def _max_tokens(body, alias, default: int, limits: Limits) -> int:
    value = body.get("max_tokens")
    if alias is not None and value is not None and alias != value:
        raise ApiError(422, f"max_tokens={value} and max_new_tokens={alias} disagree. Send one of them.",
                       "max_tokens", "conflicting_options")
    body = {**body, "max_tokens": value if value is not None else alias}
    return _integer(body, "max_tokens", 1, limits.max_tokens, default=min(default, limits.max_tokens))


def _integer(body: dict, name: str, low: int, high: int | None, default=None):
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


def _number(body: dict, name: str, low: float, high: float | None):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, f"{name} must be a number, got {value!r}.", name, "invalid_type")
    _require_finite(name, value)
    if value < low or (high is not None and value > high):
        raise ApiError(422, f"{name}={value} is out of range: use a value ≥ {low}.", name, "out_of_range")
    return float(value)


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ApiError(422, f"{name} must be true or false, got {value!r}.", name, "invalid_type")
    return value


def _decode_option(name: str, value):
    """A request's DecodeConfig value (a JSON value, or text from the model name), of the field's kind and finite."""
    try:
        value = coerce(DecodeConfig, name, value)
    except ConfigError as exc:
        raise ApiError(422, str(exc), name, "invalid_type") from None
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        _require_finite(name, value)
    return value


def _require_finite(name: str, value) -> None:
    """Refuse infinities (a JSON number such as 1e999 parses as one) and integers too large for a float."""
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise ApiError(422, f"{name}={value!r} is not a finite number. Send an ordinary value.", name,
                       "out_of_range")


def _named_field(message: str) -> str | None:
    return next((name for name in DECODE_FIELDS if message.startswith(name) or f" {name}" in message), None)


# ---- answers --------------------------------------------------------------------------------
def new_id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def method_response(request: MethodRequest, answer_id: str, done: dict) -> dict:
    """The whole answer of a method request (``done`` is the engine's final event)."""
    if request.chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": done["text"]}, "logprobs": None,
                  "finish_reason": done["finish_reason"]}
    else:
        choice = {"index": 0, "text": done["text"], "logprobs": None, "finish_reason": done["finish_reason"]}
    return {"id": answer_id, "object": "chat.completion" if request.chat else "text_completion",
            "created": int(time.time()), "model": request.model, "choices": [choice],
            "usage": usage(done["prompt_tokens"], done["completion_tokens"]), "tqstar": evidence(request, done)}


def evidence(request: MethodRequest, done: dict) -> dict:
    """What tqstar adds to an answer: the method, reward and cost; the per-token trace when asked."""
    out = {"method": request.config.method, "reward": done["reward"], "seconds": round(done["seconds"], 4),
           "forward_tokens": done["forward_tokens"]}
    if request.trace:
        out["trace"] = _finite(done["trace"])
    return out


def _finite(value):
    """JSON has no infinities: a −inf log-prob (a token a remote model did not rank) becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def chunk(request: MethodRequest, answer_id: str, text: str | None, finish_reason: str | None = None,
          first: bool = False, **extra) -> dict:
    """One server-sent event of a streamed answer, in the OpenAI chunk format."""
    if request.chat:
        delta = {"role": "assistant", "content": ""} if first else ({} if text is None else {"content": text})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
    return {"id": answer_id, "object": "chat.completion.chunk" if request.chat else "text_completion",
            "created": int(time.time()), "model": request.model, "choices": [choice], **extra}


def usage_chunk(request: MethodRequest, answer_id: str, done: dict) -> dict:
    return {"id": answer_id, "object": "chat.completion.chunk" if request.chat else "text_completion",
            "created": int(time.time()), "model": request.model, "choices": [],
            "usage": usage(done["prompt_tokens"], done["completion_tokens"])}


def raw_response(request: RawRequest, done: dict) -> dict:
    """A raw completion: ``done["choices"]`` holds text, finish reason and logprobs per sample."""
    choices = [{"index": i, **_finite(choice)} for i, choice in enumerate(done["choices"])]
    return {"id": new_id(False), "object": "text_completion", "created": int(time.time()), "model": request.model,
            "choices": choices, "usage": usage(done["prompt_tokens"], done["completion_tokens"])}
