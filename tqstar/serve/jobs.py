"""Requests on their way through the engine: the job record, which jobs batch together, and admission of a
batch against the models' context (the oldest job always runs; the rest wait for a later batch)."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

from ..decoding.methods import method_of
from ..decoding.protocol import SELECT_SAMPLE, Decoder
from ..decoding.roles import Roles
from ..errors import PromptError
from ..models.protocol import LanguageModel, check_prompt
from .protocol import ApiError, DoneEvent, ErrorEvent, Event, MethodRequest, RawRequest


@dataclass(eq=False)
class Job:
    """One request on its way through the engine; events go back to the HTTP side's event loop.
    A method request carries the decoder it was built with on arrival."""

    request: MethodRequest | RawRequest
    loop: asyncio.AbstractEventLoop
    decoder: Decoder | None = None
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    tokens: list[int] = field(default_factory=list)
    sent: str = ""  # text already streamed
    prompt_ids: list[int] = field(default_factory=list)  # raw requests: the prompt as token ids
    prompt_tokens: int = 0  # for usage: the prompt's length in the output model's tokens
    lengths: dict[int, int] = field(default_factory=dict)  # id(model) → prompt length in its tokens
    answered: bool = False  # its last event (done or error) has been sent

    @property
    def max_tokens(self) -> int:
        request = self.request
        return request.config.max_new_tokens if isinstance(request, MethodRequest) else request.max_tokens

    @property
    def outcome(self) -> str:
        """The stats counter of a job that has run: cancelled if its client left on the way, else completed."""
        return "cancelled" if self.cancelled.is_set() else "completed"

    def key(self) -> tuple:
        """Jobs with equal keys run in one decoder batch: the same options but the seed and the budget
        (each row stops at its own max_tokens); stochastic jobs run alone, with their own generator."""
        request = self.request
        if isinstance(request, RawRequest):
            if request.seed is not None and request.temperature > 0:
                return ("alone", id(self))
            # one max_tokens per batch: every row generates to it, and each prompt was checked against it
            return ("raw", request.role, request.temperature, request.n, request.max_tokens)
        if _stochastic(request.config):
            return ("alone", id(self))
        return ("method", tuple(sorted(asdict(replace(request.config, max_new_tokens=1, seed=0,
                                                      batch_size=1)).items())))

    def emit(self, event: Event) -> None:
        if isinstance(event, (DoneEvent, ErrorEvent)):
            self.answered = True
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the server's loop is gone: nobody is listening
            self.cancelled.set()

    def cancel(self) -> None:
        self.cancelled.set()


def _stochastic(config) -> bool:
    method = method_of(config.method)
    return method.samples or config.selection == SELECT_SAMPLE or (method.rolls_out and config.rollout_temp > 0)


class BatchHost(Protocol):
    """What a running batch needs from the engine (``tqstar.serve.engine.Engine``)."""

    roles: Roles

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a stats counter."""

    def run_now(self, jobs: list[Job]) -> None:
        """Mark ``jobs`` as the ones decoding now."""

    def requeue(self, jobs: list[Job]) -> None:
        """Put ``jobs`` back at the front of the queue, in order."""


def drop_cancelled(waiting: deque[Job]) -> tuple[deque[Job], int]:
    """The queued jobs whose clients are still there, and how many left."""
    live = deque(job for job in waiting if not job.cancelled.is_set())
    return live, len(waiting) - len(live)


def take_batch(waiting: deque[Job], max_batch: int) -> list[Job]:
    """The oldest job and every queued job with its key, up to ``max_batch``, removed from ``waiting``."""
    first = waiting.popleft()
    key, batch = first.key(), [first]
    for job in list(waiting):
        if len(batch) == max_batch:
            break
        if not job.cancelled.is_set() and job.key() == key:
            waiting.remove(job)
            batch.append(job)
    return batch


def admit(host: BatchHost, jobs: list[Job], models, output: LanguageModel) -> list[Job]:
    """The jobs that decode now. Prompts that do not fit their own max_tokens are refused. The others
    join in queue order while every prompt still fits with the batch's largest max_tokens, so the
    oldest always runs; the rest go back to the front of the queue."""
    admitted, later = [], []
    for job in (job for job in jobs if _measure(job, models, output)):
        budget = max([job.max_tokens, *(other.max_tokens for other in admitted)])
        group = [*admitted, job]
        fits = all(other.lengths[id(m)] + budget <= m.max_length for other in group for m in models)
        (admitted if fits else later).append(job)
    host.run_now(admitted)
    if later:
        host.count("requeued", len(later))
        host.requeue(later)
    return admitted


def _measure(job: Job, models, output: LanguageModel) -> bool:
    """Record the prompt's length in each model's tokens; refuse it (400) if it does not fit alone."""
    try:
        for model in models:
            job.lengths[id(model)] = len(check_prompt(model, job.request.prompt, job.max_tokens))
    except PromptError as exc:
        job.emit(ErrorEvent(ApiError(400, str(exc), "messages" if job.request.chat else "prompt",
                                     "context_length_exceeded")))
        return False
    job.prompt_tokens = job.lengths[id(output)]
    return True
