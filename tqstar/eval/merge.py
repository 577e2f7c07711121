"""``tqstar report RUN_DIR RUN_DIR ... --output DIR``: one report over several eval runs, so that methods run
at different times are paired prompt by prompt (the win-tie rates and the intervals of the differences) by
the same code as the methods of one run.

Runs may be paired only where a prompt index means the same prompt and a reward means the same thing: every
shared prompt index must hold the same prompt text, and the runs must agree on the target reward and the
response length. A label that more than one run uses is prefixed with its run's name (``test-n4/cd``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from ..jsonl import read_jsonl, rewrite_jsonl, write_json
from ..options import writable_dir
from .rundir import judge_path, read_records, read_traces, records_path, run_config, traces_path

#: What runs must agree on to be judged side by side.
SHARED_SETTINGS = ("reward", "max_new_tokens")


def merge_runs(run_dirs: list[str | Path], output: str | Path) -> Path:
    """Write into ``output`` a run directory holding the records, traces and LLM-judge verdicts of
    ``run_dirs`` under one set of labels; return it."""
    runs = [Path(d) for d in run_dirs]
    _check_names(runs)
    out = writable_dir(output, "--output")
    _check_output(out, runs)
    records = {run: read_records(run) for run in runs}
    for run, rows in records.items():
        if not rows:
            raise ConfigError(f"{run} holds no eval records (records.jsonl). Run 'tqstar eval --output {run} ...' "
                              "first, or leave it out.")
    configs = {run: run_config(run) for run in runs}
    _check_settings(configs)
    _check_prompts(records)
    rename = _renamers(records)
    write_json(out / "config.json", _merged_config(configs, rename))
    rewrite_jsonl(records_path(out), [_relabelled(r, rename[run]) for run, rows in records.items() for r in rows])
    rewrite_jsonl(traces_path(out), [{**s, "method": rename[run](s["method"])} for run in runs
                                     for s in read_traces(run)])
    verdicts = [{**v, "method": rename[run](v.get("method")), "against": rename[run](v.get("against"))}
                for run in runs for v in read_jsonl(judge_path(run))]
    if verdicts:
        rewrite_jsonl(judge_path(out), verdicts)
    elif judge_path(out).is_file():
        judge_path(out).unlink()  # left by an earlier merge of runs that had verdicts
    return out


def _check_names(runs: list[Path]) -> None:
    if len(runs) < 2:
        raise ConfigError("--output merges several runs into one report: pass two or more RUN_DIRs, or drop "
                          "--output to report on one run in its own directory.")
    names = [run.resolve().name for run in runs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"run directories named {', '.join(twice)} are given twice; each run's name prefixes "
                          "its labels, so pass each run once (or rename one of two folders of the same name).")


def _check_output(out: Path, runs: list[Path]) -> None:
    """Refuse to write over an eval run (its records would be lost); a merge of these runs is redone."""
    if out.resolve() in {run.resolve() for run in runs}:
        raise ConfigError(f"--output {str(out)!r} is one of the runs being merged. Pass a new directory.")
    config = run_config(out)
    if records_path(out).is_file() and "merged_from" not in config:
        raise ConfigError(f"--output {str(out)!r} holds an eval run of its own, which a merge would overwrite. "
                          "Pass a new directory.")


def _check_settings(configs: dict[Path, dict]) -> None:
    for name in SHARED_SETTINGS:
        values = {run: config.get(name) for run, config in configs.items()}
        if len({json.dumps(v) for v in values.values()}) > 1:
            shown = ", ".join(f"{run.name}: {v!r}" for run, v in values.items())
            raise ConfigError(f"the runs differ in {name} ({shown}); their rewards cannot be compared prompt by "
                              f"prompt. Merge runs made with the same {name}.")


def _check_prompts(records: dict[Path, list[dict]]) -> None:
    seen: dict[int, tuple[str, Path]] = {}
    for run, rows in records.items():
        for row in rows:
            first = seen.setdefault(row["prompt_index"], (row["prompt"], run))
            if first[0] != row["prompt"]:
                raise ConfigError(f"prompt {row['prompt_index']} of {run} is not prompt {row['prompt_index']} of "
                                  f"{first[1]} ({row['prompt'][:40]!r} vs {first[0][:40]!r}): the runs read "
                                  "different prompt sets. Merge runs of the same prompts and split.")


def _renamers(records: dict[Path, list[dict]]) -> dict[Path, Callable[[str], str]]:
    """run → (label → its label in the merge): prefixed with the run's name where two runs use it."""
    labels = {run: {r["method"] for r in rows} for run, rows in records.items()}
    shared = {label for run in labels for label in labels[run]
              if sum(label in others for others in labels.values()) > 1}

    def renamer(prefix: str) -> Callable[[str], str]:
        return lambda label: f"{prefix}/{label}" if label in shared else label
    return {run: renamer(run.resolve().name) for run in records}


def _relabelled(record: dict, rename) -> dict:
    sweep = record["config"].get("sweep")
    config = {**record["config"], "sweep": {**sweep, "of": rename(sweep["of"])}} if sweep else record["config"]
    return {**record, "method": rename(record["method"]), "config": config}


def _merged_config(configs: dict[Path, dict], rename: dict[Path, Callable[[str], str]]) -> dict:
    first = next(iter(configs.values()))
    methods = {rename[run](label): method for run, config in configs.items()
               for label, method in (config.get("methods") or {}).items()}
    return {"merged_from": [str(run) for run in configs], "prompts": first.get("prompts"),
            "split": first.get("split"), "reference": first.get("reference"),
            **{name: first.get(name) for name in SHARED_SETTINGS}, "methods": methods}
