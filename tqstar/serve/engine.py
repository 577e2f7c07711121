"""The engine behind ``tqstar serve``: a bounded queue and one model thread.

Models run on one worker thread (they keep a prefix cache and are not thread-safe); the HTTP side only
queues jobs and reads their events. Requests batch together when they would build the same decoder
(``Job.key``); a request that arrives while a batch runs waits for the next one. The oldest waiting
request always runs in the next batch, so a stream of newer requests cannot starve it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque

from ..decoding.roles import Roles
from ..errors import RemoteModelError, TQStarError
from .jobs import Job, drop_cancelled, take_batch
from .methods import run_methods
from .protocol import ApiError, ErrorEvent, RawRequest
from .raw import run_raw

LOG = logging.getLogger("tqstar.serve")


class QueueFull(Exception):
    """The queue holds as many waiting requests as it may."""


class EngineDown(Exception):
    """The model thread has stopped: nothing would run a new request."""


def engine_down() -> ApiError:
    return ApiError(503, "The server's model thread has stopped, so this request cannot run. Restart tqstar serve.",
                    None, "engine_down", "server_error")


class Engine:
    """Queue, batcher and model thread (the ``BatchHost`` of the batches it runs)."""

    def __init__(self, roles: Roles, max_batch: int, queue_size: int):
        self.roles, self.max_batch, self.queue_size = roles, max_batch, queue_size
        self.waiting: deque[Job] = deque()
        self.condition = threading.Condition()
        self.running: list[Job] = []  # the jobs decoding now
        self.stats: Counter = Counter()
        self._stop = False
        self._down = False  # set, under the lock, once the model thread has given up its jobs
        self.thread = threading.Thread(target=self._loop, name="tqstar-engine", daemon=True)
        self.thread.start()

    # ---- HTTP side -----------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self.condition:
            if self._down or not self.thread.is_alive():
                raise EngineDown
            self._drop_cancelled()  # requests whose clients left do not hold places in the queue
            if len(self.waiting) >= self.queue_size:
                self.stats["rejected"] += 1
                raise QueueFull
            self.waiting.append(job)
            self.stats["accepted"] += 1
            self.condition.notify()

    def health(self) -> dict:
        with self.condition:
            status = "down" if self._down or not self.thread.is_alive() else "ok"
            return {"status": status, "queued": len(self.waiting), "running": len(self.running), **self.stats}

    def stop(self) -> None:
        with self.condition:
            self._stop = True
            self.condition.notify_all()
        self.thread.join(timeout=5)

    # ---- the batch host ------------------------------------------------------------------
    def count(self, name: str, amount: int = 1) -> None:
        with self.condition:  # health() copies the counters under the same lock
            self.stats[name] += amount

    def run_now(self, jobs: list[Job]) -> None:
        with self.condition:
            self.running = jobs

    def requeue(self, jobs: list[Job]) -> None:
        with self.condition:
            self.waiting.extendleft(reversed(jobs))
            self.condition.notify()

    # ---- model thread --------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException:
            LOG.exception("The model thread stopped; every request now answers 503")
            raise
        finally:  # stopped, or crashed outside a batch: no one else will answer these jobs
            with self.condition:
                self._down = True
                left = [job for job in self.running if not job.answered] + list(self.waiting)
                self.waiting.clear()
            for job in left:
                job.emit(ErrorEvent(engine_down()))

    def _serve(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                (run_raw if isinstance(batch[0].request, RawRequest) else run_methods)(self, batch)
            except Exception as exc:  # one failed batch must not stop the server
                if as_api_error(exc).status >= 500:  # a request's own fault is its 4xx, not the log's
                    LOG.error("A batch of %d request(s) failed", len(batch), exc_info=exc)
                # only the jobs still decoding: refused ones have their answer, requeued ones run later
                failed = [job for job in self.running if not job.answered]
                self.count("failed", len(failed))
                for job in failed:
                    job.emit(ErrorEvent(as_api_error(exc)))
            finally:
                self.run_now([])

    def _take(self) -> list[Job] | None:
        """The next batch, waiting for one; None once stopped."""
        with self.condition:
            while True:
                self._drop_cancelled()
                if self.waiting or self._stop:
                    break
                self.condition.wait()
            if self._stop:
                return None
            self.running = take_batch(self.waiting, self.max_batch)
            self.stats["batches"] += 1
            return self.running

    def _drop_cancelled(self) -> None:
        """Forget queued jobs whose clients have gone (call with the lock held)."""
        self.waiting, dropped = drop_cancelled(self.waiting)
        self.stats["cancelled"] += dropped


def as_api_error(exc: Exception) -> ApiError:
    """The answer to a batch that failed with ``exc``."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RemoteModelError):  # the request was fine; a model server behind this one failed
        return ApiError(502, str(exc), None, "upstream_error", "server_error")
    if isinstance(exc, TQStarError):
        return ApiError(422 if isinstance(exc, ValueError) else 500, str(exc), None, type(exc).__name__,
                        "invalid_request_error" if isinstance(exc, ValueError) else "server_error")
    return ApiError(500, f"Decoding failed: {type(exc).__name__}: {exc}", None, "internal_error", "server_error")
