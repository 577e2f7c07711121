"""Raw completions of ``tqstar serve``: the reference or the baseline, by role or by spec, answers plain
completions the way vLLM does (token-id prompts, ``n`` samples, per-token ``logprobs``, ``echo``,
``return_tokens_as_token_ids``, ``stop_token_ids``), which is what ``tqstar.models.remote`` asks of a
baseline server."""

from __future__ import annotations

import random
import time

import torch

from ..jsonl import finite
from .jobs import BatchHost, Job
from .protocol import ApiError, DoneEvent, ErrorEvent, Limits, RawFinished, RawRequest
from .wire import check_openai_sampling, flag, integer, new_id, temperature, usage

#: Rows of per-position log-probs computed at once for a raw completion.
LOGPROB_ROWS = 64
RAW_FIELDS = {"model", "prompt", "max_tokens", "n", "seed", "temperature", "top_p", "stop", "user", "stream",
              "logprobs", "echo", "return_tokens_as_token_ids", "stop_token_ids"}


def parse_raw(body: dict, role: str, limits: Limits) -> RawRequest:
    """A raw model's completion request, checked field by field."""
    unknown = sorted(set(body) - RAW_FIELDS)
    if unknown:
        raise ApiError(400, f"Unknown field(s) for the raw model {body['model']!r}: {', '.join(unknown)}. It takes "
                            f"{', '.join(sorted(RAW_FIELDS))}.", unknown[0], "unknown_field")
    if flag(body, "stream"):
        raise ApiError(422, "Streaming is offered for the tqstar methods; ask the raw model without stream.",
                       "stream", "unsupported_option")
    check_openai_sampling(body, n_allowed=None)
    prompt = body.get("prompt")
    valid_ids = isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                             for t in prompt)
    if not (isinstance(prompt, str) and prompt) and not valid_ids:
        raise ApiError(400, "prompt must be a non-empty string or a list of token ids (one prompt per request).",
                       "prompt", "invalid_prompt")
    echo = flag(body, "echo")
    max_tokens = integer(body, "max_tokens", 0 if echo else 1, limits.max_tokens, default=16)
    sampling = temperature(body)
    return RawRequest(body["model"], role, prompt, max_tokens, integer(body, "n", 1, limits.max_samples, default=1),
                      1.0 if sampling is None else sampling, integer(body, "seed", 0, 2**63 - 1),
                      integer(body, "logprobs", 0, limits.max_logprobs), echo,
                      flag(body, "return_tokens_as_token_ids"), _token_list(body, "stop_token_ids"))


def _token_list(body: dict, name: str) -> tuple[int, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                              for t in value):
        raise ApiError(422, f"{name} must be a list of token ids (integers ≥ 0), got {value!r}.", name,
                       "invalid_type")
    return tuple(value)


def run_raw(host: BatchHost, jobs: list[Job]) -> None:
    """Sample a batch of raw completions (one role, one max_tokens) and answer each job."""
    first = jobs[0].request
    model = host.roles.model(first.role)
    jobs = [job for job in jobs if _raw_prompt(job, model)]
    host.run_now(jobs)
    sampled = [[()] * first.n for _ in jobs]  # max_tokens=0 (echo only): nothing to generate
    if jobs and first.max_tokens > 0:  # the whole batch has this max_tokens (it is in the key)
        generator = torch.Generator()
        generator.manual_seed(first.seed if first.seed is not None else random.getrandbits(63))
        rows = model.sample_continuations([job.prompt_ids for job in jobs], None, first.n, first.max_tokens - 1,
                                          first.temperature, generator)
        sampled = [[c.tokens for c in row[0]] for row in rows]
    for job, samples in zip(jobs, sampled):
        outputs = [_cut_at(list(tokens)[:job.max_tokens], job.request.stop_token_ids) for tokens in samples]
        choices = [_raw_choice(job, model, tokens) for tokens in outputs]
        host.count(job.outcome, 1)
        host.count("generated_tokens", sum(len(t) for t in outputs))
        job.emit(DoneEvent(RawFinished(choices, len(job.prompt_ids), sum(len(t) for t in outputs))))

def _raw_prompt(job: Job, model) -> bool:
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
        job.emit(ErrorEvent(problem))
        return False
    job.prompt_ids = ids
    return True

def _raw_choice(job: Job, model, tokens: list[int]) -> dict:
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


def raw_response(request: RawRequest, done: RawFinished) -> dict:
    """A raw completion: ``done.choices`` holds text, finish reason and logprobs per sample."""
    choices = [{"index": i, **finite(choice)} for i, choice in enumerate(done.choices)]
    return {"id": new_id(False), "object": "text_completion", "created": int(time.time()), "model": request.model,
            "choices": choices, "usage": usage(done.prompt_tokens, done.completion_tokens)}
