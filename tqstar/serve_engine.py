"""The engine behind ``tqstar serve``: a bounded queue, batches of compatible requests, one model thread.

Models run on one worker thread (they keep a prefix cache and are not thread-safe); the HTTP side only
queues jobs and reads their events. Requests batch together when they would build the same decoder:
the same ``DecodeConfig`` except ``max_new_tokens`` (each row stops at its own limit through the
decoder's ``on_token`` hook) and the seed (for deterministic settings only, so a seeded stochastic
request always gets the same answer). A request that arrives while a batch runs waits for the next one.
The oldest waiting request always runs in the next batch, so a stream of newer requests cannot starve it.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace

import torch

from .decoding.build import build_decoder
from .decoding.methods import method_of
from .decoding.protocol import SELECT_SAMPLE
from .decoding.roles import Roles
from .errors import PromptError, RemoteModelError, TQStarError
from .models.protocol import check_prompt
from .serve_protocol import ApiError, MethodRequest, RawRequest

#: Rows of per-position log-probs computed at once for a raw completion.
LOGPROB_ROWS = 64


class QueueFull(Exception):
    """The queue holds as many waiting requests as it may."""


class EngineDown(Exception):
    """The model thread has stopped: nothing would run a new request."""


def engine_down() -> ApiError:
    return ApiError(503, "The server's model thread has stopped, so this request cannot run. Restart tqstar serve.",
                    None, "engine_down", "server_error")


@dataclass(eq=False)
class Job:
    """One request on its way through the engine; events go back to the HTTP side's event loop."""

    request: MethodRequest | RawRequest
    loop: asyncio.AbstractEventLoop
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

    def key(self) -> tuple:
        """Jobs with equal keys run in one decoder batch."""
        request = self.request
        if isinstance(request, RawRequest):
            if request.seed is not None and request.temperature > 0:
                return ("alone", id(self))  # its own generator, so batch-mates cannot change its samples
            # one max_tokens per batch: every row generates to it, and each prompt was checked against it
            return ("raw", request.role, request.temperature, request.n, request.max_tokens)
        config = request.config
        if _stochastic(config):
            return ("alone", id(self))  # its own generator, seeded by its own seed
        return ("method", tuple(sorted(asdict(replace(config, max_new_tokens=1, seed=0, batch_size=1)).items())))

    def emit(self, *event) -> None:
        if event[0] in ("done", "error"):
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


