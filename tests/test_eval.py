"""tqstar eval: method specs, one record per (method, prompt), resume after kill -9, workers, report."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tqstar.errors import ConfigError
from tqstar.eval import EvalConfig, method_specs, read_records, run_eval, write_report

CONTENT = ("method", "prompt_index", "prompt", "response", "reward", "tokens", "kl", "diversity", "seed")


def tiny_config(tiny_model_dir, output, **options):
    defaults = dict(output=str(output), reference=str(tiny_model_dir), reward="sentiment", limit=3, batch_size=2,
                    max_new_tokens=3, methods=["greedy", "tq-direct:top_k=2,horizon=2"])
    return EvalConfig(**{**defaults, **options})


def content(records):
    return sorted(tuple(r[k] for k in CONTENT) for r in records)


def test_methods_parse_options_labels_and_sweeps():
    config = EvalConfig(output="x", methods=["greedy", "tq-indirect:top_k=5,baseline=bl-sentiment,"
                                             "baseline_reward=sentiment,label=tq-ind", "best-of-n:best_of=4,label=bon"],
                        sweep=["tq-ind:alpha=0,10,2", "bon:best_of=2,4"])
    specs = {s.label: s for s in method_specs(config)}
    assert list(specs) == ["greedy", "tq-ind", "bon", "tq-ind[alpha=0]", "tq-ind[alpha=2]", "bon[best_of=2]"]
    assert specs["tq-ind"].decode.top_k == 5 and specs["tq-ind"].roles.baseline == "bl-sentiment"
    assert specs["tq-ind[alpha=0]"].decode.alpha == 0 and specs["tq-ind[alpha=0]"].decode.top_k == 5
    assert specs["tq-ind"].sweep == {"of": "tq-ind", "option": "alpha", "value": 10.0}  # the default α


@pytest.mark.parametrize("options, message", [
    ({"methods": ["nope"]}, "Unknown method|method must be one of"),
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


def test_resuming_with_other_options_is_refused(tiny_model_dir, tmp_path):
    run_eval(tiny_config(tiny_model_dir, tmp_path, limit=1, methods=["greedy"]), progress=False)
    with pytest.raises(ConfigError, match="other options.*max_new_tokens.*new --output"):
        run_eval(tiny_config(tiny_model_dir, tmp_path, limit=1, methods=["greedy"], max_new_tokens=5),
                 progress=False)


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


def test_workers_give_the_records_of_a_serial_run(tiny_model_dir, tmp_path):
    run_eval(tiny_config(tiny_model_dir, tmp_path / "serial"), progress=False)
    run_eval(tiny_config(tiny_model_dir, tmp_path / "pool", workers=2), progress=False)
    assert content(read_records(tmp_path / "pool")) == content(read_records(tmp_path / "serial"))


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


def test_report_renders_tables_and_labelled_plots(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path, limit=2, methods=["greedy", "tq-direct:top_k=2,horizon=2,label=tq",
                                                                     "best-of-n:best_of=2,label=bon"],
                         sweep=["tq:alpha=0,2", "bon:best_of=3"])
    run_eval(config, progress=False)
    markdown = write_report(tmp_path).read_text()
    for name in ("reward.png", "win_tie.png", "reward_vs_kl.png", "reward_vs_compute.png", "report.html"):
        assert (tmp_path / name).stat().st_size > 1000, name
    assert "| tq[alpha=0] | 2 |" in markdown and "Win-tie rate" in markdown
    assert "## Safety on the shipped prompts" in markdown and "| greedy | – | – | 0% (2) |" in markdown
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "<table>" in html
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["safety"]["greedy"]["benign_refused"]["n"] == 2
    duel = summary["duels"]["tq"]["greedy"]
    assert duel["win"] + duel["tie"] + duel["lose"] == 2


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
