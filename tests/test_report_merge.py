"""tqstar report over several runs: methods of different runs are paired prompt by prompt, a label two runs
share is told apart by its run's name, and runs that cannot be paired (other prompts, another reward or
response length) or an output that holds a run of its own are refused with the fix."""

import json
from pathlib import Path

import pytest

from tqstar.cli import main
from tqstar.errors import ConfigError
from tqstar.eval import merge_runs, write_report
from tqstar.eval.rundir import read_records, read_traces
from tqstar.jsonl import append_jsonl, write_json

PROMPTS = ["Say hello.", "Name a colour.", "Count to three."]


def make_run(folder: Path, rewards: dict[str, list[float]], reward: str = "helpful_harmless",
             prompts: list[str] = PROMPTS, sweep: dict | None = None, seconds: float | None = None) -> Path:
    """A run directory whose method ``label`` scored ``rewards[label][i]`` on prompt i, each response timed
    ``seconds`` when given."""
    folder.mkdir(parents=True)
    write_json(folder / "config.json", {"prompts": "tqstar", "split": "dev", "reference": "smollm2",
                                        "reward": reward, "max_new_tokens": 32,
                                        "methods": {label: {"decode": {"method": label}} for label in rewards}})
    append_jsonl(folder / "records.jsonl", [
        {"method": label, "prompt_index": i, "prompt": prompts[i], "response": f"{label} {i}", "reward": value,
         "seconds": seconds, "config": {"decode": {"method": label}, "roles": {}, "sweep": sweep}}
        for label, values in rewards.items() for i, value in enumerate(values)])
    append_jsonl(folder / "traces.jsonl", [{"method": label, "prompt_index": 0, "position": 0}
                                           for label in rewards])
    return folder


def test_methods_of_two_runs_are_paired_prompt_by_prompt_and_a_shared_label_gets_its_run_name(tmp_path):
    first = make_run(tmp_path / "greedy", {"cd": [1.0, 2.0, 3.0], "tq-direct": [2.0, 2.0, 4.0]})
    second = make_run(tmp_path / "sampled", {"cd": [1.0, 2.0], "tq-n4": [1.5, 3.0]})
    merged = merge_runs([first, second], tmp_path / "both")
    labels = {r["method"] for r in read_records(merged)}
    assert labels == {"greedy/cd", "tq-direct", "sampled/cd", "tq-n4"}
    assert {s["method"] for s in read_traces(merged)} == labels
    write_report(merged)
    duel = json.loads((merged / "summary.json").read_text())["duels"]["tq-direct"]["tq-n4"]
    assert (duel["win"], duel["tie"], duel["lose"]) == (1, 0, 1)  # prompts 0 and 1, the two both answered
    assert duel["difference"]["mean"] == pytest.approx(((2.0 - 1.5) + (2.0 - 3.0)) / 2)
    report = (merged / "report.md").read_text()
    assert "`" + str(first) + "`" in report and "compare compute by forward tokens" in report


def test_a_merged_report_draws_no_frontier_from_seconds_of_different_runs(tmp_path):
    timed = {"greedy": [1.0, 2.0, 3.0], "tq-direct": [2.0, 2.0, 4.0]}
    one_run = make_run(tmp_path / "one", timed, seconds=1.0)
    write_report(one_run)
    assert "frontier" in json.loads((one_run / "summary.json").read_text())
    merged = merge_runs([one_run, make_run(tmp_path / "other", {"cd": [1.0, 2.0, 3.0]}, seconds=9.0)],
                        tmp_path / "both")
    write_report(merged)
    assert "frontier" not in json.loads((merged / "summary.json").read_text())
    assert "## Reward–time frontier" not in (merged / "report.md").read_text()
    assert not (merged / "reward_vs_seconds.png").exists()


def test_a_sweep_point_follows_its_method_when_the_label_is_renamed(tmp_path):
    sweep = {"of": "cd", "option": "alpha", "value": 1.0}
    first = make_run(tmp_path / "a", {"cd": [1.0]}, sweep=sweep)
    second = make_run(tmp_path / "b", {"cd": [2.0]}, sweep=sweep)
    records = read_records(merge_runs([first, second], tmp_path / "both"))
    assert {r["config"]["sweep"]["of"] for r in records} == {"a/cd", "b/cd"}


def test_merging_again_picks_up_the_records_a_resumed_run_added(tmp_path):
    first = make_run(tmp_path / "a", {"cd": [1.0]})
    second = make_run(tmp_path / "b", {"tq": [2.0]})
    merge_runs([first, second], tmp_path / "both")
    append_jsonl(second / "records.jsonl", [{"method": "tq", "prompt_index": 1, "prompt": PROMPTS[1],
                                             "response": "x", "reward": 0.5, "config": {}}])
    assert len(read_records(merge_runs([first, second], tmp_path / "both"))) == 3


@pytest.mark.parametrize("change, named", [({"prompts": ["Other.", "Name a colour."]}, "prompt 0 of"),
                                           ({"reward": "sentiment"}, "differ in reward")])
def test_runs_that_cannot_be_paired_are_refused(tmp_path, change, named):
    first = make_run(tmp_path / "a", {"cd": [1.0, 2.0]})
    second = make_run(tmp_path / "b", {"tq": [1.0, 2.0]}, **change)
    with pytest.raises(ConfigError, match=named):
        merge_runs([first, second], tmp_path / "both")


def test_an_output_holding_an_eval_run_is_not_overwritten(tmp_path):
    first = make_run(tmp_path / "a", {"cd": [1.0]})
    second = make_run(tmp_path / "b", {"tq": [1.0]})
    other = make_run(tmp_path / "c", {"x": [1.0]})
    with pytest.raises(ConfigError, match="eval run of its own"):
        merge_runs([first, second], other)
    assert len(read_records(other)) == 1
    with pytest.raises(ConfigError, match="one of the runs"):
        merge_runs([first, second], second)
    assert len(read_records(second)) == 1


def test_the_cli_reports_several_runs_only_into_a_new_directory(tmp_path, capsys):
    first = make_run(tmp_path / "a", {"cd": [1.0]})
    second = make_run(tmp_path / "b", {"tq": [2.0]})
    assert main(["report", str(first), str(second)]) == 2
    assert "add --output DIR" in capsys.readouterr().err
    assert main(["report", str(first), str(first), "--output", str(tmp_path / "o")]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["report", str(first), str(second), "--output", str(tmp_path / "both")]) == 0
    assert (tmp_path / "both" / "report.html").is_file()
