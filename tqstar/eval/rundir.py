"""The run directory of ``tqstar eval``: config.json (what the run is), records.jsonl (one record per
method and prompt), traces.jsonl (their per-token traces, one line per token as ``--trace`` writes them),
judge.jsonl. Resuming keeps whole chunks only, in both files."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..decoding.config import DecodeConfig
from ..errors import ConfigError
from ..jsonl import read_jsonl, rewrite_jsonl, write_json
from ..options import defaults, writable_dir
from .config import EvalConfig, MethodSpec


def records_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "records.jsonl"


def traces_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "traces.jsonl"


#: What every record must hold for the report and for resuming: field → (accepted types, what to write).
RECORD_FIELDS = {"method": (str, "a label"), "prompt_index": (int, "an index ≥ 0"), "prompt": (str, "text"),
                 "response": (str, "text"), "reward": ((int, float), "a finite number"), "config": (dict, "an object")}
#: Metrics a record may lack (null), but not hold as anything but a finite number.
OPTIONAL_NUMBERS = ("kl", "diversity", "coherence", "tokens", "seconds", "forward_tokens", "harmless",
                    "fluency_reference", "fluency_baseline")
#: The guard's flags (true/false) and its scores by name ({name: number}), which records before it lack.
OPTIONAL_FLAGS, OPTIONAL_SCORES = ("ended_early", "repeats"), ("terms", "judged")


def read_records(run_dir: str | Path) -> list[dict]:
    """The run's records, each checked: a record edited by hand or written by another tool is named with
    its line, rather than failing somewhere in the report."""
    path = records_path(run_dir)
    records = read_jsonl(path)
    for line, record in enumerate(records, 1):
        problem = record_problem(record)
        if problem:
            raise ConfigError(f"{path} line {line}: {problem}. Delete that line and rerun 'tqstar eval' with the "
                              "same options to redo it, or pass a run directory written by 'tqstar eval'.")
    return records


def record_problem(record) -> str | None:
    """Why ``record`` is not an eval record, or None."""
    if not isinstance(record, dict):
        return f"a record must be a JSON object, not {type(record).__name__}"
    for name, (kinds, what) in RECORD_FIELDS.items():
        value = record.get(name)
        if value is None:
            return f"the record has no {name!r}"
        if isinstance(value, bool) or not isinstance(value, kinds) or not _finite(value):
            return f"{name!r} must be {what}, got {value!r}"
    if record["prompt_index"] < 0:
        return f"'prompt_index' must be an index ≥ 0, got {record['prompt_index']}"
    for name in OPTIONAL_NUMBERS:
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value)):
            return f"{name!r} must be a finite number or null, got {value!r}"
    for name in OPTIONAL_FLAGS:
        if record.get(name) not in (None, True, False):
            return f"{name!r} must be true, false or null, got {record[name]!r}"
    for name in OPTIONAL_SCORES:
        value = record.get(name)
        numbers = isinstance(value, dict) and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                and _finite(v)) for v in value.values())
        if value is not None and not numbers:
            return f"{name!r} must be an object of finite numbers or null, got {value!r}"
    sweep = record["config"].get("sweep")
    if sweep is not None and not (isinstance(sweep, dict) and {"of", "option", "value"} <= set(sweep)):
        return f"config.sweep must be null or an object with of, option and value, got {sweep!r}"
    return None


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def claim_run_dir(config: EvalConfig, specs: list[MethodSpec]) -> None:
    """Start ``config.output`` with its config.json, or check that it holds the same run."""
    out = writable_dir(config.output, "--output")
    path = out / "config.json"
    identity = {**config.run_identity, "methods": {s.label: s.as_record() for s in specs}}
    identity = json.loads(json.dumps(identity))  # tuples and lists compare alike once serialised
    if path.is_file():
        started = _with_new_defaults(json.loads(path.read_text()), identity)
        if started != identity:
            changed = sorted(k for k in set(started) | set(identity) if started.get(k) != identity.get(k))
            raise ConfigError(f"{out} holds a run started with other options ({', '.join(changed)}). Repeat the "
                              "original command to resume it, or pass a new --output.")
        return
    write_json(path, identity)


def _with_new_defaults(started: dict, identity: dict) -> dict:
    """A run's config.json with the run and decode options added since it started (e.g. judge_rewards,
    block_size) at their defaults: those reproduce what it ran, so such a run still resumes."""
    started = {**{k: v for k, v in defaults(EvalConfig).items() if k in identity}, **started}
    for method in (started.get("methods") or {}).values():
        if isinstance(method, dict) and isinstance(method.get("decode"), dict):
            method["decode"] = {**defaults(DecodeConfig), **method["decode"]}
    return started


def keep_complete_chunks(run_dir: Path, chunks: dict[tuple[str, int], list[int]]) -> set[tuple[str, int]]:
    """Rewrite records.jsonl and traces.jsonl with whole chunks only (no torn tail, no duplicate); return the
    done chunks. A chunk is done when all its records are on disk; its traces were synced before them
    (``run_eval``), so what a kill leaves is traces without records, which this drops with their chunk."""
    records = read_records(run_dir)
    have = {(r["method"], r["prompt_index"]) for r in records}
    done = {key for key, indices in chunks.items() if all((key[0], i) in have for i in indices)}
    chunk_of = {(label, i): (label, start) for (label, start), indices in chunks.items() for i in indices}

    def kept(rows: list[dict], key) -> list[dict]:
        seen, unique = set(), []
        for row in rows:
            if chunk_of.get((row.get("method"), row.get("prompt_index"))) in done and key(row) not in seen:
                seen.add(key(row))
                unique.append(row)
        return unique

    # Both are rewritten even when nothing was dropped: either may end in a torn line.
    if records_path(run_dir).is_file():
        rewrite_jsonl(records_path(run_dir), kept(records, lambda r: (r["method"], r["prompt_index"])))
    if traces_path(run_dir).is_file():
        rewrite_jsonl(traces_path(run_dir), kept(read_traces(run_dir), lambda s: (s["method"], s["prompt_index"],
                                                                                  s.get("position"))))
    return done


def read_traces(run_dir: str | Path) -> list[dict]:
    """The run's trace steps, each an object with its ``method`` and ``prompt_index`` (a run kept none: [])."""
    path = traces_path(run_dir)
    steps = read_jsonl(path)
    for line, step in enumerate(steps, 1):
        if not (isinstance(step, dict) and isinstance(step.get("method"), str)
                and isinstance(step.get("prompt_index"), int)):
            raise ConfigError(f"{path} line {line} is not a trace step with a method and a prompt_index. Delete "
                              "traces.jsonl to keep none, or pass a run directory written by 'tqstar eval'.")
    return steps


def judge_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "judge.jsonl"


def run_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}
