"""``tqstar eval``: run several decoding methods over a prompt set, one JSON Lines record per
(method, prompt), resumable at any moment.

Prompts are cut into fixed chunks of ``batch_size``; a chunk is the unit of work, of seeding and of
writing. Its records are appended in one write, and on resume a chunk counts as done only when all
its records are on disk, so a ``kill -9`` costs at most the chunks in flight and a rerun reproduces
the same responses (the chunk's seed does not depend on what ran before it).

A chunk's traces go to traces.jsonl in one synced write *before* its records: a kill between the two
leaves traces whose records are missing, so the chunk is not done, and resuming drops those traces with
it and runs the chunk again. The other order could leave a done chunk without its traces, for good.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from ..jsonl import append_jsonl
from ..prompts import load_prompts
from .config import EvalConfig, method_specs
from .judge import judge_run
from .rundir import claim_run_dir, keep_complete_chunks, records_path, traces_path
from .workers import Chunk, run_chunks


def run_eval(config: EvalConfig, progress: bool = True) -> Path:
    """Run every method over the prompts, continuing a run directory; return the directory."""
    specs = method_specs(config)
    prompts = load_prompts(config.prompts, config.split, config.prompt_field, config.limit)
    claim_run_dir(config, specs)
    run_dir = Path(config.output)
    chunks = [Chunk(spec, start, prompts[start:start + config.batch_size], traces=not config.no_traces,
                    judges=tuple(config.judge_rewards)) for spec in specs
              for start in range(0, len(prompts), config.batch_size)]
    done = keep_complete_chunks(run_dir, {(c.spec.label, c.start): list(range(c.start, c.start + len(c.prompts)))
                                           for c in chunks})
    todo = [c for c in chunks if (c.spec.label, c.start) not in done]
    for output in _progress(run_chunks(todo, config), progress, len(todo), len(chunks)):
        if output.traces:  # first: see the module's docstring
            append_jsonl(traces_path(run_dir), output.traces)
        append_jsonl(records_path(run_dir), output.records)
    if config.judge_url:
        judge_run(config, specs)
    return run_dir


def _progress(items: Iterable, enabled: bool, todo: int, total: int):
    if not enabled:
        return items
    return tqdm(items, total=todo, desc=f"eval chunks ({total - todo} of {total} already done)", unit="chunk")
