"""tqstar serve on loopback, driven by the official openai client and by raw HTTP: answers, streaming,
batching, disconnects, the bounded queue, the API key and every kind of bad input."""

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from tqstar.decoding import DecodeConfig, Roles, build_decoder
from tqstar.errors import ConfigError
from tqstar.serve.loadtest import first_line
from tqstar.models import load_language_model
from tqstar.rewards import CallableReward, load_reward
from tqstar.serve import ServeConfig, bind, create_app, serve_in_thread

DEFAULTS = DecodeConfig(top_k=3, horizon=2, max_new_tokens=4)
PROMPT = "Say something kind."


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_language_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def roles(tiny):
    return Roles(tiny, tiny, load_reward("sentiment"))


def start(roles, tiny_model_dir, **options):
    config = ServeConfig(**{"max_tokens": 64, "max_body_bytes": 4096, **options})
    app = create_app(config, roles, DEFAULTS, {str(tiny_model_dir): "reference"})
    return serve_in_thread(app), app.state.engine


@pytest.fixture(scope="module")
def server(roles, tiny_model_dir):
    running, engine = start(roles, tiny_model_dir)
    running.engine = engine
    yield running
    running.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)


class Switchboard:
    """A reward that fails or holds a batch on demand, so a test knows what the engine is doing."""

    def __init__(self):
        self.release, self.fail_all, self.fail_every, self.calls = threading.Event(), False, 0, 0

    def __call__(self, prompts, responses):
        self.calls += 1
        if self.fail_all or any("FAIL" in p for p in prompts) or (self.fail_every and
                                                                   self.calls % self.fail_every == 0):
            raise RuntimeError("the reward failed on purpose")
        if any("HOLD" in p for p in prompts):
            self.release.wait(30)
        return [len(r) / 10 for r in responses]


@pytest.fixture
def controlled(tiny, tiny_model_dir):
    """A server whose batches hold (prompt with HOLD) until ``switch.release`` and fail on FAIL."""
    switch = Switchboard()
    running, engine = start(Roles(tiny, tiny, CallableReward(switch, "switchboard")), tiny_model_dir, queue_size=4)
    running.engine, running.switch = engine, switch
    running.client = openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0)
    yield running
    switch.release.set()
    running.close()


def wait_for(condition, seconds=20):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the engine"
        time.sleep(0.01)


def in_background(function, *args, **kwargs):
    """Run ``function`` on a thread; ``.result`` holds its return value or the exception it raised."""
    thread = threading.Thread(target=lambda: setattr(thread, "result", _call(function, *args, **kwargs)))
    thread.start()
    return thread


def _call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        return exc


def in_process(roles, prompt=PROMPT, **options):
    return build_decoder(DecodeConfig(**{**vars(DEFAULTS), **options}), roles).generate([prompt])[0]


def chat(client, content=PROMPT, model="tq-direct", **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **extra)


def test_chat_answer_equals_the_in_process_decoder_with_usage_and_evidence(client, roles, tiny):
    answer = chat(client)
    expected = in_process(roles)
    assert answer.choices[0].message.content == expected.text
    assert answer.usage.prompt_tokens == len(tiny.encode_prompt(PROMPT))
    assert answer.usage.completion_tokens == len(expected.token_ids)
    assert answer.choices[0].finish_reason in ("stop", "length")
    evidence = answer.model_extra["tqstar"]
    assert evidence["method"] == "tq-direct" and evidence["reward"] == pytest.approx(expected.reward)
    assert "trace" not in evidence


