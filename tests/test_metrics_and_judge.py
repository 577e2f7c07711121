"""Per-response metrics, bootstrap intervals and duels, the LLM judge protocol over HTTP, and the reward-hacking
guard's per-response fields and per-method summary."""

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tqstar.decoding import GenerationResult, StepTrace
from tqstar.errors import ConfigError
from tqstar.eval import (EvalConfig, best_of_n_kl, bootstrap_mean, diversity, duel, ended_early, guard_fields,
                         guard_summary, judge_run, mean_ess, mean_token_logprobs, method_specs, path_log_prob, repeats,
                         reward_terms, summarise_judgements, trace_kl)
from tqstar.rewards import CallableReward, WeightedSum


def test_diversity_is_one_for_distinct_words_and_falls_with_repeats():
    assert diversity("one two three four five") == 1.0
    assert diversity("") == 1.0
    # distinct/all 2-grams 2/5, 3-grams 2/4, 4-grams 2/3
    assert diversity("a b a b a b") == pytest.approx((2 / 5) * (2 / 4) * (2 / 3))


def step(probabilities, prior_logprobs, chosen=0):
    return StepTrace(0, [0, 1], ["a", "b"], prior_logprobs, [0.0, 0.0], probabilities, chosen, "a")


def test_mean_ess_averages_candidates_then_steps_and_is_none_without_weights():
    weighted = [step([0.5, 0.5], [0.0, 0.0]) for _ in range(2)]
    weighted[0].ess, weighted[1].ess = [1.0, 3.0], [4.0, 4.0]
    assert mean_ess(GenerationResult("p", "ab", [0, 1], "soft", trace=weighted)) == pytest.approx(3.0)
    assert mean_ess(GenerationResult("p", "ab", [0, 1], "cd", trace=[step([0.5, 0.5], [0.0, 0.0])])) is None
    assert mean_ess(GenerationResult("p", "ab", [0, 1], "greedy")) is None


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
    assert result.difference.mean == pytest.approx(0.0) and result.difference.n == 3


def test_a_lower_bound_near_the_edge_between_resamples_holds_still_across_seeds():
    """Three large differences among ten: 2.8% of resamples hold none of them, just above the 2.5% the lower
    bound sits at. With 1,000 resamples that bound jumped between 0.01 and 0.38 from seed to seed."""
    differences = [3.7] * 3 + [0.01] * 7
    lows = {round(bootstrap_mean(differences, seed=seed).low, 6) for seed in range(10)}
    assert lows == {0.01}


def test_paired_difference_is_sure_of_a_small_steady_lead_the_means_intervals_cannot_separate():
    spread = {i: float(i) for i in range(20)}  # prompts differ far more than the methods do
    result = duel({i: r + 0.1 for i, r in spread.items()}, spread)
    assert result.difference.mean == pytest.approx(0.1) and result.difference.low > 0
    a, b = bootstrap_mean([r + 0.1 for r in spread.values()]), bootstrap_mean(list(spread.values()))
    assert a.low < b.high  # the two means' intervals overlap


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


# --- the reward-hacking guard ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    from tqstar.models import load_language_model

    return load_language_model(str(tiny_model_dir))


def test_fluency_is_the_mean_of_the_per_token_logprobs_under_the_model(tiny_model_dir, tiny_lm):
    import torch
    from transformers import AutoModelForCausalLM

    prompt, tokens = "Say hello.", tiny_lm.encode("Hello there, friend.") + [min(tiny_lm.eos_token_ids)]
    empty = GenerationResult(prompt, "", [min(tiny_lm.eos_token_ids)], "greedy")  # ended at once
    fluency = mean_token_logprobs(tiny_lm, [GenerationResult(prompt, "Hello there, friend.", tokens, "greedy"), empty],
                                  tiny_lm)
    prefix = tiny_lm.encode_prompt(prompt)
    with torch.no_grad():  # the same weights read by plain transformers, one log-prob per response token
        logits = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()(torch.tensor([prefix + tokens])).logits[0]
    logprobs = torch.log_softmax(logits.double(), -1)
    expected = sum(float(logprobs[len(prefix) - 1 + t, token]) for t, token in enumerate(tokens)) / len(tokens)
    assert fluency[0] == pytest.approx(expected, abs=1e-4) and fluency[1] is None


