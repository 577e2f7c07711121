"""Method requests of ``tqstar serve``: a tqstar method (``tq-direct``, ``tqstar/args?top_k=5``, …) decodes a
user prompt. Its options are ``DecodeConfig`` fields, taken from the server's defaults, then from the model
name's query, then from extra request fields (the openai client's ``extra_body``). This module parses such
requests, runs a batch of them on the model thread, and writes their answers and stream chunks."""

from __future__ import annotations

import time
from dataclasses import fields, replace
from typing import Any
from urllib.parse import parse_qsl

from ..decoding.config import DecodeConfig, RolesConfig
from ..decoding.methods import METHODS, find_method
from ..decoding.protocol import SELECT_GREEDY, GenerationResult
from ..errors import ConfigError
from ..jsonl import finite
from ..models.protocol import LanguageModel
from ..options import coerce
from .jobs import BatchHost, Job, admit
from .protocol import ApiError, DoneEvent, Finished, Limits, MethodRequest, RawRequest, TokenEvent
from .raw import parse_raw
from .wire import COMMON_FIELDS, check_openai_sampling, flag, integer, require_finite, temperature, usage

METHOD_PREFIX = "tqstar/"
DECODE_FIELDS = tuple(f.name for f in fields(DecodeConfig))
ROLE_FIELDS = {f.name for f in fields(RolesConfig)}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens"}
METHOD_COMPLETION_FIELDS = COMMON_FIELDS | {"prompt"}


class Catalog:
    """The model names a server answers to: methods, and raw models by role and by spec."""

    def __init__(self, defaults: DecodeConfig, raw_names: dict[str, str]):
        self.defaults = defaults
        self.raw = {**raw_names, "reference": "reference", "baseline": "baseline"}  # name → role

    def model_ids(self) -> list[str]:
        return [METHOD_PREFIX + m for m in METHODS] + [n for n, role in self.raw.items() if n != role]

    def knobs(self, method: str) -> dict:
        """The method's own options (``Method.knobs``) with this server's defaults."""
        found = find_method(method)
        defaults = replace(self.defaults, method=method)
        # num_rollouts unset: the method's own N; beta unset: the adapter's DPO β (null here)
        return {"method": method, "options": {name: getattr(defaults, "rollouts" if name == "num_rollouts" else name)
                                              for name in found.knobs}}

    def resolve(self, name: Any) -> tuple[str, str, dict]:
        """``("method", method, options)`` or ``("raw", role, {})`` for a request's model name."""
        if not isinstance(name, str) or not name:
            raise ApiError(400, "The request needs a model: a tqstar method such as 'tq-direct' (see GET /v1/models).",
                           "model", "missing_model")
        if name in self.raw:
            return "raw", self.raw[name], {}
        base, _, query = name.removeprefix(METHOD_PREFIX).partition("?")
        named = base not in ("", "tqstar")  # 'tqstar' alone: the server's default method
        base = base if named else self.defaults.method
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
        method = options.pop("method", base)
        if find_method(method) is None:  # 'tqstar?method=...' names it in the query alone
            raise ApiError(422, f"Unknown method {method!r} in the model name {name!r}. Use one of: "
                                f"{', '.join(METHODS)}.", "model", "invalid_option")
        if named and find_method(method) is not find_method(base):
            raise ApiError(422, f"The model name {name!r} names two methods, {base!r} and {method!r}. "
                                f"Name one: 'tqstar/{method}' or 'tqstar/{base}'.", "model", "conflicting_options")
        return "method", method, options


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
        return parse_raw(body, resolved, limits)
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
    check_openai_sampling(body, n_allowed=1)
    sampling = temperature(body)
    if sampling is not None:  # the OpenAI knob: 0 → greedy choice, else the temperature of π_alg
        if sampling == 0:
            options.setdefault("selection", SELECT_GREEDY)
            twin = find_method(options["method"])
            if twin is not None and twin.greedy_twin:
                options["method"] = twin.greedy_twin
        else:
            options.setdefault("selection_temperature", sampling)
    max_tokens = _max_tokens(body, options.pop("max_new_tokens", None), catalog.defaults.max_new_tokens, limits)
    if options.get("seed") is not None:  # from the body or the model name: a torch generator's range
        options["seed"] = integer(options, "seed", 0, 2**63 - 1)
    try:
        config = replace(catalog.defaults, **options, max_new_tokens=max_tokens)
    except ConfigError as exc:
        raise ApiError(422, str(exc), _named_field(str(exc)), "invalid_option") from None
    # options the request did not set but its choices changed (compat sets k and H) are capped too
    _check_caps({name: getattr(config, name) for name in limits.caps() if name not in options
                 and getattr(config, name) != getattr(catalog.defaults, name)}, limits, " (set by compat)")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise ApiError(422, "stream_options must be an object such as {\"include_usage\": true}.", "stream_options")
    return MethodRequest(body["model"], prompt, config, flag(body, "stream"),
                         bool(stream_options.get("include_usage")), flag(body, "trace"), chat)