def test_streaming_sends_one_chunk_per_token_then_usage_and_done(client, server):
    plain = chat(client, max_tokens=6).choices[0].message.content
    chunks = list(chat(client, max_tokens=6, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == 6 or chunks[-2].choices[0].finish_reason == "stop"
    body = {"model": "tq-direct", "messages": [{"role": "user", "content": PROMPT}], "stream": True}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_options_come_from_the_model_name_then_from_extra_fields(client):
    from_name = chat(client, model="tqstar/args?top_k=2", extra_body={"trace": True})
    evidence = from_name.model_extra["tqstar"]
    assert evidence["method"] == "args"
    assert len(evidence["trace"]) == from_name.usage.completion_tokens
    assert all(len(step["candidates"]) == 2 for step in evidence["trace"])
    overridden = chat(client, model="tq-direct?top_k=3", extra_body={"top_k": 2, "trace": True})
    assert all(len(step["candidates"]) == 2 for step in overridden.model_extra["tqstar"]["trace"])


def test_a_request_decodes_blockwise_and_streams_every_token_of_each_block(client, roles):
    expected = in_process(roles, block_size=3, max_new_tokens=6)
    answer = chat(client, model="tqstar/tq-direct?block_size=3", max_tokens=6, extra_body={"trace": True})
    assert answer.choices[0].message.content == expected.text
    trace = answer.model_extra["tqstar"]["trace"]
    assert [t for step in trace for t in step["chosen_block"]] == expected.token_ids
    assert all(len(block) <= 3 for step in trace for block in step["blocks"])
    chunks = list(chat(client, max_tokens=6, stream=True, extra_body={"block_size": 3}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.text


def test_completions_decode_a_prompt_plain_and_streamed(client, roles):
    expected = in_process(roles, max_new_tokens=3)
    answer = client.completions.create(model="tqstar/tq-direct", prompt=PROMPT, max_tokens=3)
    assert answer.choices[0].text == expected.text and answer.usage.completion_tokens == len(expected.token_ids)
    streamed = client.completions.create(model="tq-direct", prompt=PROMPT, max_tokens=3, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected.text


def test_raw_model_answers_token_id_prompts_with_logprobs_like_vllm(client, tiny, tiny_model_dir):
    prompt = tiny.encode_prompt(PROMPT)
    answer = client.completions.create(model=str(tiny_model_dir), prompt=prompt, max_tokens=3, temperature=0,
                                       logprobs=2, extra_body={"return_tokens_as_token_ids": True})
    expected = tiny.sample_continuations([prompt], None, 1, 2, 0.0)[0][0][0].tokens
    logprobs = answer.choices[0].logprobs
    assert logprobs.tokens == [f"token_id:{t}" for t in expected]
    assert sum(logprobs.token_logprobs) == pytest.approx(tiny.continuation_logprobs([prompt], [[expected]])[0][0],
                                                         abs=1e-3)
    assert all(len(top) >= 2 for top in logprobs.top_logprobs)
    echoed = client.completions.create(model="reference", prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    assert echoed.choices[0].logprobs.token_logprobs[0] is None
    assert len(echoed.choices[0].logprobs.tokens) == len(prompt)


def test_models_lists_the_methods_and_the_raw_models_with_their_context_but_no_local_path(client, tiny_model_dir):
    cards = {m.id: m for m in client.models.list().data}
    assert {"tqstar/tq-direct", "tqstar/args", "tqstar/greedy", "reference", "baseline"} <= set(cards)
    assert cards["reference"].model_extra["max_model_len"] == 256
    assert not any(str(tiny_model_dir) in card.id or card.id.startswith("/") for card in cards.values())
    # the path still names the model for a client that knows it
    assert client.completions.create(model=str(tiny_model_dir), prompt="Hi", max_tokens=1).usage.completion_tokens


def test_concurrent_requests_share_batches_and_stop_at_their_own_max_tokens(server, client, roles):
    batches_before = server.engine.stats["batches"]
    answers = {}

    def ask(limit):
        answers[limit] = chat(client, max_tokens=limit)

    slow = threading.Thread(target=ask, args=(40,))
    slow.start()
    time.sleep(0.05)  # the engine is busy with the slow request while the others queue up
    threads = [threading.Thread(target=ask, args=(limit,)) for limit in (1, 2, 3, 4, 5, 6)]
    for thread in threads:
        thread.start()
    for thread in threads + [slow]:
        thread.join()
    assert server.engine.stats["batches"] - batches_before <= 3
    for limit in (1, 2, 3, 4, 5, 6):
        expected = in_process(roles, max_new_tokens=limit)
        assert answers[limit].choices[0].message.content == expected.text
        assert answers[limit].usage.completion_tokens == len(expected.token_ids) <= limit


def test_the_oldest_request_runs_first_and_a_later_one_that_would_not_fit_with_it_waits(controlled, tiny):
    long_prompt = "word " * 210
    room = tiny.max_length - len(tiny.encode_prompt(long_prompt))
    assert 0 < room < 60
    answers, finished = {}, []

    def ask(name, content, limit):
        answers[name] = chat(controlled.client, content, max_tokens=limit)
        finished.append(name)

    busy = in_background(ask, "busy", "HOLD " + PROMPT, 2)
    wait_for(lambda: controlled.engine.health()["running"])
    long = in_background(ask, "long", long_prompt, room)
    wait_for(lambda: controlled.engine.health()["queued"] == 1)
    short = in_background(ask, "short", PROMPT, 60)  # newer, and too long to share a batch with "long"
    wait_for(lambda: controlled.engine.health()["queued"] == 2)
    controlled.switch.release.set()
    for thread in (busy, long, short):
        thread.join()
    assert controlled.engine.stats["requeued"] == 1
    assert finished == ["busy", "long", "short"]  # the oldest ran first: newer requests cannot starve it
    assert answers["long"].usage.completion_tokens <= room and answers["short"].usage.completion_tokens <= 60
    reward = CallableReward(Switchboard(), "switchboard")
    assert answers["long"].choices[0].message.content == in_process(
        Roles(tiny, tiny, reward), long_prompt, max_new_tokens=room).text


def test_a_client_that_disconnects_stops_its_decoding(server, client):
    before = dict(server.engine.stats)
    body = {"model": "tq-direct", "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "max_tokens": 64}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        next(lines), next(lines)  # the role chunk and the first token have arrived; now hang up
    deadline = time.monotonic() + 20
    while server.engine.health()["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = server.engine.stats
    assert stats["cancelled"] == before.get("cancelled", 0) + 1
    assert stats["completed"] == before.get("completed", 0)  # counted once, as cancelled
    assert stats["generated_tokens"] - before.get("generated_tokens", 0) < 64
    assert chat(client, max_tokens=2).usage.completion_tokens >= 1  # and it keeps serving


def test_a_full_queue_answers_429_at_once_and_recovers(roles, tiny_model_dir):
    running, engine = start(roles, tiny_model_dir, queue_size=1, max_batch=1)
    client = openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0)
    try:
        busy = threading.Thread(target=chat, args=(client,), kwargs={"max_tokens": 64})
        busy.start()
        while not engine.health()["running"]:
            time.sleep(0.01)
        waiting = threading.Thread(target=chat, args=(client,), kwargs={"max_tokens": 1})
        waiting.start()
        while not engine.health()["queued"]:
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as refused:
            chat(client, max_tokens=1)
        assert time.monotonic() - started < 1.0
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.body["code"] == "queue_full"
        busy.join(), waiting.join()
        assert chat(client, max_tokens=1).usage.completion_tokens == 1
    finally:
        running.close()


def test_requests_whose_clients_left_do_not_hold_places_in_the_queue(controlled):
    busy = in_background(chat, controlled.client, "HOLD " + PROMPT, max_tokens=2)
    wait_for(lambda: controlled.engine.health()["running"])
    body = {"model": "tq-direct", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 1}
    for _ in range(4):  # as many requests as the queue holds, each abandoned by its client
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{controlled.url}/chat/completions", json=body, timeout=0.3)
    wait_for(lambda: all(job.cancelled.is_set() for job in controlled.engine.waiting))
    waiting = in_background(chat, controlled.client, max_tokens=1)
    wait_for(lambda: controlled.engine.stats["accepted"] == 6)
    controlled.switch.release.set()
    busy.join(), waiting.join()
    assert waiting.result.usage.completion_tokens == 1 and controlled.engine.stats["rejected"] == 0
    assert controlled.engine.stats["cancelled"] == 4


def test_a_failed_batch_answers_500_to_its_own_requests_only(controlled, tiny):
    long_prompt = "word " * 210
    room = tiny.max_length - len(tiny.encode_prompt(long_prompt))
    busy = in_background(chat, controlled.client, "HOLD " + PROMPT, max_tokens=2)
    wait_for(lambda: controlled.engine.health()["running"])
    failing = in_background(chat, controlled.client, "FAIL " + PROMPT, max_tokens=60)
    wait_for(lambda: controlled.engine.health()["queued"] == 1)
    requeued = in_background(chat, controlled.client, long_prompt, max_tokens=room)  # does not fit with 60
    wait_for(lambda: controlled.engine.health()["queued"] == 2)
    controlled.switch.release.set()
    for thread in (busy, failing, requeued):
        thread.join()
    assert isinstance(failing.result, openai.InternalServerError)
    assert requeued.result.usage.completion_tokens <= room
    assert controlled.engine.stats["failed"] == 1 and controlled.engine.stats["requeued"] == 1


def test_a_stream_that_fails_before_its_first_token_gets_the_error_status(controlled):
    controlled.switch.fail_all = True
    with pytest.raises(openai.InternalServerError) as failed:
        chat(controlled.client, max_tokens=2, stream=True)
    assert failed.value.status_code == 500


def test_a_stream_that_fails_after_its_first_token_ends_with_an_error_event_the_load_test_counts(controlled, capsys):
    from tqstar.serve.loadtest import main

    controlled.switch.fail_every = 2  # one reward call per token: each request gets its first token, then fails
    assert main(["--url", controlled.url, "--clients", "1", "--requests", "2", "--max-tokens", "2", "--stream"]) == 1
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["ok"] == 0 and summary["errors"] == 2 and summary["statuses"] == {"stream_error": 2}


def test_a_stopped_model_thread_answers_503_and_health_says_so(roles, tiny_model_dir):
    running, engine = start(roles, tiny_model_dir)
    try:
        engine.stop()
        health = httpx.get(running.url.removesuffix("/v1") + "/health")
        assert health.status_code == 503 and health.json()["status"] == "down"
        with pytest.raises(openai.InternalServerError) as refused:
            chat(openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0), max_tokens=1)
        assert refused.value.status_code == 503 and refused.value.body["code"] == "engine_down"
    finally:
        running.close()


def test_raw_completions_batch_only_with_the_same_max_tokens_and_a_seeded_one_runs_alone(controlled, tiny):
    def raw(prompt, **options):
        answer = controlled.client.completions.create(model="reference", prompt=prompt, logprobs=0,
                                           extra_body={"return_tokens_as_token_ids": True}, **options)
        return answer.choices[0].logprobs.tokens

    near_full = tiny.encode("word " * 300)[:tiny.max_length - 4]  # room for 4 tokens only
    short = tiny.encode_prompt(PROMPT)
    asks = {"seeded": dict(prompt=short, max_tokens=8, temperature=1.0, seed=7),
            "seeded again": dict(prompt=short, max_tokens=8, temperature=1.0, seed=7),
            "near full": dict(prompt=near_full, max_tokens=4, temperature=0),
            "short": dict(prompt=short, max_tokens=40, temperature=0)}
    busy = in_background(chat, controlled.client, "HOLD " + PROMPT, max_tokens=2)
    wait_for(lambda: controlled.engine.health()["running"])
    threads = {name: in_background(raw, **options) for name, options in asks.items()}
    wait_for(lambda: controlled.engine.health()["queued"] == 4)  # so they could all batch together
    controlled.switch.release.set()
    for thread in [busy, *threads.values()]:
        thread.join()
    together = {name: thread.result for name, thread in threads.items()}
    assert together == {name: raw(**options) for name, options in asks.items()}  # the same as alone


def test_a_raw_sample_ends_at_the_first_stop_token_id_and_keeps_it(client, tiny):
    prompt = tiny.encode_prompt(PROMPT)
    options = dict(model="reference", prompt=prompt, max_tokens=4, temperature=0, logprobs=0)
    free = client.completions.create(**options, extra_body={"return_tokens_as_token_ids": True}).choices[0]
    tokens = [int(t.split(":")[1]) for t in free.logprobs.tokens]
    stopped = client.completions.create(**options, extra_body={"return_tokens_as_token_ids": True,
                                                               "stop_token_ids": [tokens[1]]}).choices[0]
    assert stopped.logprobs.tokens == free.logprobs.tokens[:tokens.index(tokens[1]) + 1]
    assert stopped.finish_reason == "stop"


MESSAGES = [{"role": "user", "content": PROMPT}]
CHAT = {"model": "tq-direct", "messages": MESSAGES}


def raw_json(text: str) -> bytes:
    """A chat body with ``text`` spliced in as raw JSON (for what json.dumps will not write)."""
    return ('{"model": "tq-direct", "messages": ' + json.dumps(MESSAGES) + ', ' + text + '}').encode()


@pytest.mark.parametrize("path, payload, status, code", [
    ("chat/completions", b"{not json", 400, "invalid_json"),
    ("chat/completions", b"[1, 2]", 400, "invalid_json"),
    ("chat/completions", {"model": "tq-direct", "messages": MESSAGES, "temprature": 0}, 400, "unknown_field"),
    ("chat/completions", {"model": "tq-direct", "messages": MESSAGES, "reward": "sentiment"}, 400, "unknown_field"),
    ("chat/completions", {"messages": MESSAGES}, 400, "missing_model"),
    ("chat/completions", {"model": "tq-direct"}, 400, "missing_messages"),
    ("chat/completions", {"model": "gpt-4", "messages": MESSAGES}, 404, "model_not_found"),
    ("chat/completions", {"model": "tq-direct", "messages": MESSAGES, "top_k": 0}, 422, "invalid_option"),
    ("chat/completions", {"model": "tq-direct?top_k=two", "messages": MESSAGES}, 422, "invalid_type"),
    ("chat/completions", {"model": "tq-direct", "messages": MESSAGES, "alpha": "high"}, 422, "invalid_type"),
    ("chat/completions", {"model": "tq-direct", "messages": MESSAGES, "method": "nope"}, 422, "conflicting_options"),
    ("chat/completions", {"model": "tq-indirect", "messages": MESSAGES}, 422, "invalid_option"),
    ("chat/completions", {"model": "tq-direct", "messages": MESSAGES, "max_tokens": 10_000}, 422, "out_of_range"),
    ("chat/completions", {"model": "tq-direct", "messages": MESSAGES, "n": 2}, 422, "unsupported_option"),
    ("chat/completions", {"model": "tq-direct", "messages": MESSAGES * 2}, 422, "unsupported_messages"),
    ("chat/completions", {"model": "tq-direct", "messages": [{"role": "user", "content": "x" * 5000}]}, 413,
     "request_too_large"),
    ("chat/completions", {"model": "tq-direct", "messages": [{"role": "user", "content": "word " * 400}]}, 400,
     "context_length_exceeded"),
    ("chat/completions", {"model": "tq-direct", "messages": [{"role": "user", "content": "word " * 400}],
                          "stream": True}, 400, "context_length_exceeded"),
    ("chat/completions", {"model": "tq-direct", "messages": [{"role": "user", "content": [{"type": "text",
                                                                                          "text": 5}]}]},
     400, "invalid_prompt"),
    ("chat/completions", b"[" * 2000 + b"]" * 2000, 400, "invalid_json"),
    # nesting that json.loads takes but a recursive walk of the body would not
    ("chat/completions", raw_json('"temprature": ' + "[" * 500 + "]" * 500), 400, "unknown_field"),
    ("chat/completions", ('{"model": "tq-direct", "messages": [{"role": "user", "content": ' + "[" * 500 + "]" * 500
                          + '}]}').encode(), 400, "invalid_prompt"),
    ("chat/completions", raw_json('"alpha": NaN'), 400, "invalid_json"),
    ("chat/completions", raw_json('"alpha": -Infinity'), 400, "invalid_json"),
    ("chat/completions", raw_json('"alpha": 1e999'), 422, "out_of_range"),
    ("chat/completions", raw_json('"temperature": 1e999'), 422, "out_of_range"),
    ("chat/completions", {**CHAT, "model": "tq-direct?alpha=inf"}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "top_k": 65}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "model": "tq-direct?top_k=1000"}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "num_rollouts": 17, "rollout_temperature": 1.0}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "model": "best-of-n", "best_of": 17}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "horizon": 65}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "horizon": "eos"}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "model": "tq-direct?seed=-1"}, 422, "out_of_range"),
    ("completions", {"model": "tq-direct", "prompt": [1, 2, 3]}, 400, "invalid_prompt"),
    ("completions", {"model": "reference", "prompt": [1, 2], "logprobs": 99}, 422, "out_of_range"),
    ("completions", {"model": "reference", "prompt": [1, 2], "top_k": 5}, 400, "unknown_field"),
    ("completions", {"model": "reference", "prompt": [1, 2], "stop_token_ids": [-1]}, 422, "invalid_type"),
    ("no/such/route", {}, 404, "not_found"),
    # text that is not Unicode: a lone surrogate, in the prompt or in any other string
    ("chat/completions", raw_json('"user": "\\ud800"'), 400, "invalid_text"),
    ("chat/completions", b'{"model": "tq-direct", "messages": [{"role": "user", "content": "hi \\ud800"}]}', 400,
     "invalid_text"),
    ("completions", b'{"model": "reference", "prompt": "\\udfff"}', 400, "invalid_text"),
    # temperatures so small that the sampler's logits overflow
    ("chat/completions", {**CHAT, "model": "sample", "temperature": 1e-300}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "model": "best-of-n", "temperature": 1e-300}, 422, "out_of_range"),
    ("chat/completions", {**CHAT, "num_rollouts": 2, "rollout_temperature": 1e-300}, 422, "invalid_option"),
    ("completions", {"model": "reference", "prompt": "Hi", "temperature": 1e-300}, 422, "out_of_range"),
    # β so small that soft transfer's α = 1/β is infinite
    ("chat/completions", {**CHAT, "model": "soft", "beta": 5e-324}, 422, "invalid_option"),
    # a model name that names a second method, and compat raising k and H past the caps
    ("chat/completions", {**CHAT, "model": "tq-direct?method=greedy"}, 422, "conflicting_options"),
])
def test_bad_input_gets_its_4xx_with_an_openai_error_body_and_the_server_keeps_serving(
        server, client, path, payload, status, code):
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = httpx.post(f"{server.url}/{path}", content=content, headers={"Content-Type": "application/json"},
                          timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and set(error) == {"message", "type", "param", "code"}
    assert httpx.get(server.url.removesuffix("/v1") + "/health").json()["status"] == "ok"
    assert chat(client, max_tokens=1).usage.completion_tokens == 1


def test_compat_cannot_raise_top_k_or_horizon_past_the_servers_caps(roles, tiny_model_dir):
    app = create_app(ServeConfig(max_tokens=8, max_top_k=4), roles, DecodeConfig(max_new_tokens=4),
                     {str(tiny_model_dir): "reference"})
    running = serve_in_thread(app)
    try:
        response = httpx.post(f"{running.url}/chat/completions", json={**CHAT, "model": "tq-direct?compat=true"})
        assert response.status_code == 422, response.text
        message = response.json()["error"]["message"]
        assert message.startswith("horizon=20 (set by compat) is over the server's cap of 8")
    finally:
        running.close()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_only_json_bodies_are_read(server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = httpx.post(f"{server.url}/chat/completions", content=json.dumps(CHAT).encode(), headers=headers)
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"
    charset = httpx.post(f"{server.url}/chat/completions", content=json.dumps({**CHAT, "max_tokens": 1}).encode(),
                         headers={"Content-Type": "application/json; charset=utf-8"})
    assert charset.status_code == 200


@pytest.mark.parametrize("host, status", [("localhost:8000", 200), ("127.0.0.1", 200), ("[::1]:80", 200),
                                          ("attacker.example", 403), ("attacker.example:8000", 403),
                                          ("localhost.attacker.example", 403), ("tqstar.lan", 200)])
def test_without_a_key_only_loopback_and_allowed_host_names_are_served(roles, tiny_model_dir, host, status):
    running, _ = start(roles, tiny_model_dir, allowed_hosts=["tqstar.lan"])
    try:
        response = httpx.get(f"{running.url}/models", headers={"Host": host})
        assert response.status_code == status, response.text
        if status == 403:
            assert response.json()["error"]["code"] == "host_not_allowed"
            assert "--allowed-hosts" in response.json()["error"]["message"]
    finally:
        running.close()


def test_a_key_file_sets_the_key_and_a_keyed_server_takes_any_host(roles, tiny_model_dir, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    running, _ = start(roles, tiny_model_dir, api_key_file=str(key_file))
    try:
        headers = {"Authorization": "Bearer from-a-file", "Host": "tqstar.example"}
        assert httpx.get(f"{running.url}/models", headers=headers).status_code == 200
        assert httpx.get(f"{running.url}/models").status_code == 401
    finally:
        running.close()


@pytest.mark.parametrize("options, message", [
    ({"api_key_file": "/no/such/key"}, "cannot be read"),
    ({"api_key_file": "EMPTY"}, "is empty"),
    ({"api_key_file": "KEY", "api_key": "also"}, "Keep one of them"),
    ({"max_top_k": 1000}, "max_top_k must be ≤ 256"),
    ({"max_samples": 10_000}, "max_samples must be ≤ 64"),
    ({"max_tokens": 10**9}, "max_tokens must be ≤ 4096"),
])
def test_bad_server_options_are_refused_naming_the_fix(tmp_path, options, message):
    (tmp_path / "EMPTY").write_text("")
    (tmp_path / "KEY").write_text("k")
    options = {k: str(tmp_path / v) if k == "api_key_file" and not v.startswith("/") else v
               for k, v in options.items()}
    with pytest.raises(ConfigError, match=message):
        ServeConfig(**options)


def test_every_5xx_is_logged_with_its_traceback(controlled, caplog):
    controlled.switch.fail_all = True
    with caplog.at_level("ERROR", logger="tqstar.serve"):
        with pytest.raises(openai.InternalServerError):
            chat(controlled.client, max_tokens=1)
    assert any(r.exc_info and "the reward failed on purpose" in str(r.exc_info[1]) for r in caplog.records)
    assert any("answered 500" in r.getMessage() for r in caplog.records)


def test_a_bug_in_a_route_answers_an_openai_500_and_logs_its_traceback(server, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("a bug on purpose")

    monkeypatch.setattr("tqstar.serve.app.parse_chat", broken)
    with caplog.at_level("ERROR", logger="tqstar.serve"):
        response = httpx.post(f"{server.url}/chat/completions", json=CHAT)
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert any(r.exc_info and "a bug on purpose" in str(r.exc_info[1]) for r in caplog.records)


def test_an_api_key_is_required_on_every_request(roles, tiny_model_dir):
    running, _ = start(roles, tiny_model_dir, api_key="sekret")
    try:
        base = running.url.removesuffix("/v1")
        for url in (f"{base}/health", f"{running.url}/models"):
            assert httpx.get(url).status_code == 401
        wrong = openai.OpenAI(base_url=running.url, api_key="guess", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            chat(wrong, max_tokens=1)
        assert refused.value.body["code"] == "invalid_api_key"
        right = openai.OpenAI(base_url=running.url, api_key="sekret", max_retries=0)
        assert chat(right, max_tokens=1).usage.completion_tokens == 1
    finally:
        running.close()


def test_on_token_sees_each_token_and_stops_only_its_row(roles):
    decoder = build_decoder(DecodeConfig(top_k=3, horizon=2, max_new_tokens=5), roles)
    prompts = [PROMPT, "How do I boil an egg?"]
    plain = decoder.generate(prompts)
    seen = []

    def on_token(index, token):
        seen.append((index, token))
        return index == 0 and len([i for i, _ in seen if i == 0]) == 2

    hooked = decoder.generate(prompts, on_token=on_token)
    assert hooked[0].token_ids == plain[0].token_ids[:2]
    assert hooked[1].token_ids == plain[1].token_ids
    assert [t for i, t in seen if i == 1] == plain[1].token_ids


def test_load_test_reports_latency_percentiles_and_no_errors(server, capsys):
    from tqstar.serve.loadtest import main

    assert main(["--url", server.url, "--clients", "8", "--requests", "16", "--max-tokens", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["ok"] == 16 and summary["errors"] == 0 and summary["statuses"] == {"200": 16}
    assert 0 < summary["p50_seconds"] <= summary["p90_seconds"] <= summary["p99_seconds"]
    assert summary["requests_per_second"] > 0


def test_a_taken_port_is_a_clear_error(server):
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConfigError, match="Cannot listen on 127.0.0.1"):
        bind("127.0.0.1", port)


def test_serve_command_listens_on_loopback_with_the_key_from_the_environment(tiny_model_dir):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQSTAR_API_KEY": "from-env"}
    command = [sys.executable, "-m", "tqstar.cli", "serve", "--port", "0", "--reference", str(tiny_model_dir),
               "--reward", "sentiment", "--top-k", "2", "--horizon", "2", "--max-new-tokens", "3"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = first_line(process, 120)
        if "listening on http://127.0.0.1:" not in line:
            process.kill()
            pytest.fail(f"tqstar serve did not start: {line!r} {process.communicate(timeout=30)[1]}")
        assert "API key required" in line
        url = line.split("listening on ")[1].split()[0]
        assert httpx.get(f"{url}/models").status_code == 401
        answer = chat(openai.OpenAI(base_url=url, api_key="from-env", max_retries=0), model="tqstar")
        assert answer.model_extra["tqstar"]["method"] == "tq-direct" and answer.usage.completion_tokens <= 3
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_embedded_model_served_answers_like_the_in_process_decoder(embedded):
    roles = Roles(embedded, embedded, load_reward("sentiment"))
    app = create_app(ServeConfig(), roles, DEFAULTS, {"smollm2": "reference"})
    running = serve_in_thread(app)
    try:
        client = openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0)
        answer = chat(client, "How can I sleep better?", max_tokens=4)
        expected = in_process(roles, "How can I sleep better?", max_new_tokens=4)
        assert answer.choices[0].message.content == expected.text and expected.text.strip()
    finally:
        running.close()
