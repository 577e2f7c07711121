"""tqstar report on run directories written by hand: a metric with no values is null in summary.json and "–"
in the report (never NaN), as is every cell of the reward-hacking guard for records written before it; its
table shows each term and judge reward recorded; and each prompt links to its own page holding every method's response, where
no text of a prompt or a response can become a link or markup. (A real eval run's traces and pages:
tests/test_eval.py.)"""

import json
import re
from pathlib import Path

import pytest

from tqstar.eval import write_report
from tqstar.jsonl import append_jsonl

INJECTION = '[click](javascript:alert(1)) </script><a href="https://example.com">x</a> | `x`'


def record(method: str, index: int, prompt: str, reward: float, **metrics) -> dict:
    config = {"decode": {"method": method}, "roles": {}, "sweep": None}
    return {"method": method, "prompt_index": index, "prompt": prompt, "response": f"{method} answers {index}",
            "reward": reward, "config": config, **metrics}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """Method a answers prompts 0 and 1 with no KL; b answers prompt 2 only with no forward tokens."""
    append_jsonl(tmp_path / "records.jsonl", [
        record("a", 0, "Say hello.", 0.5, kl=None, forward_tokens=10),
        record("a", 1, INJECTION, 0.25, kl=None, forward_tokens=12),
        record("b", 2, "Name a colour.", 0.75, kl=0.1, forward_tokens=None),
    ])
    append_jsonl(tmp_path / "judge.jsonl", [{"method": "a", "against": "b", "model": "j", "outcome": "failed"}])
    return tmp_path


def page_data(page: str) -> dict:
    block = re.search(r"<script type='application/json' id='tqstar-answers'>(.*?)</script>", page, re.S).group(1)
    return json.loads(block)


