"""JSON and JSON Lines files that survive a kill: appends are synced and a failed one is cut off, reads
stop at a torn last line, rewrites and whole documents replace the file atomically. Used by align's pairs,
eval's records and the judge's verdicts, and by the run and metadata files of resumable commands. JSON has
no NaN or infinity, so every writer turns them into null (``finite``) rather than write what a JSON reader refuses."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable

from .errors import ConfigError


def read_jsonl(path: Path) -> list[dict]:
    """Every complete record; a last line cut short by a kill is ignored."""
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 JSON Lines ({exc.reason} at byte {exc.start}); it was not "
                          "written by tqstar. Restore it or start a new output.") from None
    records = []
    # "\n" only: str.splitlines also breaks at U+2028, U+2029, U+0085 and others, which a string may hold.
    for line in text.split("\n"):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # only the last line can be partial: appends are sequential and synced
    return records


def parse_object_line(line: str, where: str, fields: str) -> dict:
    """One line of a hand-made JSON Lines file, which must hold an object with ``fields`` (named in the
    message); ``ConfigError`` naming ``where`` (file and line) otherwise."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not JSON ({exc.msg}). Write one JSON object per line.") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{where} is not a JSON object. Write one object with {fields} per line.")
    return record


def encode_lines(records: Iterable[dict]) -> bytes:
    """Records as the JSON Lines bytes ``append_jsonl`` writes."""
    return "".join(dumps(r) + "\n" for r in records).encode("utf-8")


def append_jsonl(path: Path, records: Iterable[dict] | bytes) -> None:
    """Append records (or their ``encode_lines`` bytes) and sync them: a kill leaves at most one torn tail,
    and a failed append (disk full, an I/O error) is cut off again before the error is raised, so it leaves
    nothing behind."""
    data = memoryview(records if isinstance(records, bytes) else encode_lines(records))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            while data:  # os.write may write only part (a signal, a nearly full disk)
                data = data[os.write(fd, data):]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def write_json(path: Path, value) -> None:
    """Write one JSON document atomically: a kill leaves the old file or the new one, never half of one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(finite(value), indent=2, allow_nan=False), encoding="utf-8")
    os.replace(partial, path)


def rewrite_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Replace the file with exactly these records (dropping any torn tail), atomically."""
    partial = path.with_suffix(".partial")
    partial.write_text("".join(dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(partial, path)


#: Characters left raw by ``ensure_ascii=False`` that line-splitting readers (Python's str.splitlines,
#: JavaScript's older parsers) take for line ends; escaped, a record stays one line for every reader.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"})


def dumps(record) -> str:
    """One JSON Lines record: UTF-8 as written except U+2028, U+2029 and U+0085 (escaped), NaN and ±inf as
    null. Those three can only occur inside JSON strings, where the escape reads back as the same text."""
    return json.dumps(finite(record), ensure_ascii=False, allow_nan=False).translate(_LINE_BREAKS)


def finite(value):
    """``value`` with every NaN and ±inf float replaced by null (a −inf log-prob: a token a model did not
    rank; an undefined metric)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value
