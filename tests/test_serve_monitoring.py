"""What tqstar serve keeps of its answers: /metrics in the Prometheus format (parsed with the client
library's own parser, its counters moving with the requests sent) and the audit log (one synced record per
answer, none lost or torn by kill -9, rotated by size)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tqstar.audit.log import AuditLog, audit_files, read_audit
from tqstar.audit.protocol import AUDIT_FIELDS, trace_digest
from tqstar.decoding import DecodeConfig, Roles
from tqstar.decoding.methods import METHODS
from tqstar.errors import ConfigError
from tqstar.models import load_language_model
from tqstar.rewards import CallableReward, load_reward
from tqstar.serve import ServeConfig, create_app, serve_in_thread
from tqstar.serve.loadtest import first_line

DEFAULTS = DecodeConfig(top_k=3, horizon=2, max_new_tokens=4)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_language_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def roles(tiny):
    sentiment = load_reward("sentiment")
    return Roles(tiny, tiny, sentiment, baseline_reward=sentiment)


def start(roles, **options):
    app = create_app(ServeConfig(**{"max_tokens": 64, **options}), roles, DEFAULTS, {})
    return serve_in_thread(app)


@pytest.fixture(scope="module")
def server(roles):
    running = start(roles)
    yield running
    running.close()


def post(url, model="tq-direct", content="Say something kind.", key=None, **extra):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/chat/completions", headers=headers, timeout=60,
                      json={"model": model, "messages": [{"role": "user", "content": content}], **extra})


def scrape(url, key=None) -> dict[tuple, float]:
    """Every sample of /metrics as (name, sorted labels) → value, read by prometheus_client's parser."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    answer = httpx.get(url.removesuffix("/v1") + "/metrics", headers=headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def wait_for(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.01)


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move_with_the_requests_sent(server):
    before = scrape(server.url)
    assert post(server.url, max_tokens=3).status_code == 200
    assert post(server.url, stream=True, max_tokens=3).status_code == 200
    assert post(server.url, model="tq-indirect", max_tokens=3).status_code == 200
    assert post(server.url, top_k=0).status_code == 422
    assert post(server.url, model="no-such-method").status_code == 404
    after = scrape(server.url)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tqstar_requests_total", method="tq-direct") == 3
    assert moved("tqstar_request_errors_total", method="tq-direct", status="422") == 1
    assert moved("tqstar_request_errors_total", method="invalid", status="404") == 1
    assert moved("tqstar_request_seconds_count", method="tq-direct") == 2
    assert moved("tqstar_time_to_first_token_seconds_count", method="tq-direct") == 2
    assert moved("tqstar_reward_count", method="tq-direct") == 2
    assert moved("tqstar_reward_count", method="tq-indirect") == 1
    assert moved("tqstar_ess_count", method="tq-indirect") == 1  # only the weighted estimators have an ESS
    assert moved("tqstar_ess_count", method="tq-direct") == 0
    assert 0 < moved("tqstar_generated_tokens_total", method="tq-direct") <= 6
    assert value(after, "tqstar_queue_length") == 0 and ("tqstar_running_requests", ()) in after


def test_method_labels_stay_the_method_table_whatever_model_names_clients_send(server):
    names = [f"tqstar?method=made-up-{i}" for i in range(3)] + ["tqstar/args?method=made-up", "made-up?x=1"]
    for name in names:
        answer = post(server.url, model=name, max_tokens=1)
        assert answer.status_code in (404, 422), answer.text
    assert post(server.url, model="tqstar?method=args", max_tokens=1).status_code == 200
    labels = {dict(labels).get("method") for _, labels in scrape(server.url)} - {None}
    assert labels <= set(METHODS) | {"raw", "invalid"} and "args" in labels


def test_a_full_queue_is_counted_as_a_429_of_its_method(tiny):
    release = threading.Event()

    def held(prompts, responses):
        release.wait(30)
        return [0.0] * len(responses)

    running = start(Roles(tiny, tiny, CallableReward(held, "held")), queue_size=1, max_batch=1)
    try:
        with ThreadPoolExecutor(3) as pool:  # one decoding, one waiting: the third finds the queue full
            first = pool.submit(post, running.url, model="args", max_tokens=1)
            wait_for(lambda: value(scrape(running.url), "tqstar_running_requests") >= 1, "the first to decode")
            second = pool.submit(post, running.url, model="args", max_tokens=1)
            wait_for(lambda: value(scrape(running.url), "tqstar_queue_length") >= 1, "the second to queue")
            assert post(running.url, model="args", max_tokens=1).status_code == 429
            release.set()
            assert first.result().status_code == second.result().status_code == 200
        samples = scrape(running.url)
        assert value(samples, "tqstar_queue_full_total", method="args") == 1
        assert value(samples, "tqstar_request_errors_total", method="args", status="429") == 1
        assert value(samples, "tqstar_requests_total", method="args") == 3
    finally:
        release.set()
        running.close()


def test_metrics_need_the_api_key_like_every_route(roles):
    running = start(roles, api_key="sekret")
    try:
        assert httpx.get(running.url.removesuffix("/v1") + "/metrics").status_code == 401
        assert value(scrape(running.url, key="sekret"), "tqstar_queue_length") == 0
    finally:
        running.close()


