"""The command line, run as a user runs it: a subprocess, its exit status, stdout and stderr."""

import json
import os
import subprocess
import sys

import pytest


def run(*args, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "tqstar.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def tiny_flags(tiny_model_dir):
    return ["--reference", str(tiny_model_dir), "--reward", "sentiment", "--quiet"]


def test_help_explains_options_in_the_papers_terms():
    out = run("generate", "--help")
    assert out.returncode == 0
    for phrase in ("π_alg", "--top-k", "--alpha", "--num-rollouts", "--horizon", "--baseline-reward", "--compat"):
        assert phrase in out.stdout


def test_generate_prints_response_and_reward(tiny_flags):
    out = run("generate", "Say something nice.", "--max-new-tokens", "3", "--top-k", "2", "--horizon", "2",
              *tiny_flags)
    assert out.returncode == 0, out.stderr
    assert "[tq-direct] reward" in out.stdout


def test_generate_json_and_trace_file(tiny_flags, tmp_path):
    trace = tmp_path / "trace.jsonl"
    out = run("generate", "Hi", "Hello", "--max-new-tokens", "2", "--top-k", "2", "--horizon", "eos",
              "--json", "--trace", str(trace), *tiny_flags)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["prompt"] for line in lines] == ["Hi", "Hello"]
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert {r["prompt_index"] for r in records} == {0, 1} and all("probabilities" in r for r in records)


def test_generate_decodes_blockwise_with_block_size(tiny_flags, tmp_path):
    trace = tmp_path / "trace.jsonl"
    out = run("generate", "Hi", "--block-size", "4", "--max-new-tokens", "6", "--top-k", "2", "--horizon", "5",
              "--json", "--trace", str(trace), *tiny_flags)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["method"] == "tq-direct"
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    lengths = [len(step["chosen_block"]) for step in steps]  # one trace record per committed block
    assert [step["position"] for step in steps] == [sum(lengths[:i]) for i in range(len(steps))]
    assert sum(lengths) <= 6 and all(1 <= len(block) <= 4 for step in steps for block in step["blocks"])


def test_generate_with_prune_writes_the_same_answer_and_leaves_losers_unvalued(tiny_flags, tmp_path):
    """Sentiment declares its range [-1, 1]: at α = 0.001 a candidate whose prior trails by more than 0.002 nats
    cannot win, so --prune leaves its Q̂ unestimated (null in the trace) and the answer is unchanged."""
    common = ["Say something nice.", "--max-new-tokens", "4", "--top-k", "4", "--horizon", "2", "--alpha", "0.001",
              "--json", *tiny_flags]
    plain = run("generate", *common)
    trace = tmp_path / "trace.jsonl"
    pruned = run("generate", *common, "--prune", "--trace", str(trace))
    assert plain.returncode == 0 and pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["response"] == json.loads(plain.stdout)["response"]
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    assert any(value is None for step in steps for value in step["values"])


