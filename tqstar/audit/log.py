"""The audit log of ``tqstar serve --audit-log DIR``: one JSON Lines record per served answer, appended
before the answer leaves the server, so a killed server loses nothing it has answered. A stream is the
exception in part: its tokens leave one by one before the record is written, so when the append fails the
stream ends with an ``audit_log_failed`` error event in place of its last chunk, and the client has the
text of an answer the log does not hold. A plain request whose append fails gets the 500 and no answer.

Each append is one synced write (``tqstar.jsonl.append_jsonl``): a kill leaves at most a torn last line.
Files are never rewritten: past ``max_bytes`` the current file is renamed ``audit-NNNNN.jsonl`` (the next
number) and a new one begins; a file found with a torn last line at start is rotated the same way, so every
file holds whole records followed by at most one torn line, which readers skip.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import append_jsonl, encode_lines, read_jsonl
from ..options import writable_dir
from .protocol import AUDIT_FILE

ROTATED = re.compile(r"audit-(\d{5,})\.jsonl")


class AuditLog:
    """Appends records to ``DIR/audit.jsonl``, rotating it by size. Safe to call from several threads."""

    def __init__(self, directory: str | Path, max_bytes: int):
        self.directory = writable_dir(directory, "--audit-log")
        self.path = self.directory / AUDIT_FILE
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        if _torn(self.path):  # a kill mid-write: close that file rather than append after its torn line
            self._rotate()

    def append(self, record: dict) -> None:
        """Write ``record`` and sync it; returns once it is on disk."""
        line = encode_lines([record])
        with self._lock:
            now = self.path.stat().st_size if self.path.is_file() else 0
            if now and now + len(line) > self.max_bytes:
                self._rotate()
            append_jsonl(self.path, line)

    def files(self) -> list[Path]:
        """Every file of the log, oldest first."""
        return audit_files(self.directory)

    def _rotate(self) -> None:
        numbers = [int(m.group(1)) for p in self.directory.iterdir() if (m := ROTATED.fullmatch(p.name))]
        os.replace(self.path, self.directory / f"audit-{max(numbers, default=0) + 1:05d}.jsonl")


def audit_files(directory: str | Path) -> list[Path]:
    """The log's files in ``directory``, oldest first: the rotated ones by number, then the current one."""
    directory = Path(directory)
    rotated = sorted((p for p in directory.iterdir() if ROTATED.fullmatch(p.name)),
                     key=lambda p: int(ROTATED.fullmatch(p.name).group(1)))
    current = directory / AUDIT_FILE
    return rotated + ([current] if current.is_file() else [])


def read_audit(path: str | Path) -> list[dict]:
    """Every whole record of an audit log: a directory (all its files, oldest first) or one file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist. Name an audit log directory (tqstar serve --audit-log DIR) or "
                          "one of its files.")
    files = audit_files(path) if path.is_dir() else [path]
    return [record for file in files for record in read_jsonl(file)]


def _torn(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1) != b"\n"
