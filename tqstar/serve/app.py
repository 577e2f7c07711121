"""The FastAPI app of ``tqstar serve``: routes, API key, body limits, streaming and disconnects. A method
request builds its decoder here, on arrival, so options the decoder refuses fail before queueing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..audit.identity import roles_identity
from ..audit.log import AuditLog
from ..decoding.build import build_decoder
from ..decoding.config import DecodeConfig
from ..decoding.roles import Roles
from ..errors import TQStarError
from ..prompts import unicode_problem
from .config import ServeConfig
from .engine import Engine, EngineDown, QueueFull, engine_down
from .guard import RequireKey, RequireLocalHost, error_response
from .jobs import Job
from .methods import METHOD_PREFIX, Catalog, chunk, evidence, method_response, parse_chat, parse_completion, usage_chunk
from .metrics import ServeMetrics
from .monitor import Monitor, Watch
from .playground import PUBLIC, add_playground
from .protocol import ApiError, DoneEvent, ErrorEvent, Event, Limits, MethodRequest, RawRequest, TokenEvent
from .raw import raw_response
from .wire import new_id, sse

#: How often a waiting non-streaming request checks whether its client is still there.
POLL_SECONDS = 0.25
LOG = logging.getLogger("tqstar.serve")


class _Gone(Exception):
    """The client closed the connection before its answer was ready."""


def create_app(config: ServeConfig, roles: Roles, defaults: DecodeConfig, raw_names: dict[str, str]) -> FastAPI:
    """An app serving ``roles`` with ``defaults`` as every request's starting options."""
    engine = Engine(roles, config.max_batch, config.queue_size)
    catalog = Catalog(defaults, raw_names)
    limits = Limits(config.max_tokens, config.max_samples, config.max_logprobs, config.max_top_k)
    metrics = ServeMetrics(lambda: engine.health()["queued"], lambda: engine.health()["running"])
    audit = AuditLog(config.audit_log, config.audit_max_bytes) if config.audit_log else None
    monitor = Monitor(metrics, audit, roles_identity(roles) if audit else None, config.audit_trace)

    @asynccontextmanager
    async def lifespan(app):
        yield
        engine.stop()

    app = FastAPI(title="tqstar", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine
    if config.api_key:
        app.add_middleware(RequireKey, key=config.api_key, public=PUBLIC)
    else:  # no key: a web page the user has open must not reach the server through a rebound DNS name
        app.add_middleware(RequireLocalHost, allowed=config.allowed_hosts)
    app.add_exception_handler(ApiError, lambda request, exc: _error(request, exc))
    app.add_exception_handler(HTTPException, lambda request, exc: _error(request,
        ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}. The API offers "
                                  "POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, "
                                  "GET /metrics, and the playground at GET /.",
                 code="not_found" if exc.status_code == 404 else None)))
    app.add_exception_handler(Exception, _unexpected)

    add_playground(app)

    @app.get("/health")
    async def health():
        state = engine.health()
        return JSONResponse(state, status_code=200 if state["status"] == "ok" else 503)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": _model_cards(catalog, roles)}

    @app.get("/metrics")
    async def prometheus():
        text, kind = metrics.exposition()
        return Response(text, media_type=kind)

    async def serve(request: Request, parse) -> Response:
        watch = monitor.watch()
        try:
            body = await _read_json(request, config.max_body_bytes)
            watch.label(body, catalog)  # a request refused for its options still counts for its method
            parsed = parse(body, catalog, limits)
            watch.named(parsed)
            return await _answer(request, parsed, engine, roles, config, watch)
        except ApiError as exc:
            watch.failed(exc.status)
            raise
        except Exception:
            watch.failed(500)
            raise

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await serve(request, parse_chat)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await serve(request, parse_completion)

    return app


def _model_cards(catalog: Catalog, roles: Roles) -> list[dict]:
    """The served names, less those that are local paths: a client learns nothing of the machine's files
    (it still may ask for a model by its path, or by its role)."""
    created = int(time.time())
    cards = []
    for name in [n for n in catalog.model_ids() if not _local_path(n)] + ["reference", "baseline"]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "tqstar"}
        if name.startswith(METHOD_PREFIX):  # what the playground offers per method, with the server's defaults
            card["tqstar"] = catalog.knobs(name.removeprefix(METHOD_PREFIX))
        if name in catalog.raw:  # what a remote client reads the context length from, like vLLM's
            card["max_model_len"] = roles.model(catalog.raw[name]).max_length
        cards.append(card)
    return cards


