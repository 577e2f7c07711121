"""The run directory of ``tqstar eval``: config.json (what the run is), records.jsonl (one record per
method and prompt), judge.jsonl. Resuming keeps whole chunks only."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import read_jsonl, rewrite_jsonl, write_json
from .config import EvalConfig, MethodSpec


def records_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "records.jsonl"


def read_records(run_dir: str | Path) -> list[dict]:
    return read_jsonl(records_path(run_dir))


def claim_run_dir(config: EvalConfig, specs: list[MethodSpec]) -> None:
    """Start ``config.output`` with its config.json, or check that it holds the same run."""
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    identity = {**config.run_identity, "methods": {s.label: s.as_record() for s in specs}}
    identity = json.loads(json.dumps(identity))  # tuples and lists compare alike once serialised
    if path.is_file():
        started = json.loads(path.read_text())
        if started != identity:
            changed = sorted(k for k in set(started) | set(identity) if started.get(k) != identity.get(k))
            raise ConfigError(f"{out} holds a run started with other options ({', '.join(changed)}). Repeat the "
                              "original command to resume it, or pass a new --output.")
        return
    write_json(path, identity)


def keep_complete_chunks(run_dir: Path, chunks: dict[tuple[str, int], list[int]]) -> set[tuple[str, int]]:
    """Rewrite records.jsonl with whole chunks only (no torn tail, no duplicate); return the done chunks."""
    records = read_records(run_dir)
    have = {(r["method"], r["prompt_index"]) for r in records}
    done = {key for key, indices in chunks.items() if all((key[0], i) in have for i in indices)}
    chunk_of = {(label, i): (label, start) for (label, start), indices in chunks.items() for i in indices}
    kept = [r for r in records if chunk_of.get((r["method"], r["prompt_index"])) in done]
    seen, unique = set(), []
    for r in kept:
        key = (r["method"], r["prompt_index"])
        if key not in seen:
            seen.add(key)
            unique.append(r)
    if records_path(run_dir).is_file():  # rewritten even when nothing was dropped: it may end in a torn line
        rewrite_jsonl(records_path(run_dir), unique)
    return done


def judge_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "judge.jsonl"


def run_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
