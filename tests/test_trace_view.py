"""`tqstar trace view`: a --trace file, an audit log or a saved API answer becomes one self-contained page
whose data block holds the traces exactly and cannot be broken out of by the text it shows. (The page itself
is checked in a real browser by tests/test_browser.py.)"""

import json
import re

import pytest

from tqstar.audit.page import json_for_script, page_html, static_text
from tqstar.audit.protocol import Answer
from tqstar.audit.read import read_answers, select
from tqstar.cli import main
from tqstar.decoding import DecodeConfig, Roles, build_decoder
from tqstar.decoding.decoder import write_trace
from tqstar.errors import ConfigError
from tqstar.models import load_language_model
from tqstar.rewards import load_reward

INJECTION = '</script><script>alert(1)</script><img src=x onerror="alert(2)">'


@pytest.fixture(scope="module")
def results(tiny_model_dir):
    tiny = load_language_model(str(tiny_model_dir))
    sentiment = load_reward("sentiment")
    roles = Roles(tiny, tiny, sentiment, baseline_reward=sentiment)
    return [build_decoder(DecodeConfig(method=method, top_k=3, horizon=2, max_new_tokens=4), roles).generate(
        ["Say something kind.", INJECTION])[i] for method in ("tq-direct", "tq-indirect") for i in (0, 1)]


@pytest.fixture
def trace_file(results, tmp_path):
    path = tmp_path / "trace.jsonl"
    write_trace(results, path, num_prompts=2)
    return path


def embedded_data(page: str) -> dict:
    block = re.search(r"<script type='application/json' id='tqstar-answers'>(.*?)</script>", page, re.S).group(1)
    return json.loads(block)


def test_a_trace_file_groups_its_steps_into_one_answer_per_method_and_prompt(trace_file, results):
    answers = read_answers(trace_file)
    assert [(a.method, len(a.steps)) for a in answers] == [(r.method, len(r.trace)) for r in results]
    expected = json.loads(trace_file.read_text().splitlines()[0])
    assert answers[0].steps[0] == expected


def test_trace_view_writes_a_page_holding_every_step_exactly(trace_file, tmp_path, capsys):
    out = tmp_path / "trace.html"
    assert main(["trace", "view", str(trace_file), "-o", str(out)]) == 0
    assert "4 answer(s)" in capsys.readouterr().out
    page = out.read_text()
    groups = embedded_data(page)["groups"]
    assert [[a["method"] for a in g["answers"]] for g in groups] == [["tq-direct", "tq-indirect"]] * 2  # side by side
    steps = sorted((s for g in groups for a in g["answers"] for s in a["steps"]), key=json.dumps)
    assert steps == sorted((json.loads(line) for line in trace_file.read_text().splitlines()), key=json.dumps)
    assert "http://" not in page and "https://" not in page  # nothing fetched: no CDN, no font


def test_text_in_the_data_cannot_close_its_script_block():
    answer = Answer("tq-direct", text=INJECTION, prompt=INJECTION, steps=[])
    page = page_html([answer], INJECTION)
    assert page.count("</script>") == 2 and "<img" not in page  # the data block's and the script's own
    assert embedded_data(page)["groups"][0]["prompt"] == INJECTION
    assert json.loads(json_for_script("\u2028</script>&")) == "\u2028</script>&"


def test_the_page_allows_only_its_own_script_by_hash():
    policy = re.search(r'Content-Security-Policy\' content="([^"]+)"', page_html([], "t")).group(1)
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "unsafe" not in policy


def test_no_script_writes_markup():
    """Model and user text reach the page through textContent only."""
    for name in ("inspector.js", "view.js"):
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", static_text(name)), name


def test_an_audit_record_and_a_saved_answer_open_by_id_or_index(tmp_path):
    step = {"position": 0, "candidates": [5, 6], "candidate_texts": ["a", "b"], "prior_logprobs": [-0.1, -2.0],
            "values": [0.0, 1.0], "probabilities": [0.4, 0.6], "chosen": 6, "chosen_text": "b"}
    audit = tmp_path / "audit.jsonl"
    audit.write_text("".join(json.dumps({"id": f"chatcmpl-{i}", "method": "args", "prompt": "p", "answer": "b",
                                         "trace": [step]}) + "\n" for i in range(3)) + '{"id": "torn')
    assert [a.id for a in select(read_answers(audit), "chatcmpl-1")] == ["chatcmpl-1"]
    assert [a.id for a in select(read_answers(tmp_path), "-1")] == ["chatcmpl-2"]
    saved = tmp_path / "answer.json"
    saved.write_text(json.dumps({"id": "chatcmpl-x", "choices": [{"message": {"content": "b"}}],
                                 "tqstar": {"method": "args", "reward": 0.5, "trace": [step]}}))
    answer, = read_answers(saved)
    assert (answer.id, answer.text, answer.reward, answer.steps) == ("chatcmpl-x", "b", 0.5, [step])
    with pytest.raises(ConfigError, match="--record '7' names no answer"):
        select(read_answers(audit), "7")


def test_a_file_that_is_not_a_trace_is_refused_naming_what_to_pass(tmp_path, capsys):
    other = tmp_path / "other.jsonl"
    other.write_text('{"name": "x"}\n')
    assert main(["trace", "view", str(other), "-o", str(tmp_path / "t.html")]) == 2
    assert "neither a trace step, an audit record nor an API answer" in capsys.readouterr().err