class Engine:
    """Queue, batcher and model thread."""

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

    def _count(self, name: str, amount: int) -> None:
        with self.condition:  # health() copies the counters under the same lock
            self.stats[name] += amount

    # ---- model thread --------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._serve()
        finally:  # stopped, or crashed outside a batch: no one else will answer these jobs
            with self.condition:
                self._down = True
                left = [job for job in self.running if not job.answered] + list(self.waiting)
                self.waiting.clear()
            for job in left:
                job.emit("error", engine_down())

    def _serve(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                if isinstance(batch[0].request, RawRequest):
                    self._run_raw(batch)
                else:
                    self._run_method(batch)
            except Exception as exc:  # one failed batch must not stop the server
                # only the jobs still decoding: refused ones have their answer, requeued ones run later
                failed = [job for job in self.running if not job.answered]
                self._count("failed", len(failed))
                for job in failed:
                    job.emit("error", _as_api_error(exc))
            finally:
                with self.condition:
                    self.running = []

    def _take(self) -> list[Job] | None:
        """The oldest live job and every queued job with its key, up to ``max_batch``."""
        with self.condition:
            while True:
                self._drop_cancelled()
                if self.waiting or self._stop:
                    break
                self.condition.wait()
            if self._stop:
                return None
            first = self.waiting.popleft()
            key, batch = first.key(), [first]
            for job in list(self.waiting):
                if len(batch) == self.max_batch:
                    break
                if not job.cancelled.is_set() and job.key() == key:
                    self.waiting.remove(job)
                    batch.append(job)
            self.running = batch
            self.stats["batches"] += 1
            return batch

    def _drop_cancelled(self) -> None:
        """Forget queued jobs whose clients have gone (call with the lock held)."""
        live = [job for job in self.waiting if not job.cancelled.is_set()]
        self.stats["cancelled"] += len(self.waiting) - len(live)
        self.waiting = deque(live)

    def _requeue(self, jobs: list[Job]) -> None:
        with self.condition:
            self.waiting.extendleft(reversed(jobs))
            self.condition.notify()

    # ---- tqstar methods ------------------------------------------------------------------
    def _run_method(self, jobs: list[Job]) -> None:
        decoder = build_decoder(replace(jobs[0].request.config, batch_size=len(jobs)), self.roles)
        output = decoder.output_model
        jobs = self._admit(jobs, decoder.models, output)
        if not jobs:
            return

        def on_token(index: int, token: int) -> bool:
            job = jobs[index]
            self._push(job, output, token)
            return job.cancelled.is_set() or len(job.tokens) >= job.max_tokens

        prompts = [job.request.prompt for job in jobs]
        results = decoder.generate(prompts, on_token=on_token, max_new_tokens=[job.max_tokens for job in jobs])
        for job, result in zip(jobs, results):
            self._finish(job, output, result)

    def _admit(self, jobs: list[Job], models, output) -> list[Job]:
        """The jobs that decode now. Prompts that do not fit their own max_tokens are refused. The others
        join in queue order while every prompt still fits with the batch's largest max_tokens, so the
        oldest always runs; the rest go back to the front of the queue."""
        admitted, later = [], []
        for job in (job for job in jobs if self._measure(job, models, output)):
            budget = max([job.max_tokens, *(other.max_tokens for other in admitted)])
            group = [*admitted, job]
            fits = all(other.lengths[id(m)] + budget <= m.max_length for other in group for m in models)
            (admitted if fits else later).append(job)
        with self.condition:
            self.running = admitted
        if later:
            self._count("requeued", len(later))
            self._requeue(later)
        return admitted

    def _measure(self, job: Job, models, output) -> bool:
        """Record the prompt's length in each model's tokens; refuse it (400) if it does not fit alone."""
        try:
            for model in models:
                job.lengths[id(model)] = len(check_prompt(model, job.request.prompt, job.max_tokens))
        except PromptError as exc:
            job.emit("error", ApiError(400, str(exc), "messages" if job.request.chat else "prompt",
                                       "context_length_exceeded"))
            return False
        job.prompt_tokens = job.lengths[id(output)]
        return True

    def _push(self, job: Job, model, token: int) -> None:
        """Record a token and stream the text it completes (held back while a character is partial)."""
        job.tokens.append(token)
        self._count("generated_tokens", 1)
        text = model.decode(job.tokens)
        if text.endswith("\ufffd") or not text.startswith(job.sent):
            return
        delta, job.sent = text[len(job.sent):], text
        job.emit("token", token, delta)

    def _finish(self, job: Job, model, result) -> None:
        rest = result.text[len(job.sent):] if result.text.startswith(job.sent) else ""
        if rest:
            job.emit("token", None, rest)
        last = result.token_ids[-1] if result.token_ids else None
        self._settle(job)
        job.emit("done", {
            "text": result.text, "token_ids": result.token_ids, "reward": result.reward,
            "seconds": result.seconds, "forward_tokens": result.forward_tokens,
            "finish_reason": "stop" if last in model.eos_token_ids else "length",
            "prompt_tokens": job.prompt_tokens, "completion_tokens": len(result.token_ids),
            "trace": result.trace_records() if job.request.trace else None})

    def _settle(self, job: Job) -> None:
        """Count a job that has run once: cancelled if its client left on the way, else completed."""
        self._count("cancelled" if job.cancelled.is_set() else "completed", 1)

    # ---- raw models ----------------------------------------------------------------------
    def _run_raw(self, jobs: list[Job]) -> None:
        first = jobs[0].request
        model = self.roles.reference if first.role == "reference" else self.roles.baseline
        jobs = [job for job in jobs if self._raw_prompt(job, model)]
        with self.condition:
            self.running = jobs
        sampled = [[()] * first.n for _ in jobs]  # max_tokens=0 (echo only): nothing to generate
        if jobs and first.max_tokens > 0:  # the whole batch has this max_tokens (it is in the key)
            generator = torch.Generator()
            generator.manual_seed(first.seed if first.seed is not None else random.getrandbits(63))
            rows = model.sample_continuations([job.prompt_ids for job in jobs], None, first.n, first.max_tokens - 1,
                                              first.temperature, generator)
            sampled = [[c.tokens for c in row[0]] for row in rows]
        for job, samples in zip(jobs, sampled):
            outputs = [_cut_at(list(tokens)[:job.max_tokens], job.request.stop_token_ids) for tokens in samples]
            choices = [self._raw_choice(job, model, tokens) for tokens in outputs]
            self._settle(job)
            self._count("generated_tokens", sum(len(t) for t in outputs))
            job.emit("done", {"choices": choices, "prompt_tokens": len(job.prompt_ids),
                              "completion_tokens": sum(len(t) for t in outputs)})

    def _raw_prompt(self, job: Job, model) -> bool:
        request = job.request
        ids = model.encode(request.prompt) if isinstance(request.prompt, str) else list(request.prompt)
        vocabulary = len(model.tokenizer) if hasattr(model, "tokenizer") else None
        problem = None
        if not ids:
            problem = ApiError(400, "The prompt encodes to no tokens. Send some text or token ids.", "prompt",
                               "invalid_prompt")
        elif vocabulary is not None and max(ids) >= vocabulary:
            problem = ApiError(422, f"Token id {max(ids)} is outside the vocabulary (size {vocabulary}).", "prompt",
                               "invalid_prompt")
        elif len(ids) + job.max_tokens > model.max_length:
            problem = ApiError(400, f"The prompt is {len(ids)} tokens; with max_tokens={job.max_tokens} it exceeds "
                                    f"the model context of {model.max_length}. Shorten it or lower max_tokens.",
                               "prompt", "context_length_exceeded")
        if problem is not None:
            job.emit("error", problem)
            return False
        job.prompt_ids = ids
        return True

    def _raw_choice(self, job: Job, model, tokens: list[int]) -> dict:
        request = job.request
        prompt = job.prompt_ids
        text = model.decode(tokens) if not request.echo else model.decode(prompt) + model.decode(tokens)
        ends = model.eos_token_ids | set(request.stop_token_ids)
        finish = "stop" if tokens and tokens[-1] in ends else "length"
        choice = {"text": text, "logprobs": None, "finish_reason": finish}
        if request.logprobs is not None:
            choice["logprobs"] = _logprobs(model, prompt, tokens, request.logprobs, request.echo, request.token_ids)
        return choice


def _logprobs(model, prompt: list[int], tokens: list[int], top: int, echo: bool, as_ids: bool) -> dict:
    """OpenAI's legacy ``logprobs`` object: each token, its log-prob and the top alternatives (at T = 1)."""
    sequence = [*prompt, *tokens]
    start = 1 if echo else len(prompt)  # the first prompt token has no log-prob
    positions = list(range(start, len(sequence)))
    rows = []
    for begin in range(0, len(positions), LOGPROB_ROWS):
        chunk = positions[begin:begin + LOGPROB_ROWS]
        rows.append(model.next_token_logprobs([sequence[:p] for p in chunk]))
    dists = torch.cat(rows) if rows else torch.empty(0)

    def name(token: int) -> str:
        return f"token_id:{token}" if as_ids else model.decode([token])

    shown = [*([sequence[0]] if echo else []), *(sequence[p] for p in positions)]
    token_logprobs = [None] if echo else []
    top_logprobs = [None] if echo else []
    for row, p in enumerate(positions):
        dist, token = dists[row], sequence[p]
        token_logprobs.append(float(dist[token]))
        best = dist.topk(top).indices.tolist() if top else []
        top_logprobs.append({name(t): float(dist[t]) for t in dict.fromkeys([*best, token])})
    offsets, offset = [], 0
    for token in shown:
        offsets.append(offset)
        offset += len(model.decode([token]))
    return {"tokens": [name(t) for t in shown], "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
            "text_offset": offsets}


def _cut_at(tokens: list[int], stops) -> list[int]:
    """``tokens`` up to and including the first stop id (vLLM's ``stop_token_ids``)."""
    end = next((i + 1 for i, token in enumerate(tokens) if token in stops), len(tokens))
    return tokens[:end]


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RemoteModelError):  # the request was fine; a model server behind this one failed
        return ApiError(502, str(exc), None, "upstream_error", "server_error")
    if isinstance(exc, TQStarError):
        return ApiError(422 if isinstance(exc, ValueError) else 500, str(exc), None, type(exc).__name__,
                        "invalid_request_error" if isinstance(exc, ValueError) else "server_error")
    return ApiError(500, f"Decoding failed: {type(exc).__name__}: {exc}", None, "internal_error", "server_error")