async def _answer(request: Request, parsed: MethodRequest | RawRequest, engine: Engine, roles: Roles,
                  config: ServeConfig, watch: Watch) -> Response:
    decoder = None
    if isinstance(parsed, MethodRequest):
        try:  # option combinations the decoder refuses (e.g. tq-indirect without r_BL) fail before queueing
            decoder = build_decoder(replace(parsed.config, batch_size=config.max_batch), roles)
        except TQStarError as exc:
            raise ApiError(422, str(exc), None, "invalid_option") from None
    job = Job(parsed, asyncio.get_running_loop(), decoder)
    try:
        engine.submit(job)
    except QueueFull:
        raise ApiError(429, f"The server is busy: {config.queue_size} requests are already waiting. Retry in a "
                            "moment.", None, "queue_full", "rate_limit_error") from None
    except EngineDown:
        raise engine_down() from None
    answer_id = new_id(parsed.chat) if isinstance(parsed, MethodRequest) else ""  # raw answers name their own
    try:
        event = await _next_event(job, request, watch)
        # the stream opens with the first token: a request that fails before it (a prompt too long for the
        # context, a failed batch) gets its error status rather than a 200 stream
        if isinstance(parsed, MethodRequest) and parsed.stream and not isinstance(event, ErrorEvent):
            return StreamingResponse(_stream(job, parsed, event, answer_id, watch), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        while not isinstance(event, (DoneEvent, ErrorEvent)):
            event = await _next_event(job, request, watch)
    except _Gone:
        watch.failed(499)
        return Response(status_code=499)
    if isinstance(event, ErrorEvent):
        raise event.error
    await watch.answered(parsed, answer_id, event.result)  # audited before it is sent
    if isinstance(parsed, RawRequest):
        return JSONResponse(raw_response(parsed, event.result))
    return JSONResponse(method_response(parsed, answer_id, event.result))


async def _next_event(job: Job, request: Request, watch: Watch) -> Event:
    """The job's next event, cancelling the job when its client has gone away."""
    while True:
        try:
            event = await asyncio.wait_for(job.events.get(), POLL_SECONDS)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.cancel()
                raise _Gone from None
            continue
        if isinstance(event, TokenEvent):
            watch.token()
        return event


async def _stream(job: Job, request: MethodRequest, event: Event, answer_id: str, watch: Watch):
    """Server-sent events from the job's first ``event`` on: a chunk per token, a last chunk with the finish
    reason, then ``[DONE]``."""
    try:
        if request.chat:
            yield sse(chunk(request, answer_id, None, first=True))
        while True:
            if isinstance(event, TokenEvent):
                watch.token()
                if event.text:
                    yield sse(chunk(request, answer_id, event.text))
            elif isinstance(event, DoneEvent):
                done = event.result
                try:
                    await watch.answered(request, answer_id, done)  # audited before its last chunk is sent
                except ApiError as exc:  # the audit log could not take it: the answer is not sent
                    yield sse(exc.body())
                    break
                yield sse(chunk(request, answer_id, None, done.finish_reason, tqstar=evidence(request, done)))
                if request.include_usage:
                    yield sse(usage_chunk(request, answer_id, done))
                break
            elif isinstance(event, ErrorEvent):
                watch.failed(event.error.status)
                yield sse(event.error.body())
                break
            event = await job.events.get()
        yield "data: [DONE]\n\n"
    finally:  # the client went away (or the answer is complete): stop decoding this row
        watch.failed(499)  # only counts when neither an answer nor an error was
        job.cancel()


def _local_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


async def _read_json(request: Request, limit: int) -> dict:
    """The body as a JSON object, refusing other content types (415), oversized (413) and malformed (400)
    bodies, and text that is not Unicode (400). Only JSON: what a web page may send without the browser
    asking the server first (a form, text/plain) is never read."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, f"The body must be JSON, sent with 'Content-Type: application/json' (got "
                            f"{kind or 'no content type'!r}).", None, "unsupported_media_type")
    too_large = ApiError(413, f"The request body exceeds {limit} bytes (the server's --max-body-bytes). Send a "
                              "shorter prompt.", None, "request_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            raise too_large
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The body is not valid JSON ({exc}). Send a JSON object.", None, "invalid_json") from None
    except RecursionError:
        raise ApiError(400, "The body nests too deeply to parse. Send a flat JSON object.", None,
                       "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.", None, "invalid_json")
    where = _lone_surrogate(body)
    if where is not None:
        raise ApiError(400, f"{where} holds a lone surrogate (an escape such as \\ud800 without its pair), which "
                            "is not Unicode text. Send valid UTF-8 text.", where.partition(".")[0].partition("[")[0],
                       "invalid_text")
    return body


def _lone_surrogate(body: dict) -> str | None:
    """Where in a parsed body a string (or key) holds a lone surrogate, or None. A walk with its own stack:
    json.loads accepts nesting deeper than Python's recursion limit."""
    stack: list[tuple[object, str]] = [(body, "body")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            if unicode_problem(value) is not None:
                return where
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):  # reversed: popped in order, the first one found reported
                stack.append((item, key if where == "body" else f"{where}.{key}"))
                stack.append((key, where))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in reversed(list(enumerate(value))))
    return None


def _refuse_constant(name: str):
    """Python's json accepts NaN and Infinity; JSON does not, and no option means anything with them."""
    raise ValueError(f"{name} is not a JSON number")


def _error(request: Request, exc: ApiError) -> JSONResponse:
    if exc.status >= 500:  # the server's fault, or a model behind it: the operator needs to know
        LOG.error("%s %s answered %d: %s", request.method, request.url.path, exc.status, exc.message)
    return error_response(exc)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback, answered with an OpenAI error body rather than plain text."""
    LOG.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(ApiError(500, f"The server failed: {type(exc).__name__}. Its log has the details.",
                                   None, "internal_error", "server_error"))

