"""JSON and JSON Lines files that survive a kill: appends are single writes, reads stop at a torn last
line, rewrites and whole documents replace the file atomically. Used by align's pairs, eval's records and
the judge's verdicts, and by the run and metadata files of resumable commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable


def read_jsonl(path: Path) -> list[dict]:
    """Every complete record; a last line cut short by a kill is ignored."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # only the last line can be partial: every append is one write
    return records


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append records in one write and sync it: a kill leaves at most one torn tail."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, value) -> None:
    """Write one JSON document atomically: a kill leaves the old file or the new one, never half of one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2), encoding="utf-8")
    os.replace(partial, path)


def rewrite_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Replace the file with exactly these records (dropping any torn tail), atomically."""
    partial = path.with_suffix(".partial")
    partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    os.replace(partial, path)
