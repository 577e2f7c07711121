"""tqstar eval: method specs, one record and its trace per (method, prompt), resume after kill -9, workers,
report, and the reward-hacking guard's fields in records and report."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tqstar.audit.read import read_answers
from tqstar.cli import build_parser
from tqstar.errors import ConfigError
from tqstar.eval import EvalConfig, method_specs, read_records, read_traces, run_eval, traces_path, write_report
from tqstar.options import from_args

CONTENT = ("method", "prompt_index", "prompt", "response", "reward", "tokens", "kl", "diversity", "seed")


def tiny_config(tiny_model_dir, output, **options):
    defaults = dict(output=str(output), reference=str(tiny_model_dir), reward="sentiment", limit=3, batch_size=2,
                    max_new_tokens=3, methods=["greedy", "tq-direct:top_k=2,horizon=2"])
    return EvalConfig(**{**defaults, **options})


def content(records):
    return sorted(tuple(r[k] for k in CONTENT) for r in records)


def steps(run_dir):
    return sorted(json.dumps(s, sort_keys=True) for s in read_traces(run_dir))


def test_methods_parse_options_labels_and_sweeps():
    config = EvalConfig(output="x", methods=["greedy", "tq-indirect:top_k=5,baseline=bl-sentiment,"
                                             "baseline_reward=sentiment,label=tq-ind", "best-of-n:best_of=4,label=bon"],
                        sweep=["tq-ind:alpha=0,10,2", "bon:best_of=2,4"])
    specs = {s.label: s for s in method_specs(config)}
    assert list(specs) == ["greedy", "tq-ind", "bon", "tq-ind[alpha=0]", "tq-ind[alpha=2]", "bon[best_of=2]"]
    assert specs["tq-ind"].decode.top_k == 5 and specs["tq-ind"].roles.baseline == "bl-sentiment"
    assert specs["tq-ind[alpha=0]"].decode.alpha == 0 and specs["tq-ind[alpha=0]"].decode.top_k == 5
    assert specs["tq-ind"].sweep == {"of": "tq-ind", "option": "alpha", "value": 10.0}  # the default α


def test_a_method_string_sets_the_block_size_and_a_blockwise_run_names_its_kl_estimator(tiny_model_dir, tmp_path):
    spec, = method_specs(EvalConfig(output="x", methods=["tq-direct:block_size=4"]))
    assert (spec.label, spec.decode.block_size) == ("tq-direct[block_size=4]", 4)
    run_eval(tiny_config(tiny_model_dir, tmp_path, limit=1, methods=["tq-direct:top_k=2,horizon=2,block_size=2"]),
             progress=False)
    record, = read_records(tmp_path)
    assert record["kl_estimator"] == "blockwise-exact" and record["kl"] >= 0
    assert all(len(step["chosen_block"]) <= 2 for step in read_traces(tmp_path))


@pytest.mark.parametrize("options, message", [
    ({"methods": ["nope"]}, "Unknown method|method must be one of"),
    ({"methods": ["tq-direct:block_size=0"]}, "block_size must be ≥ 1"),
    ({"methods": ["tq-direct:top_kk=3"]}, "unknown option.*top_kk"),
    ({"methods": ["tq-direct:reward=sentiment"]}, "one per run.*--reward"),
    ({"methods": ["greedy", "greedy"]}, "appear twice"),
    ({"methods": ["tq-direct:top_k"]}, "not key=value"),
    ({"methods": ["greedy"], "sweep": ["cd:alpha=1,2"]}, "LABEL:option"),
    ({"methods": ["greedy"], "sweep": ["greedy:colour=1"]}, "not a decoding option"),
    ({"methods": ["tq-direct:top_k=0"]}, "top_k"),
    ({"methods": ["tq-direct:top_k=2.5"]}, "top_k must be a whole number"),
    ({"methods": ["tq-direct:alpha=nan"]}, "alpha must be a finite number"),
    ({"methods": ["tq-indirect:num_rollouts=1"]}, "num_rollouts=1"),
    ({"methods": []}, "No methods"),
    ({"preset": "huge"}, "Unknown preset"),
    ({"methods": ["greedy:method=args"]}, "the method is the name before ':'"),
    ({"methods": ["greedy:seed=3"]}, "sets seed, which is one per run.*Use --seed instead"),
    ({"methods": ["args:max_new_tokens=3"]}, "Use --max-new-tokens instead"),
    ({"methods": ["greedy"], "judge_url": "http://localhost:1/v1"}, "--judge-model"),
    ({"methods": ["greedy"], "judge_rewards": ["nontoxik"]}, "--judge-reward 'nontoxik': Unknown reward 'nontoxik'.*"
                                                             "one of: sentiment, nontoxic"),
    ({"methods": ["greedy"], "judge_rewards": ["relevance+x*sentiment"]}, "Cannot read the weight 'x'"),
    ({"methods": ["greedy"], "judge_rewards": ["relevance+0.5*sentimental"]}, "Unknown reward 'sentimental' in"),
    ({"methods": ["greedy"], "judge_rewards": ["./no/such/model"]}, "does not exist or holds no config.json"),
    ({"methods": ["greedy"], "judge_rewards": [""]}, "The reward spec is empty"),
    ({"methods": ["greedy"], "judge_rewards": ["nontoxic", " nontoxic"]}, "given twice"),
])
def test_bad_methods_and_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        method_specs(EvalConfig(output="x", **options))


def test_eval_writes_one_record_per_method_and_prompt_and_resumes_whole_chunks(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path / "run")
    run_eval(config, progress=False)
    records = read_records(tmp_path / "run")
    assert len(records) == 6 and {r["method"] for r in records} == {"greedy", "tq-direct[top_k=2,horizon=2]"}
    first = records[0]
    assert first["config"]["decode"]["method"] == "greedy" and first["forward_tokens"] > 0 and first["kl"] == 0
    assert {r["kl_estimator"] for r in records} == {"stepwise-exact"}
    assert all(r["kl"] >= 0 for r in records) and all(0 <= r["diversity"] <= 1 for r in records)
    path = tmp_path / "run" / "records.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])  # a chunk cut by kill -9 mid-write
    run_eval(config, progress=False)
    assert content(read_records(tmp_path / "run")) == content(records)
    assert len(path.read_text().splitlines()) == 6


def test_eval_keeps_each_traced_response_s_steps_and_drops_them_with_an_unfinished_chunk(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    run_eval(tiny_config(tiny_model_dir, run), progress=False)
    records, traced = read_records(run), steps(run)
    by_key = {}
    for step in read_traces(run):
        by_key.setdefault((step["method"], step["prompt_index"]), []).append(step["position"])
    guided = [r for r in records if r["method"] != "greedy"]  # greedy decodes without values: no trace
    assert sorted(by_key) == sorted((r["method"], r["prompt_index"]) for r in guided)
    assert all(by_key[r["method"], r["prompt_index"]] == list(range(r["tokens"])) for r in guided)
    assert len(read_answers(traces_path(run))) == len(guided)  # 'tqstar trace view' reads it as a --trace file
    lines = (run / "records.jsonl").read_text().splitlines()
    (run / "records.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # killed after a chunk's traces, before its records
    run_eval(tiny_config(tiny_model_dir, run), progress=False)
    assert steps(run) == traced
    (run / "records.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # killed while writing that chunk's traces
    trace_lines = traces_path(run).read_text().splitlines()
    traces_path(run).write_text("\n".join(trace_lines[:-1]) + "\n" + trace_lines[-1][:30])
    run_eval(tiny_config(tiny_model_dir, run), progress=False)
    assert steps(run) == traced and content(read_records(run)) == content(records)


def test_no_traces_keeps_none_and_a_run_may_resume_with_traces_turned_on(tiny_model_dir, tmp_path):
    run_eval(tiny_config(tiny_model_dir, tmp_path, limit=1, no_traces=True), progress=False)
    assert not traces_path(tmp_path).exists() and len(read_records(tmp_path)) == 2
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    (tmp_path / "records.jsonl").write_text(lines[0] + "\n")  # tq-direct's chunk is to do again
    run_eval(tiny_config(tiny_model_dir, tmp_path, limit=1), progress=False)  # not another run: no records change
    assert {(s["method"], s["prompt_index"]) for s in read_traces(tmp_path)} == {("tq-direct[top_k=2,horizon=2]", 0)}


def test_resuming_with_other_options_is_refused(tiny_model_dir, tmp_path):
    run_eval(tiny_config(tiny_model_dir, tmp_path, limit=1, methods=["greedy"]), progress=False)
    with pytest.raises(ConfigError, match="other options.*max_new_tokens.*new --output"):
        run_eval(tiny_config(tiny_model_dir, tmp_path, limit=1, methods=["greedy"], max_new_tokens=5),
                 progress=False)
    with pytest.raises(ConfigError, match="other options.*judge_rewards"):  # its records would lack the scores
        run_eval(tiny_config(tiny_model_dir, tmp_path, limit=1, methods=["greedy"], judge_rewards=["sentiment"]),
                 progress=False)


def test_a_run_started_before_an_option_existed_still_resumes(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path, limit=1, methods=["greedy"])
    run_eval(config, progress=False)
    path = tmp_path / "config.json"
    started = json.loads(path.read_text())
    del started["judge_rewards"]  # as written before judge rewards existed: none is what ran
    for method in started["methods"].values():
        del method["decode"]["block_size"]  # as written before block_size existed: its default is what ran
    path.write_text(json.dumps(started))
    run_eval(config, progress=False)
    assert len(read_records(tmp_path)) == 1


def test_kill_9_then_rerun_loses_and_duplicates_nothing(tiny_model_dir, tmp_path):
    args = [sys.executable, "-m", "tqstar.cli", "eval", "--reference", str(tiny_model_dir), "--reward", "sentiment",
            "--limit", "6", "--batch-size", "1", "--max-new-tokens", "4", "--methods", "greedy",
            "--methods", "tq-direct:top_k=2,horizon=3", "--quiet"]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    process = subprocess.Popen([*args, "--output", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and len(read_records(killed)) < 3:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 3 <= len(read_records(killed)) < 12
    assert subprocess.run([*args, "--output", str(killed)], capture_output=True).returncode == 0
    assert subprocess.run([*args, "--output", str(clean)], capture_output=True).returncode == 0
    assert content(read_records(killed)) == content(read_records(clean))
    assert len((killed / "records.jsonl").read_text().splitlines()) == 12
    assert steps(killed) == steps(clean)


def test_workers_give_the_records_of_a_serial_run(tiny_model_dir, tmp_path):
    run_eval(tiny_config(tiny_model_dir, tmp_path / "serial"), progress=False)
    run_eval(tiny_config(tiny_model_dir, tmp_path / "pool", workers=2), progress=False)
    assert content(read_records(tmp_path / "pool")) == content(read_records(tmp_path / "serial"))
    assert steps(tmp_path / "pool") == steps(tmp_path / "serial")


@pytest.mark.slow
def test_a_local_ray_instance_gives_the_records_of_a_serial_run(tiny_model_dir, tmp_path):
    pytest.importorskip("ray")
    import ray

    run_eval(tiny_config(tiny_model_dir, tmp_path / "serial"), progress=False)
    try:
        run_eval(tiny_config(tiny_model_dir, tmp_path / "ray", ray="local", workers=2), progress=False)
    finally:
        ray.shutdown()
    assert content(read_records(tmp_path / "ray")) == content(read_records(tmp_path / "serial"))


def test_report_renders_tables_and_plots_and_links_each_prompt_to_its_responses_and_traces(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path, limit=2, methods=["greedy", "tq-direct:top_k=2,horizon=2,label=tq",
                                                                     "best-of-n:best_of=2,label=bon"],
                         sweep=["tq:alpha=0,2", "bon:best_of=3"])
    run_eval(config, progress=False)
    markdown = write_report(tmp_path).read_text()
    for name in ("reward.png", "win_tie.png", "reward_vs_kl.png", "reward_vs_compute.png", "reward_vs_seconds.png",
                 "report.html"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert "| tq[alpha=0] | 2 |" in markdown and "Win-tie rate" in markdown
    assert "## Safety on the shipped prompts" in markdown and "| greedy | – | – | – | 0% (2) |" in markdown
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "<table>" in html
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["safety"]["greedy"]["benign_refused"]["n"] == 2
    duel = summary["duels"]["tq"]["greedy"]
    assert duel["win"] + duel["tie"] + duel["lose"] == 2
    links = re.findall(r'<a href="([^"]+)">', html)
    assert links == ["traces/prompt-0000.html", "traces/prompt-0001.html"]
    records, traces = read_records(tmp_path), read_traces(tmp_path)
    for index, link in enumerate(links):
        block = re.search(r"id='tqstar-answers'>(.*?)</script>", (tmp_path / link).read_text(), re.S).group(1)
        [group] = json.loads(block)["groups"]  # one prompt, its answers side by side
        mine = [r for r in records if r["prompt_index"] == index]
        assert group["prompt"] == mine[0]["prompt"] and len(group["answers"]) == len(mine) == 6
        for answer in group["answers"]:
            assert answer["text"] == next(r["response"] for r in mine if r["method"] == answer["method"])
            assert answer["steps"] == [s for s in traces if (s["method"], s["prompt_index"]) == (answer["method"], index)]
        assert any(a["steps"] for a in group["answers"]) and not next(
            a for a in group["answers"] if a["method"] == "greedy")["steps"]


def test_report_of_an_empty_directory_says_what_to_run(tmp_path):
    with pytest.raises(ConfigError, match="tqstar eval"):
        write_report(tmp_path)


@pytest.mark.slow
def test_smoke_preset_runs_from_the_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tqstar.cli", "eval", "--preset", "smoke", "--output",
                          str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    records = read_records(tmp_path)
    assert len(records) == 3 * 8 and (tmp_path / "report.html").is_file()
    assert {r["method"] for r in records} >= {"dpo-baseline", "tq-direct", "tq-indirect"}


def test_the_judge_reward_flag_repeats_into_judge_rewards():
    args = build_parser().parse_args(["eval", "--output", "x", "--methods", "greedy", "--judge-reward", "nontoxic",
                                      "--judge-reward", "relevance+0.5*sentiment"])
    config, = from_args(args, EvalConfig)
    assert config.judge_rewards == ["nontoxic", "relevance+0.5*sentiment"]


def test_records_and_report_hold_the_target_reward_s_terms_the_judge_rewards_fluency_and_degenerate_flags(
        tiny_model_dir, tmp_path):
    run_eval(tiny_config(tiny_model_dir, tmp_path, reward="relevance+0.5*sentiment", judge_rewards=["nontoxic"]),
             progress=False)
    records = read_records(tmp_path)
    for record in records:
        terms = record["terms"]
        assert set(terms) == {"relevance", "sentiment"} and set(record["judged"]) == {"nontoxic"}
        assert record["reward"] == pytest.approx(terms["relevance"] + 0.5 * terms["sentiment"])
        assert record["fluency_reference"] < 0 and record["fluency_baseline"] is None  # the baseline is the reference
        assert record["ended_early"] is (record["tokens"] < 3 / 4) and isinstance(record["repeats"], bool)
    markdown = write_report(tmp_path).read_text()
    section = markdown.split("## Reward-hacking guard")[1].split("##")[0]
    assert "| method | target reward | term relevance | term sentiment | judge `nontoxic` |" in section
    assert all(f"| {label} |" in section for label in {r["method"] for r in records})
    guard = json.loads((tmp_path / "summary.json").read_text())["guard"]
    assert guard["greedy"]["judged"]["nontoxic"]["n"] == 3 and guard["greedy"]["ended_early"]["n"] == 3
    assert "<th>judge `nontoxic`</th>" in (tmp_path / "report.html").read_text()
