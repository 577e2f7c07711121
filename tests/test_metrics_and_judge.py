"""Per-response metrics, bootstrap intervals and duels, and the LLM judge protocol over HTTP."""

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tqstar.decoding import GenerationResult, StepTrace
from tqstar.errors import ConfigError
from tqstar.eval import (EvalConfig, best_of_n_kl, bootstrap_mean, diversity, duel, judge_run, method_specs,
                         path_log_prob, summarise_judgements, trace_kl)


def test_diversity_is_one_for_distinct_words_and_falls_with_repeats():
    assert diversity("one two three four five") == 1.0
    assert diversity("") == 1.0
    # distinct/all 2-grams 2/5, 3-grams 2/4, 4-grams 2/3
    assert diversity("a b a b a b") == pytest.approx((2 / 5) * (2 / 4) * (2 / 3))


def step(probabilities, prior_logprobs, chosen=0):
    return StepTrace(0, [0, 1], ["a", "b"], prior_logprobs, [0.0, 0.0], probabilities, chosen, "a")


def test_trace_kl_sums_the_per_token_kl_to_the_reference():
    result = GenerationResult("x", "ab", [0, 0], "tq-direct",
                              trace=[step([0.75, 0.25], [math.log(0.5), math.log(0.5)]), step([1.0, 0.0], [0.0, -5.0])])
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5) + 0.0
    assert trace_kl(result) == pytest.approx(expected)
    assert path_log_prob(result) == pytest.approx(math.log(0.75))
    assert best_of_n_kl(1) == 0 and best_of_n_kl(8) == pytest.approx(math.log(8) - 7 / 8)


def test_bootstrap_interval_brackets_the_mean_and_duels_count_by_prompt():
    interval = bootstrap_mean([1.0, 2.0, 3.0, 4.0])
    assert interval.low <= interval.mean == 2.5 <= interval.high and interval.n == 4
    result = duel({0: 1.0, 1: 2.0, 2: 3.0, 3: 0.5}, {0: 1.0, 1: 1.0, 2: 4.0})  # prompt 3 unanswered by B
    assert (result.win, result.tie, result.lose) == (1, 1, 1) and result.win_tie.mean == pytest.approx(2 / 3)


class FakeJudge(BaseHTTPRequestHandler):
    answers = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.seen.append(body)
        content = FakeJudge.answers.pop(0)
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_url():
    FakeJudge.seen = []
    server = HTTPServer(("127.0.0.1", 0), FakeJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def write_run(tmp_path, methods=("tq-direct", "greedy"), prompts=3):
    with open(tmp_path / "records.jsonl", "w") as out:
        for label in methods:
            for i in range(prompts):
                out.write(json.dumps({"method": label, "prompt_index": i, "prompt": f"q{i}",
                                      "response": f"{label} answer {i}", "reward": 0.0, "config": {}}) + "\n")


def test_judge_scores_both_orders_counts_unparsable_answers_and_resumes(judge_url, tmp_path):
    write_run(tmp_path)
    config = EvalConfig(output=str(tmp_path), methods=["tq-direct", "greedy"], judge_url=judge_url, judge_model="m")
    FakeJudge.answers = ["8 3\nfirst is better", "5 5\nequal", "I cannot decide"]
    rows = [json.loads(line) for line in judge_run(config, method_specs(config)).read_text().splitlines()]
    assert len(rows) == 3 and len(FakeJudge.seen) == 3
    first = rows[0]
    assert first["outcome"] == ("lose" if first["swapped"] else "win")  # the score follows the answer, not its slot
    assert rows[1]["outcome"] == "tie" and rows[2]["failed"] == "no parsable scores"
    prompt = FakeJudge.seen[0]["messages"][1]["content"]
    assert "q0" in prompt and "Assistant 2" in prompt and FakeJudge.seen[0]["model"] == "m"
    summary = summarise_judgements(rows)["duels"][0]
    assert summary["failed"] == 1 and summary["win"] + summary["lose"] == 1 and summary["tie"] == 1
    judge_run(config, method_specs(config))  # everything judged already: no new request
    assert len(FakeJudge.seen) == 3


def test_unreachable_judge_is_a_clear_error(tmp_path):
    write_run(tmp_path)
    config = EvalConfig(output=str(tmp_path), methods=["tq-direct", "greedy"], judge_url="http://127.0.0.1:9/v1",
                        judge_model="m")
    with pytest.raises(ConfigError, match="unreachable.*--judge-url"):
        judge_run(config, method_specs(config))
