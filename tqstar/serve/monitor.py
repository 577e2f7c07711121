"""What the server keeps of each request it answers: the Prometheus metrics, and (``--audit-log``) one
audit record per method answer, written before the answer leaves so a killed server loses none it sent.
Raw completions (the remote-baseline protocol, many per decoding step) are counted but not audited."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from datetime import datetime, timezone

from ..audit.log import AuditLog
from ..audit.protocol import TRACE_FULL, trace_digest
from ..decoding.methods import find_method
from ..jsonl import finite
from .methods import Catalog
from .metrics import ServeMetrics, mean_ess
from .protocol import ApiError, Finished, MethodRequest, RawFinished, RawRequest

#: The metrics label of a request refused before its model name was read.
UNREAD = "invalid"
LOG = logging.getLogger("tqstar.serve")


class Monitor:
    """The app's metrics and optional audit log; ``watch()`` follows one request."""

    def __init__(self, metrics: ServeMetrics, audit: AuditLog | None = None, roles: dict | None = None,
                 keep_trace: str = TRACE_FULL):
        self.metrics, self.audit, self.roles, self.keep_trace = metrics, audit, roles, keep_trace

    def watch(self) -> "Watch":
        return Watch(self)


class Watch:
    """One request from its arrival to its answer or error; each request is counted once."""

    def __init__(self, monitor: Monitor):
        self.monitor, self.method, self.started = monitor, UNREAD, time.perf_counter()
        self.first_token: float | None = None
        self.closed = False

    def label(self, body: dict, catalog: Catalog) -> None:
        """Label by the method the body's model name names, when it names one of ``METHODS``: a label is
        never text a client chose, so the metrics hold a bounded set of series."""
        try:
            kind, method, _ = catalog.resolve(body.get("model"))
        except ApiError:
            return
        self.method = "raw" if kind == "raw" else _known(method)

    def named(self, request: MethodRequest | RawRequest) -> None:
        self.method = _known(request.config.method) if isinstance(request, MethodRequest) else "raw"

    def token(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter() - self.started
            self.monitor.metrics.first_token.labels(self.method).observe(self.first_token)

    async def answered(self, request: MethodRequest | RawRequest, answer_id: str,
                       done: Finished | RawFinished) -> None:
        """Audit (on a worker thread: the append waits for the disk) and count an answer about to be sent.
        A failed append raises, so no answer leaves unaudited."""
        monitor = self.monitor
        if monitor.audit is not None and isinstance(request, MethodRequest):
            record = audit_record(request, answer_id, done, monitor.roles, monitor.keep_trace)
            try:
                await asyncio.to_thread(monitor.audit.append, record)
            except OSError as exc:
                self.failed(500)
                LOG.error("The audit log could not be written: %s", exc)
                raise ApiError(500, f"The answer could not be written to the audit log ({exc.strerror or exc}), so "
                                    "it was not sent. The operator must free or fix --audit-log.", None,
                               "audit_log_failed", "server_error") from None
        self.closed = True
        seconds = time.perf_counter() - self.started
        if isinstance(done, Finished):
            monitor.metrics.answered(self.method, seconds, done.completion_tokens, done.reward, mean_ess(done.trace))
        else:
            monitor.metrics.answered(self.method, seconds, done.completion_tokens, None, None)

    def failed(self, status: int) -> None:
        if not self.closed:
            self.closed = True
            self.monitor.metrics.failed(self.method, status)


def _known(method: str) -> str:
    return method if find_method(method) is not None else UNREAD


def audit_record(request: MethodRequest, answer_id: str, done: Finished, roles: dict | None, keep_trace: str) -> dict:
    """The audit record of one answer (fields: ``tqstar.audit.protocol.AUDIT_FIELDS``)."""
    trace = finite(done.trace or [])
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "id": answer_id, "endpoint": "chat.completions" if request.chat else "completions", "model": request.model,
        "method": request.config.method, "options": asdict(request.config), "roles": roles,
        "prompt": request.prompt, "answer": done.text, "reward": done.reward, "finish_reason": done.finish_reason,
        "seconds": round(done.seconds, 4), "forward_tokens": done.forward_tokens,
        "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens},
    }
    if keep_trace == TRACE_FULL:
        record["trace"] = trace
    else:
        record["trace_digest"], record["trace_steps"] = trace_digest(trace), len(trace)
    return record