def test_compare_prints_each_method(tiny_flags):
    out = run("generate", "Hi", "--compare", "--max-new-tokens", "2", "--top-k", "2", "--horizon", "2", *tiny_flags)
    assert out.returncode == 0, out.stderr
    for method in ("greedy", "args", "cd", "tq-direct"):
        assert f"\n{method}" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["generate", "", ], "prompt is empty"),
    (["generate", "Hi", "--top-k", "0"], "top_k must be ≥ 1"),
    (["generate", "Hi", "--alpha", "-1"], "alpha must be ≥ 0"),
    (["generate", "Hi", "--num-rollouts", "0"], "num_rollouts must be ≥ 1"),
    (["generate", "Hi", "--block-size", "0"], "block_size must be ≥ 1"),
    (["generate", "Hi", "--reward", "vibes"], "Unknown reward 'vibes'"),
    (["generate", "Hi", "--reference", "./missing-model"], "does not exist"),
    (["generate", "Hi", "--method", "tq-indirect"], "--baseline-reward"),
    (["generate", "Hi", "--config", "missing.json"], "does not exist"),
    (["generate", "Hi", "--alpha", "nan"], "alpha must be a finite number"),
    (["generate", "Hi", "--rollout-temperature", "inf"], "rollout_temperature must be a finite number"),
    (["generate", "Hi", "--method", "soft", "--num-rollouts", "1"], "num_rollouts=1"),
    (["generate", "Hi", "--compat", "--top-k", "3"], "top_k=3 (compat: 10)"),
])
def test_bad_input_exits_2_with_one_clear_line(tiny_flags, args, message):
    if "--reference" not in args:
        args = [*args[:2], *tiny_flags, *args[2:]]  # the flags under test come last and win
    out = run(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("content, message", [('{"top_k": 2.5}', "top_k must be a whole number"),
                                              ('{"horizon": NaN}', "horizon must be a finite number")])
def test_bad_numbers_in_a_config_file_exit_2(tiny_flags, tmp_path, content, message):
    path = tmp_path / "options.json"
    path.write_text(content)
    out = run("generate", "Hi", *tiny_flags, "--config", str(path))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


def test_bench_runs_with_the_role_flags(tiny_flags):
    out = run("bench", "--top-k", "2", "--horizon", "2", "--new-tokens", "3", "--prompts", "1", "--prompts", "2",
              "--blocks", "2", "--authors-prompts", "1", "--int8", "--bf16", "--sampled-blocks", *tiny_flags[:-1])
    assert out.returncode == 0, out.stderr
    for row in ("| 1 | greedy |", "| 1 | exact |", "| 2 | exact + prune |", "| 2 | exact + int8 baseline |",
                "| 2 | exact + bf16 baseline |", "| 2 | block 2 |", "| 2 | block 2 sampled |",
                "| 1 | exact + lookahead |"):
        assert row in out.stdout
    exact_rows = [line for line in out.stdout.splitlines() if "| exact |" in line or "| exact + lookahead |" in line]
    assert all("| 100% |" in line for line in exact_rows)  # the exact decoder agrees with itself
    refused = run("bench", "--prompts", "99", *tiny_flags[:-1])
    assert refused.returncode == 2 and "prompts must each be between 1 and 32" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_bench_times_only_the_rows_asked_for(tiny_flags):
    out = run("bench", "--top-k", "2", "--horizon", "2", "--new-tokens", "3", "--prompts", "2", "--blocks", "2",
              "--authors-prompts", "1", "--only", "exact", "--only", "block 2", *tiny_flags[:-1])
    assert out.returncode == 0, out.stderr
    timed = [line.split(" | ")[1] for line in out.stdout.splitlines() if line.startswith("| 2 |")]
    assert timed == ["exact", "block 2"]
    refused = run("bench", "--blocks", "2", "--only", "block 4", *tiny_flags[:-1])
    assert refused.returncode == 2 and "--only 'block 4' names no row" in refused.stderr and "'block 2'" in refused.stderr


def test_unknown_flag_exits_2():
    out = run("generate", "Hi", "--no-such-flag")
    assert out.returncode == 2 and "Traceback" not in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("transfer", [
    ["--method", "tq-direct", "--baseline", "bl-helpful-harmless"],
    ["--method", "tq-indirect", "--baseline", "bl-sentiment", "--baseline-reward", "sentiment",
     "--num-rollouts", "2", "--rollout-temperature", "1"],
    ["--method", "tq-indirect", "--baseline", "bl-sentiment", "--baseline-reward", "implicit",
     "--num-rollouts", "2", "--rollout-temperature", "1"],
])
def test_direct_and_indirect_transfer_run_with_the_shipped_adapters(transfer, tmp_path):
    trace = tmp_path / "trace.jsonl"
    out = run("generate", "How can I sleep better?", "--max-new-tokens", "2", "--top-k", "2", "--horizon", "2",
              "--quiet", "--json", "--trace", str(trace), *transfer)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["method"] == transfer[1]
    steps = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(steps) >= 1 and all(len(s["values"]) == 2 for s in steps)
    if transfer[1] == "tq-indirect":
        assert all(len(w) == 2 for s in steps for w in s["weights"])  # two rollouts weighted per candidate