@pytest.mark.parametrize("text, repeating", [
    ("one two three four one two three four one two three four", True),
    ("la la la la la la", True),  # the run 'la la la la' occurs three times, overlapping
    ("One two three four, one two three four; one two THREE four.", True),  # neither punctuation nor case hides it
    ("one two three four one two three four", False),
    ("", False),
])
def test_a_response_repeats_when_a_run_of_four_words_occurs_three_times(text, repeating):
    assert repeats(text) is repeating


def test_a_response_ended_early_below_a_quarter_of_the_token_budget():
    assert ended_early(7, 32) and not ended_early(8, 32) and ended_early(0, 3) and not ended_early(1, 3)


def test_guard_fields_hold_each_term_unweighted_each_judge_and_the_fluencies(tiny_lm, smollm2_tokenizer, tmp_path):
    from tiny import save_tiny_llama

    from tqstar.decoding.roles import Roles
    from tqstar.models import load_language_model

    length = CallableReward(lambda prompts, responses: [len(r) for r in responses], name="length")
    words = CallableReward(lambda prompts, responses: [len(r.split()) for r in responses], name="words")
    shouting = CallableReward(lambda prompts, responses: [r.count("!") for r in responses], name="shouting")
    texts = ["Hello there!", "Go go go go go go go go go go go!"]
    results = [GenerationResult("Hi", t, tiny_lm.encode(t), "greedy") for t in texts]
    target = WeightedSum([(2.0, length), (-0.5, words)])
    assert list(reward_terms(target)) == ["length", "words"] and reward_terms(length) == {}
    alone = guard_fields(results, Roles(tiny_lm, tiny_lm, target), {"shouting": shouting}, tiny_lm, 32)
    assert [r["terms"] for r in alone] == [{"length": 12, "words": 2}, {"length": 33, "words": 11}]
    assert [r["judged"] for r in alone] == [{"shouting": 1}, {"shouting": 1}]
    assert [(r["ended_early"], r["repeats"]) for r in alone] == [(True, False), (False, True)]
    assert all(r["fluency_reference"] < 0 and r["fluency_baseline"] is None for r in alone)  # no baseline of its own
    baseline = load_language_model(str(save_tiny_llama(tmp_path, smollm2_tokenizer, seed=1,
                                                       eos_token_id=smollm2_tokenizer.eos_token_id)))
    both = guard_fields(results, Roles(tiny_lm, baseline, length), {}, tiny_lm, 4)
    assert [r["terms"] for r in both] == [{}, {}] and not any(r["ended_early"] for r in both)
    assert [r["fluency_reference"] for r in both] == [r["fluency_reference"] for r in alone]
    assert [r["fluency_baseline"] for r in both] == pytest.approx(mean_token_logprobs(baseline, results, tiny_lm))
    assert both[0]["fluency_baseline"] != pytest.approx(both[0]["fluency_reference"])


def test_guard_summary_gives_means_and_shares_per_method_and_nothing_for_records_without_the_guard():
    records = [{"method": "a", "terms": {"t": 1.0}, "judged": {"j": 0.0}, "fluency_reference": -2.0,
                "fluency_baseline": None, "ended_early": True, "repeats": False},
               {"method": "a", "terms": {"t": 3.0}, "judged": {"j": 1.0}, "fluency_reference": -4.0,
                "fluency_baseline": None, "ended_early": False, "repeats": False},
               {"method": "old"}]
    summary = guard_summary(records)
    a, old = summary["a"], summary["old"]
    assert a["terms"]["t"]["mean"] == 2.0 and a["judged"]["j"]["mean"] == 0.5 and a["judged"]["j"]["n"] == 2
    assert a["fluency_reference"]["mean"] == -3.0 and a["fluency_baseline"]["mean"] is None
    assert a["ended_early"]["mean"] == 0.5 and a["repeats"]["mean"] == 0.0
    assert old["terms"] == old["judged"] == {} and old["ended_early"]["mean"] is None and old["ended_early"]["n"] == 0