def _check_caps(options: dict, limits: Limits, why: str = "") -> None:
    """Options a request sets (in the model name or the body) that multiply its work stay under the caps;
    the server's own defaults are the operator's choice and are not capped."""
    for name, (cap, server_flag) in limits.caps().items():
        if name not in options:
            continue
        value = options[name]
        if value is None and name == "num_rollouts":
            continue  # the method's own N
        if value is None:  # horizon 'eos': rollouts as long as the context allows
            raise ApiError(422, f"{name}='eos'{why} is not accepted per request. Send a {name} of at most {cap} "
                                f"(the server's {server_flag}).", name, "out_of_range")
        if value > cap:
            raise ApiError(422, f"{name}={value}{why} is over the server's cap of {cap} ({server_flag}). Send at "
                                f"most {cap}.", name, "out_of_range")


def _max_tokens(body, alias, default: int, limits: Limits) -> int:
    value = body.get("max_tokens")
    if alias is not None and value is not None and alias != value:
        raise ApiError(422, f"max_tokens={value} and max_new_tokens={alias} disagree. Send one of them.",
                       "max_tokens", "conflicting_options")
    body = {**body, "max_tokens": value if value is not None else alias}
    return integer(body, "max_tokens", 1, limits.max_tokens, default=min(default, limits.max_tokens))


def _decode_option(name: str, value):
    """A request's DecodeConfig value (a JSON value, or text from the model name), of the field's kind and finite."""
    try:
        value = coerce(DecodeConfig, name, value)
    except ConfigError as exc:
        raise ApiError(422, str(exc), name, "invalid_type") from None
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)):
        require_finite(name, value)
    return value


def _named_field(message: str) -> str | None:
    return next((name for name in DECODE_FIELDS if message.startswith(name) or f" {name}" in message), None)


def method_response(request: MethodRequest, answer_id: str, done: Finished) -> dict:
    """The whole answer of a method request."""
    if request.chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": done.text}, "logprobs": None,
                  "finish_reason": done.finish_reason}
    else:
        choice = {"index": 0, "text": done.text, "logprobs": None, "finish_reason": done.finish_reason}
    return {"id": answer_id, "object": "chat.completion" if request.chat else "text_completion",
            "created": int(time.time()), "model": request.model, "choices": [choice],
            "usage": usage(done.prompt_tokens, done.completion_tokens), "tqstar": evidence(request, done)}


def evidence(request: MethodRequest, done: Finished) -> dict:
    """What tqstar adds to an answer: the method, reward and cost; the per-token trace when asked."""
    out = {"method": request.config.method, "reward": done.reward, "seconds": round(done.seconds, 4),
           "forward_tokens": done.forward_tokens}
    if request.trace:
        out["trace"] = finite(done.trace)
    return out


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


def usage_chunk(request: MethodRequest, answer_id: str, done: Finished) -> dict:
    return {"id": answer_id, "object": "chat.completion.chunk" if request.chat else "text_completion",
            "created": int(time.time()), "model": request.model, "choices": [],
            "usage": usage(done.prompt_tokens, done.completion_tokens)}


def run_methods(host: BatchHost, jobs: list[Job]) -> None:
    """Decode a batch of method jobs with the oldest one's decoder (they share its options), streaming
    each token to its job; a row stops at its own max_tokens or when its client has gone."""
    decoder = jobs[0].decoder
    output = decoder.output_model
    jobs = admit(host, jobs, decoder.models, output)
    if not jobs:
        return

    def on_token(index: int, token: int) -> bool:
        job = jobs[index]
        _push(host, job, output, token)
        return job.cancelled.is_set() or len(job.tokens) >= job.max_tokens

    results = decoder.generate([job.request.prompt for job in jobs], on_token=on_token,
                               max_new_tokens=[job.max_tokens for job in jobs])
    for job, result in zip(jobs, results):
        _finish(host, job, output, result)


def _push(host: BatchHost, job: Job, model: LanguageModel, token: int) -> None:
    """Record a token and stream the text it completes (held back while a character is partial)."""
    job.tokens.append(token)
    host.count("generated_tokens", 1)
    text = model.decode(job.tokens)
    if text.endswith("\ufffd") or not text.startswith(job.sent):
        return
    delta, job.sent = text[len(job.sent):], text
    job.emit(TokenEvent(token, delta))


def _finish(host: BatchHost, job: Job, model: LanguageModel, result: GenerationResult) -> None:
    rest = result.text[len(job.sent):] if result.text.startswith(job.sent) else ""
    if rest:
        job.emit(TokenEvent(None, rest))
    last = result.token_ids[-1] if result.token_ids else None
    host.count(job.outcome, 1)
    job.emit(DoneEvent(Finished(
        text=result.text, token_ids=result.token_ids, reward=result.reward, seconds=result.seconds,
        forward_tokens=result.forward_tokens, finish_reason="stop" if last in model.eos_token_ids else "length",
        prompt_tokens=job.prompt_tokens, completion_tokens=len(result.token_ids),
        trace=result.trace_records())))  # sent only when asked; the metrics and the audit log read it
