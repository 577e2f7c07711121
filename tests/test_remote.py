"""The remote backend against a real ``tqstar serve`` on loopback: the same ids, log-probs, rollouts and
TQ* decisions as the same model in process; retries through a flaky proxy; clear refusals; rollouts cut
at the local EOS; a served remote failure as 502."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
import torch

from tqstar.decoding import DecodeConfig, Roles, build_decoder
from tqstar.errors import ConfigError, ModelLoadError, RemoteModelError
from tqstar.models import RemoteSpec, load_language_model, load_remote_model
from tqstar.rewards import CallableReward, load_reward
from tqstar.serve import ServeConfig, create_app, serve_in_thread

PROMPTS = ["Say something kind.", "How do I boil an egg?"]


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, embedded):
    """A second tiny Llama (another seed) over the same tokenizer: the baseline to serve."""
    from tiny import save_tiny_llama

    tokenizer = embedded.tokenizer
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-baseline"), tokenizer, seed=1,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                           tie_word_embeddings=True)


@pytest.fixture(scope="module")
def local(baseline_dir):
    return load_language_model(str(baseline_dir))


@pytest.fixture(scope="module")
def server(local, baseline_dir):
    app = create_app(ServeConfig(), Roles(local, local, load_reward("sentiment")), DecodeConfig(),
                     {str(baseline_dir): "reference"})
    running = serve_in_thread(app)
    yield running
    running.close()


@pytest.fixture(scope="module")
def remote(server, baseline_dir):
    model = load_language_model(f"openai:{server.url}#baseline?tokenizer={baseline_dir}")
    yield model
    model.close()


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return load_language_model(str(tiny_model_dir))


def prefixes(model):
    return [model.encode_prompt(p) for p in PROMPTS]


def test_remote_model_shares_ids_and_top_logprobs_with_the_local_model(remote, local):
    assert remote.vocabulary == local.vocabulary and remote.eos_token_ids == local.eos_token_ids
    assert remote.max_length == local.max_length == 256
    assert remote.encode_prompt(PROMPTS[0]) == local.encode_prompt(PROMPTS[0])
    got, want = remote.next_token_logprobs(prefixes(local)), local.next_token_logprobs(prefixes(local))
    top = want.topk(20)
    assert torch.equal(got.topk(20).indices, top.indices)
    assert torch.allclose(got.gather(1, top.indices), top.values, atol=1e-4)
    assert int(torch.isfinite(got).sum(1).min()) == 20  # the rest is −inf: tokens the endpoint did not rank


def test_greedy_rollouts_and_continuation_logprobs_match_the_local_model(remote, local):
    batch = prefixes(local)
    branches = [[5, 6, 7], [8, 9, 2]]  # 2 is EOS: that branch ends at once
    for branch in (branches, None):
        got = remote.sample_continuations(batch, branch, 1, 4, 0.0)
        want = local.sample_continuations(batch, branch, 1, 4, 0.0)
        assert [[[c.tokens for c in s] for s in row] for row in got] == \
               [[[c.tokens for c in s] for s in row] for row in want]
        assert [c.logprob for row in got for s in row for c in s] == \
               pytest.approx([c.logprob for row in want for s in row for c in s], abs=1e-3)
    continuations = [[(5, 6), (7,)], [(8, 9, 10)]]
    got, want = remote.continuation_logprobs(batch, continuations), local.continuation_logprobs(batch, continuations)
    assert sum(got, []) == pytest.approx(sum(want, []), abs=1e-3) and [len(g) for g in got] == [2, 1]


def test_sampled_rollouts_repeat_with_the_same_seed(remote, local):
    def sample():
        return remote.sample_continuations(prefixes(local), [[5, 6]] * 2, 3, 4, 1.0, torch.Generator().manual_seed(7))

    first = sample()
    assert [[len(s) for s in row] for row in first] == [[3, 3], [3, 3]]
    assert all(c.tokens[0] == z for row in first for s, z in zip(row, (5, 6)) for c in s)
    assert [[[c.tokens for c in s] for s in row] for row in sample()] == [[[c.tokens for c in s] for s in row]
                                                                           for row in first]


def test_tq_star_with_a_served_baseline_decides_like_the_in_process_run(remote, local, reference):
    config = DecodeConfig(method="tq-direct", top_k=3, horizon=3, max_new_tokens=5, seed=3)
    reward = CallableReward(lambda prompts, responses: [len(r) / 10 for r in responses], "length")
    served = build_decoder(config, Roles(reference, remote, reward)).generate(PROMPTS)
    in_process = build_decoder(config, Roles(reference, local, reward)).generate(PROMPTS)
    assert [r.token_ids for r in served] == [r.token_ids for r in in_process]
    values = [[v for s in r.trace for v in s.values] for r in (*served, *in_process)]
    assert values[:2] == [pytest.approx(v, abs=1e-4) for v in values[2:]]
    assert len({round(v, 6) for v in values[0]}) > 1  # the values differ, so they steer the choice
    assert remote.forward_tokens > 0


def test_indirect_transfer_with_a_served_baseline_weights_its_sampled_rollouts(remote, reference):
    """Sampled rollouts are drawn by the server, so they cannot equal the in-process draws; the run is
    reproducible with the same seed and its weights are proper self-normalised weights."""
    config = DecodeConfig(method="tq-indirect", top_k=3, horizon=3, max_new_tokens=3, beta=1.0, num_rollouts=2, seed=3)
    reward = CallableReward(lambda prompts, responses: [len(r) / 10 for r in responses], "length")
    runs = [build_decoder(config, Roles(reference, remote, reward, implicit=True)).generate(PROMPTS) for _ in range(2)]
    assert [r.token_ids for r in runs[0]] == [r.token_ids for r in runs[1]]
    for step in (s for r in runs[0] for s in r.trace):
        assert all(sum(w) == pytest.approx(1.0) for w in step.weights)
        assert all(1.0 - 1e-9 <= e <= 2.0 + 1e-9 for e in step.ess)


def test_top_k_above_a_remote_proposals_log_probs_is_refused(server, baseline_dir, local):
    proposal = load_language_model(f"openai:{server.url}#baseline?tokenizer={baseline_dir}&top_logprobs=4")
    reward = CallableReward(lambda prompts, responses: [0.0] * len(responses), "zero")
    try:
        with pytest.raises(ConfigError, match="top_k=5 .* only 4 log-probs.*--top-k to 4"):
            build_decoder(DecodeConfig(method="args", top_k=5), Roles(proposal, local, reward))
        build_decoder(DecodeConfig(method="args", top_k=4), Roles(proposal, local, reward))
    finally:
        proposal.close()


@pytest.mark.parametrize("spec, message", [
    ("openai:ftp://host/v1#m", "is not an http"),
    ("openai:http://127.0.0.1:1/v1", "needs the form openai:http://HOST:PORT/v1#MODEL"),
    ("openai:http://127.0.0.1:1/v1#m?colour=red", "Unknown remote option 'colour'"),
    ("openai:http://127.0.0.1:1/v1#m?top_logprobs=many", "must be a number"),
    ("openai:http://127.0.0.1:1/v1#m?top_logprobs=0", "top_logprobs=0 must be ≥ 1"),
    ("openai:http://127.0.0.1:1/v1#m?top_logprobs=100000", "top_logprobs=100000 must be ≤ 1024"),
    ("openai:http://127.0.0.1:1/v1#m?concurrency=1000000000", "concurrency=1000000000 must be ≤ 256"),
])
def test_malformed_remote_specs_are_clear_errors(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        RemoteSpec.parse(spec)


def test_unreachable_endpoint_fails_after_its_retries(tiny_model_dir):
    spec = f"openai:http://127.0.0.1:9/v1#m?tokenizer={tiny_model_dir}&retries=1&timeout=2"
    with pytest.raises(RemoteModelError, match="failed after 2 attempt.*server is running"):
        load_language_model(spec)


def test_a_model_the_endpoint_does_not_serve_is_refused(server, baseline_dir):
    with pytest.raises(RemoteModelError, match="does not serve model 'nope'"):
        load_language_model(f"openai:{server.url}#nope?tokenizer={baseline_dir}")


class FaultyProxy:
    """A loopback proxy in front of the real server that fails or rewrites answers on purpose."""

    def __init__(self, upstream: str):
        self.upstream, self.failures, self.rewrite, self.hits = upstream, 0, None, 0
        self.failure_status, self.last_body, self.models = 503, None, []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.relay(None)

            def do_POST(self):
                self.relay(self.rfile.read(int(self.headers["Content-Length"])))

            def relay(self, body):
                proxy.hits += 1
                if proxy.failures:
                    proxy.failures -= 1
                    return self.answer(proxy.failure_status, {"error": {"message": "warming up"}},
                                       {"Retry-After": "0"})
                if body:
                    proxy.last_body = json.loads(body)
                url = proxy.upstream + self.path.removeprefix("/v1")
                response = httpx.request(self.command, url, content=body,
                                         headers={"Content-Type": "application/json"})
                answer = response.json()
                if proxy.rewrite and self.command == "POST":
                    answer = proxy.rewrite(answer)
                self.answer(response.status_code, answer)

            def answer(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def proxy(server):
    running = FaultyProxy(server.url)
    yield running
    for model in running.models:
        model.close()
    running.http.shutdown()


def through(proxy, baseline_dir, retries=3):
    model = load_remote_model(f"openai:{proxy.url}#baseline?tokenizer={baseline_dir}&retries={retries}")
    proxy.models.append(model)
    return model


def test_transient_failures_are_retried(proxy, baseline_dir, local):
    model = through(proxy, baseline_dir)
    proxy.failures, hits = 2, proxy.hits
    logprobs = model.next_token_logprobs(prefixes(local)[:1])
    assert proxy.hits - hits == 3 and torch.isfinite(logprobs).sum() == 20


def test_a_redirect_is_refused_not_read_as_an_answer(proxy, baseline_dir, local):
    model = through(proxy, baseline_dir)
    proxy.failures, proxy.failure_status = 1, 302
    with pytest.raises(RemoteModelError, match="refused the request \\(HTTP 302"):
        model.next_token_logprobs(prefixes(local)[:1])


def test_rollouts_stop_at_the_local_eos_even_when_the_server_rolls_past_it(proxy, baseline_dir, local):
    model = through(proxy, baseline_dir)
    eos, served = min(local.eos_token_ids), []

    def eos_second(answer):  # a server that ignores the stop ids: the 2nd token is EOS, and more follow
        for choice in answer["choices"]:
            choice["logprobs"]["tokens"][1] = f"token_id:{eos}"
        served.append(answer)
        return answer

    proxy.rewrite = eos_second
    got = model.sample_continuations(prefixes(local)[:1], None, 1, 4, 0.0)[0][0][0]
    logprobs = served[-1]["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) > 2
    assert got.tokens == (int(logprobs["tokens"][0].split(":")[1]), eos)
    assert got.logprob == pytest.approx(sum(logprobs["token_logprobs"][:2]))
    assert proxy.last_body["stop_token_ids"] == sorted(local.eos_token_ids)


def test_a_tqstar_server_whose_remote_baseline_fails_answers_502(proxy, baseline_dir, local):
    baseline = through(proxy, baseline_dir, retries=0)
    config = DecodeConfig(top_k=2, horizon=2, max_new_tokens=2)
    app = create_app(ServeConfig(), Roles(local, baseline, load_reward("sentiment")), config, {})
    running = serve_in_thread(app)
    try:
        proxy.failures = 10**6
        client = openai.OpenAI(base_url=running.url, api_key="unused", max_retries=0)
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="tq-direct", messages=[{"role": "user", "content": PROMPTS[0]}])
        assert failed.value.status_code == 502 and failed.value.body["code"] == "upstream_error"
    finally:
        running.close()


def _fewer_logprobs(answer):
    for choice in answer["choices"]:
        choice["logprobs"]["top_logprobs"] = [dict(list(top.items())[:3]) for top in choice["logprobs"]["top_logprobs"]]
    return answer


def _no_logprobs(answer):
    for choice in answer["choices"]:
        choice["logprobs"] = None
    return answer


def _null_top_logprobs(answer):
    for choice in answer["choices"]:
        choice["logprobs"]["top_logprobs"] = None
    return answer


def _id_outside_the_vocabulary(answer):
    for choice in answer["choices"]:
        top = choice["logprobs"]["top_logprobs"][0]
        top["token_id:99999999"] = top.pop(next(iter(top)))
    return answer


def _tokens_as_text(answer):
    for choice in answer["choices"]:
        choice["logprobs"]["tokens"] = ["hello" for _ in choice["logprobs"]["tokens"]]
    return answer


@pytest.mark.parametrize("rewrite, call, message", [
    (_fewer_logprobs, "next", "returned 3 log-probs per token, fewer than the 20 asked for"),
    (_no_logprobs, "next", "answered without log-probs"),
    (_no_logprobs, "rollout", "answered without log-probs"),
    (_null_top_logprobs, "next", "answered without top log-probs"),
    (_id_outside_the_vocabulary, "next", "'token_id:99999999', outside the local tokenizer's vocabulary"),
    (_tokens_as_text, "rollout", "not as 'token_id:N'"),
])
def test_an_endpoint_without_the_needed_logprobs_or_ids_is_refused(proxy, baseline_dir, local, rewrite, call,
                                                                   message):
    model = through(proxy, baseline_dir)
    proxy.rewrite = rewrite
    with pytest.raises(RemoteModelError, match=message):
        if call == "next":
            model.next_token_logprobs(prefixes(local))
        else:
            model.sample_continuations(prefixes(local), None, 1, 3, 0.0)
