"""Bad input on the command line ends in one line on stderr and exit status 2, never a traceback: each
case here once crashed or went wrong silently. Run in-process (``tqstar.cli.main``), so they are fast."""

import json
import os
from pathlib import Path

import pytest

from tqstar.cli import main
from tqstar.errors import ConfigError
from tqstar.serve import ServeConfig


@pytest.fixture(scope="module")
def tiny_flags(tiny_model_dir):
    return ["--reference", str(tiny_model_dir), "--reward", "sentiment", "--quiet"]


def refused(capsys, argv, message):
    """Run ``tqstar argv``; it must exit 2 with one stderr line holding ``message``."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse exits itself
        status = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("tqstar") and message in lines[0], err
    return lines[0]


def test_a_prompt_that_is_not_utf8_is_refused(capsys, tiny_flags):
    # Python hands bytes that are not UTF-8 on the command line over as lone surrogates
    refused(capsys, ["generate", b"\xff\xfehi".decode("utf-8", "surrogateescape"), *tiny_flags],
            "The prompt is not valid UTF-8 text")


@pytest.mark.parametrize("content, message", [("[1, 2]", "holds a JSON list"),
                                              ('{"top_k": 2.5}', "top_k must be a whole number"),
                                              ('{"horizon": 2.7}', "horizon must be a whole number")])
def test_a_config_file_of_the_wrong_shape_is_refused(capsys, tiny_flags, tmp_path, content, message):
    path = tmp_path / "options.json"
    path.write_text(content)
    refused(capsys, ["generate", "Hi", *tiny_flags, "--config", path], message)


@pytest.mark.parametrize("flag, value", [("--top-k", 10**9), ("--best-of", 10**6), ("--num-rollouts", 10**6),
                                         ("--horizon", 10**6), ("--max-new-tokens", 10**6),
                                         ("--batch-size", 10**6)])
def test_size_flags_beyond_their_bound_are_refused_before_any_model_loads(capsys, flag, value):
    name = flag[2:].replace("-", "_")
    refused(capsys, ["generate", "Hi", "--reference", "./not-loaded", flag, value], f"{name} must be ≤")


def test_an_argparse_error_is_one_line_pointing_at_help(capsys):
    line = refused(capsys, ["generate", "Hi", "--top-k", "many"], "top_k must be a number")
    assert line.endswith("See 'tqstar generate --help'.")


def test_a_trace_file_that_cannot_be_written_is_refused_before_decoding(capsys, tiny_flags, tmp_path):
    refused(capsys, ["generate", "Hi", *tiny_flags, "--trace", tmp_path / "missing" / "trace.jsonl"],
            "does not exist")
    refused(capsys, ["generate", "Hi", *tiny_flags, "--trace", tmp_path], "is a directory")


def test_an_implicit_baseline_reward_without_a_baseline_is_refused_even_with_beta(capsys, tiny_flags):
    refused(capsys, ["generate", "Hi", *tiny_flags, "--method", "tq-indirect", "--baseline-reward", "implicit",
                     "--beta", "0.1"], "the baseline is the reference itself")


@pytest.fixture
def eval_flags(tiny_model_dir):
    return ["eval", "--reference", tiny_model_dir, "--reward", "sentiment", "--quiet", "--max-new-tokens", 1,
            "--limit", 1, "--methods", "greedy"]


def test_eval_output_that_is_a_file_or_cannot_be_created_is_refused(capsys, eval_flags, tmp_path):
    (tmp_path / "file").write_text("")
    refused(capsys, [*eval_flags, "--output", tmp_path / "file"], "is a file, not a directory")
    refused(capsys, [*eval_flags, "--output", tmp_path / "file" / "run"], "cannot be created")


def test_an_existing_directory_that_cannot_be_written_is_refused_at_start(capsys, eval_flags, tmp_path,
                                                                          monkeypatch):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != read_only and access(p, mode))
    refused(capsys, [*eval_flags, "--output", read_only], "is not writable")
    with pytest.raises(ConfigError, match="--audit-log .* is not writable"):
        ServeConfig(audit_log=str(read_only))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only directories")
def test_a_read_only_output_directory_is_refused_at_start(capsys, eval_flags, tmp_path):
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    refused(capsys, [*eval_flags, "--output", read_only], "is not writable")


@pytest.mark.parametrize("content, message", [(b'{"prompt": "\xff hi"}\n', "is not UTF-8 text"),
                                              (b'{"prompt": "hi \\ud800"}\n', "is not valid UTF-8 text")])
def test_eval_prompts_that_are_not_text_are_refused(capsys, eval_flags, tmp_path, content, message):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(content)
    refused(capsys, [*eval_flags, "--prompts", prompts, "--output", tmp_path / "run"], message)


@pytest.mark.parametrize("method, message", [("args:top_k=2.5", "top_k must be a whole number"),
                                             ("args:alpha=nan", "alpha must be a finite number"),
                                             ("args:top_k=1000000", "top_k must be ≤ 256")])
def test_eval_method_strings_with_bad_numbers_are_refused_and_write_nothing(capsys, tiny_model_dir, tmp_path,
                                                                            method, message):
    refused(capsys, ["eval", "--reference", tiny_model_dir, "--methods", method, "--output", tmp_path / "run"],
            message)
    assert not (tmp_path / "run").exists()


def test_a_judge_reward_that_cannot_load_is_refused_before_anything_runs(capsys, eval_flags, tmp_path):
    refused(capsys, [*eval_flags, "--judge-reward", "nontoxic", "--judge-reward", "relevance+0.5*sentimental",
                     "--output", tmp_path / "run"], "--judge-reward 'relevance+0.5*sentimental': Unknown reward 'sentimental'")
    assert not (tmp_path / "run").exists()


GOOD_RECORD = {"method": "greedy", "prompt_index": 0, "prompt": "Hi", "response": "Hello", "reward": 0.5,
               "config": {"sweep": None}}


@pytest.mark.parametrize("record, message", [
    ({k: v for k, v in GOOD_RECORD.items() if k != "reward"}, "line 1: the record has no 'reward'"),
    ({**GOOD_RECORD, "prompt_index": "first"}, "'prompt_index' must be an index"),
    ({**GOOD_RECORD, "kl": "big"}, "'kl' must be a finite number or null"),
    ({**GOOD_RECORD, "config": {"sweep": 3}}, "config.sweep must be null or an object"),
    ({**GOOD_RECORD, "repeats": "often"}, "'repeats' must be true, false or null"),
    ({**GOOD_RECORD, "judged": {"nontoxic": "high"}}, "'judged' must be an object of finite numbers or null"),
    ({**GOOD_RECORD, "fluency_reference": "fluent"}, "'fluency_reference' must be a finite number or null"),
    ([1, 2], "a record must be a JSON object"),
])
def test_report_on_incomplete_records_names_the_line_and_field(capsys, tmp_path, record, message):
    (tmp_path / "records.jsonl").write_text(json.dumps(record) + "\n")
    refused(capsys, ["report", tmp_path], message)


def test_report_on_records_that_are_not_utf8_is_refused(capsys, tmp_path):
    (tmp_path / "records.jsonl").write_bytes(b'{"method": "\xff"}\n')
    refused(capsys, ["report", tmp_path], "is not UTF-8 JSON Lines")
