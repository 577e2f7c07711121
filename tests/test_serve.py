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

from tqstar.api import Roles, build_decoder
from tqstar.config import DecodeConfig
from tqstar.errors import ConfigError
from tqstar.models import load_language_model
from tqstar.rewards import load_reward
from tqstar.serve import ServeConfig, bind, serve_in_thread
from tqstar.serve_app import create_app

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


def test_models_lists_the_methods_and_the_raw_models_with_their_context(client, tiny_model_dir):
    cards = {m.id: m for m in client.models.list().data}
    assert {"tqstar/tq-direct", "tqstar/args", "tqstar/greedy", str(tiny_model_dir)} <= set(cards)
    assert cards[str(tiny_model_dir)].model_extra["max_model_len"] == 256


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


def test_a_long_prompt_that_fits_alone_but_not_in_the_batch_runs_in_the_next_one(server, client, tiny):
    long_prompt = "word " * 210
    room = tiny.max_length - len(tiny.encode_prompt(long_prompt))
    assert 0 < room < 60
    answers, requeued = {}, server.engine.stats["requeued"]

    def ask(name, content, limit):
        answers[name] = chat(client, content, max_tokens=limit)

    threads = [threading.Thread(target=ask, args=("busy", PROMPT, 30)),
               threading.Thread(target=ask, args=("long", long_prompt, room)),
               threading.Thread(target=ask, args=("short", PROMPT, 60))]
    threads[0].start()
    time.sleep(0.05)  # the other two queue up behind the busy one and share a key
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.engine.stats["requeued"] == requeued + 1
    assert answers["long"].usage.completion_tokens <= room and answers["short"].usage.completion_tokens <= 60
    assert answers["long"].choices[0].message.content == in_process(
        Roles(tiny, tiny, load_reward("sentiment")), long_prompt, max_new_tokens=room).text


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


MESSAGES = [{"role": "user", "content": PROMPT}]


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
    ("completions", {"model": "tq-direct", "prompt": [1, 2, 3]}, 400, "invalid_prompt"),
    ("completions", {"model": "reference", "prompt": [1, 2], "logprobs": 99}, 422, "out_of_range"),
    ("completions", {"model": "reference", "prompt": [1, 2], "top_k": 5}, 400, "unknown_field"),
    ("no/such/route", {}, 404, "not_found"),
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
    from tqstar.loadtest import main

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
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line and "API key required" in line, process.stderr.read()
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