def test_each_answer_leaves_one_audit_record_with_its_id_roles_and_trace(roles, tmp_path):
    running = start(roles, audit_log=str(tmp_path / "audit"))
    try:
        plain = post(running.url, max_tokens=3, trace=True).json()
        streamed = post(running.url, model="tq-indirect", stream=True, max_tokens=3)
        assert post(running.url, top_k=0).status_code == 422  # refused: nothing to audit
    finally:
        running.close()
    records = read_audit(tmp_path / "audit")
    assert len(records) == 2 and all(set(r) == {*AUDIT_FIELDS, "trace"} for r in records)
    first, second = records
    assert first["id"] == plain["id"] and first["answer"] == plain["choices"][0]["message"]["content"]
    assert first["trace"] == plain["tqstar"]["trace"] and first["reward"] == plain["tqstar"]["reward"]
    assert first["options"]["top_k"] == 3 and first["roles"]["reward"] == "sentiment"
    assert first["roles"]["reference"]["fingerprint"].startswith("sha256:")
    assert first["roles"]["versions"]["tqstar"]
    assert second["method"] == "tq-indirect" and second["id"] in streamed.text
    assert all(step["ess"] for step in second["trace"])


def test_a_digest_audit_keeps_the_hash_of_the_trace_the_api_returns(roles, tmp_path):
    running = start(roles, audit_log=str(tmp_path), audit_trace="digest")
    try:
        answer = post(running.url, max_tokens=3, trace=True).json()
    finally:
        running.close()
    record, = read_audit(tmp_path)
    assert set(record) == {*AUDIT_FIELDS, "trace_digest", "trace_steps"}
    assert record["trace_steps"] == len(answer["tqstar"]["trace"])
    assert record["trace_digest"] == trace_digest(answer["tqstar"]["trace"])


def test_the_audit_log_rotates_by_size_and_closes_a_torn_file_at_start(tmp_path):
    log = AuditLog(tmp_path, max_bytes=4096)
    for i in range(30):
        log.append({"id": i, "text": "x" * 400})
    files = audit_files(tmp_path)
    assert len(files) > 2 and all(f.stat().st_size <= 4096 for f in files)
    assert [r["id"] for r in read_audit(tmp_path)] == list(range(30))
    with open(files[-1], "a") as current:  # a kill in the middle of a write
        current.write('{"id": 30, "te')
    AuditLog(tmp_path, max_bytes=4096).append({"id": 31})
    assert audit_files(tmp_path)[-2].read_text().endswith('"te') and audit_files(tmp_path)[-1].stat().st_size < 20
    assert [r["id"] for r in read_audit(tmp_path)] == list(range(30)) + [31]


def test_an_answer_the_audit_log_cannot_take_is_not_sent(roles, tmp_path, monkeypatch):
    def full(self, record):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AuditLog, "append", full)
    running = start(roles, audit_log=str(tmp_path))
    try:
        plain = post(running.url, max_tokens=2)
        streamed = post(running.url, stream=True, max_tokens=2)
        samples = scrape(running.url)
    finally:
        running.close()
    assert plain.status_code == 500 and "choices" not in plain.json()
    assert plain.json()["error"]["code"] == "audit_log_failed"
    assert streamed.status_code == 200  # its tokens had left before the audit append
    events = [json.loads(line.removeprefix("data: ")) for line in streamed.text.splitlines()
              if line.startswith("data: {")]
    assert events[-1]["error"]["code"] == "audit_log_failed" and streamed.text.rstrip().endswith("[DONE]")
    assert not any(choice.get("finish_reason") for e in events[:-1] for choice in e.get("choices", []))
    assert value(samples, "tqstar_request_errors_total", method="tq-direct", status="500") == 2
    assert read_audit(tmp_path) == []


def test_an_audit_log_that_cannot_be_written_is_refused_at_start(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="--audit-log"):
        ServeConfig(audit_log=str(tmp_path / "file"))


def test_kill_9_loses_no_answered_record_and_tears_none(tiny_model_dir, tmp_path):
    audit = tmp_path / "audit"
    command = [sys.executable, "-m", "tqstar.cli", "serve", "--port", "0", "--reference", str(tiny_model_dir),
               "--reward", "sentiment", "--top-k", "2", "--horizon", "2", "--max-batch", "2",
               "--audit-log", str(audit)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    answered, lock = [], threading.Lock()

    def client(i):
        while True:  # until the kill: each answer received is recorded before it is counted
            try:
                # two tokens: the six answers come in a second or two rather than ten, and with four
                # clients on a batch of two a kill still lands among requests and appends in flight
                answer = post(url, content=f"Prompt {i}", max_tokens=2).json()
            except httpx.HTTPError:
                return
            with lock:
                answered.append(answer["id"])

    try:
        line = first_line(process, 120)
        assert "listening on" in line, process.communicate(timeout=30)[1] if process.poll() is not None else line
        url = line.split("listening on ")[1].split()[0]
        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(answered) < 6:
            assert process.poll() is None and time.monotonic() < deadline, f"{len(answered)} answers, not 6"
            threads[0].join(0.05)
        process.send_signal(signal.SIGKILL)
        for thread in threads:
            thread.join(30)
    finally:
        process.kill()
        process.wait(timeout=30)
    lines = (audit / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line whole: no torn record
    assert len({r["id"] for r in records}) == len(records) >= len(answered) >= 6
    assert set(answered) <= {r["id"] for r in records}
