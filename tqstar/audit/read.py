"""Answers with their traces, read from what tqstar writes: a ``tqstar generate --trace`` file (one line per
token), an audit log or one of its files (one record per answer), or an API answer saved as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import read_jsonl
from .log import read_audit
from .protocol import Answer

TRACE_STEP = ("position", "candidates", "probabilities", "chosen")


def read_answers(path: str | Path) -> list[Answer]:
    """Every answer in ``path``, in file order."""
    path = Path(path)
    if path.is_dir():
        return [_from_audit(r, f"{path.name} record {i}") for i, r in enumerate(read_audit(path))]
    if not path.is_file():
        raise ConfigError(f"{path} does not exist. Name a file written by 'tqstar generate --trace', an audit log "
                          "(tqstar serve --audit-log DIR) or one of its files.")
    records = _records(path)
    if records and all(_is_step(r) for r in records):
        return _from_trace(records, path.name)
    answers = []
    for i, record in enumerate(records):
        if "choices" in record and isinstance(record.get("tqstar"), dict):
            answers.append(_from_api(record, f"{path.name} answer {i}"))
        elif "answer" in record and "method" in record:
            answers.append(_from_audit(record, f"{path.name} record {i}"))
        else:
            raise ConfigError(f"{path} record {i + 1} is neither a trace step, an audit record nor an API answer "
                              f"(its fields: {', '.join(sorted(record)[:8])}). Pass a --trace file, an audit log or "
                              "a saved answer with \"trace\": true.")
    return answers


def select(answers: list[Answer], which: str | None) -> list[Answer]:
    """The answer whose id is ``which``, or the one at that index (negative from the end); all when None."""
    if which is None:
        return answers
    found = [a for a in answers if a.id == which]
    if found:
        return found
    try:
        return [answers[int(which)]]
    except (ValueError, IndexError):
        raise ConfigError(f"--record {which!r} names no answer: give an answer id (e.g. chatcmpl-…) or an index "
                          f"from 0 to {len(answers) - 1} (negative counts from the end).") from None


def _records(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; tqstar writes traces and audit logs as UTF-8 JSON.") from None
    try:  # a whole JSON document: one saved API answer
        document = json.loads(text)
        records = document if isinstance(document, list) else [document]
    except json.JSONDecodeError:
        records = read_jsonl(path)  # JSON Lines, a torn last line skipped
    if not records or not all(isinstance(r, dict) for r in records):
        raise ConfigError(f"{path} holds no JSON objects. Pass a --trace file, an audit log or a saved answer.")
    return records


def _is_step(record: dict) -> bool:
    return all(name in record for name in TRACE_STEP)


def _from_trace(steps: list[dict], name: str) -> list[Answer]:
    """``--trace`` lines grouped into answers: one per (method, prompt_index), in order of first appearance."""
    answers: dict[tuple, Answer] = {}
    for step in steps:
        key = (step.get("method", "?"), step.get("prompt_index", 0))
        if key not in answers:
            answers[key] = Answer(method=key[0], source=f"{name}, prompt {key[1]}")
        answers[key].steps.append(step)
    return list(answers.values())


def _from_audit(record: dict, source: str) -> Answer:
    return Answer(method=record.get("method", "?"), steps=record.get("trace") or [], text=record.get("answer"),
                  prompt=record.get("prompt"), reward=record.get("reward"), seconds=record.get("seconds"),
                  forward_tokens=record.get("forward_tokens"), options=record.get("options"), id=record.get("id"),
                  time=record.get("time"), source=source)


def _from_api(answer: dict, source: str) -> Answer:
    evidence, choice = answer["tqstar"], (answer.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content", choice.get("text"))
    return Answer(method=evidence.get("method", "?"), steps=evidence.get("trace") or [], text=text,
                  reward=evidence.get("reward"), seconds=evidence.get("seconds"),
                  forward_tokens=evidence.get("forward_tokens"), id=answer.get("id"), source=source)
