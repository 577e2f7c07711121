"""The reward–time frontier of an eval run: the methods no faster method beats, and at each budget in
multiples of greedy's seconds the best Transfer Q* variant against the best Best-of-N that fits."""

import json

from tqstar.eval import write_report
from tqstar.eval.frontier import frontier_summary, pareto_labels
from tqstar.eval.metrics import summarise
from tqstar.jsonl import append_jsonl

# label: (method family, seconds per response, reward)
RUN = {"greedy": ("greedy", 1.0, 1.0), "best-of-n[best_of=2]": ("best-of-n", 2.0, 1.5),
       "best-of-n": ("best-of-n", 8.0, 2.0), "cd": ("cd", 7.0, 1.8), "tq-direct": ("tq-direct", 6.0, 2.2)}


def records() -> list[dict]:
    return [{"method": label, "prompt_index": i, "prompt": f"p{i}", "response": "r", "reward": reward,
             "seconds": seconds, "config": {"decode": {"method": family}, "roles": {}, "sweep": None}}
            for label, (family, seconds, reward) in RUN.items() for i in range(2)]


def test_the_frontier_keeps_the_methods_no_faster_method_beats_fastest_first():
    points = {label: (seconds, reward) for label, (_, seconds, reward) in RUN.items()}
    assert pareto_labels(points) == ["greedy", "best-of-n[best_of=2]", "tq-direct"]


def test_each_budget_names_the_best_transfer_variant_and_the_best_best_of_n_that_fit():
    rows = {row["multiple"]: row for row in frontier_summary(records(), summarise(records()))["budgets"]}
    assert rows[1]["best"]["label"] == "greedy" and rows[1]["best_of_n"] is None and rows[1]["transfer"] is None
    assert rows[3]["best_of_n"]["label"] == "best-of-n[best_of=2]" and rows[3]["transfer"] is None
    assert rows[5]["transfer"] is None  # 6 s does not fit in 5 s
    assert rows[10]["best"]["label"] == "tq-direct" and rows[10]["best_of_n"]["reward"] == 2.0


def test_soft_transfer_is_a_transfer_variant_and_cd_is_not():
    soft = [{**r, "config": {**r["config"], "decode": {"method": "soft"}}} if r["method"] == "tq-direct" else r
            for r in records()]
    rows = {row["multiple"]: row for row in frontier_summary(soft, summarise(soft))["budgets"]}
    assert rows[10]["transfer"]["label"] == "tq-direct"  # the label of the soft-transfer row
    without = [r for r in records() if r["method"] != "tq-direct"]
    assert all(row["transfer"] is None for row in frontier_summary(without, summarise(without))["budgets"])


def test_without_a_greedy_run_there_is_no_unit_and_no_frontier():
    without_greedy = [r for r in records() if r["method"] != "greedy"]
    assert frontier_summary(without_greedy, summarise(without_greedy)) is None


def test_the_report_shows_the_frontier_table_and_plot(tmp_path):
    append_jsonl(tmp_path / "records.jsonl", records())
    markdown = write_report(tmp_path).read_text()
    section = markdown.split("## Reward–time frontier")[1].split("\n## ")[0]
    assert "On the frontier (no faster method has more reward): greedy, best-of-n[best_of=2], tq-direct." in section
    assert "| 10× (10.0 s) | tq-direct 2.200 (6.0 s) | best-of-n 2.000 (8.0 s) | tq-direct 2.200 (6.0 s) | +0.200 |" \
        in section
    assert (tmp_path / "reward_vs_seconds.png").stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["frontier"]["unit_seconds"] == 1.0