def test_a_metric_without_values_is_null_in_the_summary_and_a_dash_in_the_report(run_dir):
    markdown = write_report(run_dir).read_text()
    text = (run_dir / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    assert summary["methods"]["a"]["kl"] == {"mean": None, "low": None, "high": None, "n": 0}
    assert summary["methods"]["b"]["forward_tokens"]["mean"] is None
    assert summary["duels"]["a"]["b"]["win_tie"]["mean"] is None  # no prompt answered by both
    assert summary["judge"]["duels"][0]["win_tie"] is None  # every judgement failed
    assert "nan" not in markdown.lower()
    row_a = next(line for line in markdown.splitlines() if line.startswith("| a | 2 |"))
    assert row_a.split(" | ")[3] == "–"  # the KL column
    assert "| – (0/0/0) |" in markdown and "| 1 |" in markdown.split("## LLM judge")[1]
    assert "| 0 | 0 | 0 | – | 1 |" in markdown


def test_records_written_before_the_guard_still_give_its_table_with_dashes(run_dir):
    markdown = write_report(run_dir).read_text()
    section = markdown.split("## Reward-hacking guard")[1].split("##")[0]
    assert "| method | target reward | fluency ref (nats/token) |" in section  # no terms nor judges recorded
    row_a = next(line for line in section.splitlines() if line.startswith("| a |"))
    assert row_a.split(" | ")[2:] == ["–"] * 4 + ["– |"]  # fluencies, tokens, ended early, repeating
    assert json.loads((run_dir / "summary.json").read_text())["guard"]["a"]["ended_early"]["n"] == 0


def test_the_guard_table_shows_each_term_each_judge_reward_and_the_shares_of_degenerate_answers(tmp_path):
    guard = {"fluency_reference": -2.0, "fluency_baseline": -1.5, "tokens": 8}
    append_jsonl(tmp_path / "records.jsonl", [
        record("hacker", 0, "Say hello.", 5.0, terms={"relevance": 0.9, "sentiment": 1.0},
               judged={"relevance+0.5*sentiment": 1.4}, ended_early=True, repeats=True, **guard),
        record("hacker", 1, "Name a colour.", 5.0, terms={"relevance": 0.7, "sentiment": 1.0},
               judged={"relevance+0.5*sentiment": 1.2}, ended_early=False, repeats=True, **guard),
        record("honest", 0, "Say hello.", 1.0, terms={"relevance": 0.8}, ended_early=False, repeats=False, **guard),
    ])
    markdown = write_report(tmp_path).read_text()
    section = markdown.split("## Reward-hacking guard")[1].split("##")[0]
    assert ("| method | target reward | term relevance | term sentiment | judge `relevance+0.5*sentiment` | "
            "fluency ref (nats/token) | fluency baseline (nats/token) | tokens | ended early | repeating |") in section
    hacker = next(line for line in section.splitlines() if line.startswith("| hacker |")).split(" | ")
    assert hacker[1:4] == ["5.0000 [5.0000, 5.0000]", "0.800 [0.700, 0.900]", "1.000 [1.000, 1.000]"]
    assert hacker[4].startswith("1.300 [") and hacker[5:7] == ["-2.00 [-2.00, -2.00]", "-1.50 [-1.50, -1.50]"]
    assert hacker[8].startswith("50% [") and hacker[9] == "100% [100%, 100%] |"
    honest = next(line for line in section.splitlines() if line.startswith("| honest |")).split(" | ")
    assert honest[3:5] == ["–", "–"]  # a term and a judge it has no score of
    assert "<th>judge `relevance+0.5*sentiment`</th>" in (tmp_path / "report.html").read_text()


def test_the_report_links_each_prompt_to_a_page_of_its_responses(run_dir):
    write_report(run_dir)
    report = (run_dir / "report.html").read_text()
    links = re.findall(r'<a href="([^"]+)">', report)
    assert links == ["traces/prompt-0000.html", "traces/prompt-0001.html", "traces/prompt-0002.html"]
    for index, link in enumerate(links):
        page = (run_dir / link).read_text()
        data = page_data(page)
        answers = [a for g in data["groups"] for a in g["answers"]]
        assert [a["text"] for a in answers] == [f"{a['method']} answers {index}" for a in answers]
        assert {g["prompt"] for g in data["groups"]} == {json.loads((run_dir / "records.jsonl").read_text()
                                                                    .splitlines()[index])["prompt"]}
        assert "<a href=\"../report.html\">" in page
    section = report.split("<h2>Responses by prompt</h2>")[1]  # the links above are the only ones: none from text
    assert "<script" not in section and "‹/script›" in section and "⟦click⟧(javascript:alert(1))" in section


@pytest.mark.parametrize("prompts, shown", [("tqstar", "prompts `tqstar` split `dev`;"),
                                            ("my/prompts.jsonl", "prompts `my/prompts.jsonl`;")])
def test_the_report_names_a_split_only_for_sources_that_have_splits(run_dir, prompts, shown):
    (run_dir / "config.json").write_text(json.dumps({"prompts": prompts, "split": "dev"}))
    assert shown in write_report(run_dir).read_text()


@pytest.mark.parametrize("transfer", ["tq-direct", "tq-indirect", "soft"])
def test_each_transfer_row_gets_its_paired_difference_against_every_other_method(tmp_path, transfer):
    append_jsonl(tmp_path / "records.jsonl", [
        *(record(transfer, i, f"Prompt {i}.", i + 0.5) for i in range(4)),
        *(record("cd", i, f"Prompt {i}.", float(i)) for i in range(4)),
    ])
    markdown = write_report(tmp_path).read_text()
    section = markdown.split("## Transfer Q* against the others")[1].split("\n## ")[0]
    assert f"| method | {transfer} − |" in section
    assert "| cd | 0.500 [0.500, 0.500] · 1.00 |" in section and f"| {transfer} | – |" in section


def test_a_run_without_a_transfer_method_has_no_transfer_table(run_dir):
    assert "## Transfer Q* against the others" not in write_report(run_dir).read_text()


def test_a_beta_sweep_of_soft_transfer_is_drawn_on_the_reward_kl_plot(tmp_path):
    def swept(beta: float, reward: float) -> list[dict]:
        rows = [record(f"soft[beta={beta}]", i, f"Prompt {i}.", reward, kl=1 / beta) for i in range(2)]
        for row in rows:
            row["config"] = {**row["config"], "decode": {"method": "soft"},
                             "sweep": {"of": "soft", "option": "beta", "value": beta}}
        return rows

    append_jsonl(tmp_path / "records.jsonl", [*swept(0.3, 1.0), *swept(0.03, 2.0)])
    markdown = write_report(tmp_path).read_text()
    assert (tmp_path / "reward_vs_kl.png").stat().st_size > 1000
    assert "Reward against KL as alpha or beta varies" in markdown
