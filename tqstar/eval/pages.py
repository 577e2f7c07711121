"""The report's page per prompt: every method's response to it side by side, each with its per-token trace
in the token inspector (the page ``tqstar trace view`` writes), at ``traces/prompt-NNNN.html`` beside
report.html; and the report's table that links each prompt to its page."""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path

from ..audit.page import write_page
from ..audit.protocol import Answer
from .rundir import read_traces, run_config

PAGES_DIR = "traces"
PREVIEW_CHARS = 80
#: The only link the report's HTML renders from a table cell: its own pages, never a link out of text.
_PAGE_LINK = re.compile(rf"\[([^\[\]]+)\]\(({PAGES_DIR}/prompt-\d+\.html)\)")


def page_name(prompt_index: int) -> str:
    return f"{PAGES_DIR}/prompt-{prompt_index:04d}.html"


def write_prompt_pages(run_dir: Path, records: list[dict]) -> dict[int, str]:
    """Write one page per prompt of ``records``; return prompt index → its page, relative to ``run_dir``."""
    steps: dict[tuple[str, int], list[dict]] = {}
    for step in read_traces(run_dir):
        steps.setdefault((step["method"], step["prompt_index"]), []).append(step)
    rank = {label: i for i, label in enumerate(run_config(run_dir).get("methods") or {})}
    by_prompt: dict[int, list[dict]] = {}
    for record in records:
        by_prompt.setdefault(record["prompt_index"], []).append(record)
    (run_dir / PAGES_DIR).mkdir(exist_ok=True)
    pages = {}
    for index, rows in sorted(by_prompt.items()):
        rows = sorted(rows, key=lambda r: (rank.get(r["method"], len(rank)), r["method"]))
        answers = [_answer(r, steps.get((r["method"], index), [])) for r in rows]
        pages[index] = page_name(index)
        write_page(answers, run_dir / pages[index], f"{run_dir.name}: prompt {index}", home="../report.html")
    return pages


def _answer(record: dict, steps: list[dict]) -> Answer:
    return Answer(method=record["method"], steps=sorted(steps, key=lambda s: s.get("position", 0)),
                  text=record["response"], prompt=record["prompt"], reward=record["reward"],
                  seconds=record.get("seconds"), forward_tokens=record.get("forward_tokens"),
                  options=record["config"], source=f"records.jsonl, prompt {record['prompt_index']}")


def prompts_table(records: list[dict], pages: dict[int, str]) -> list[str]:
    """The report's section linking each prompt to its page (Markdown lines)."""
    texts = {r["prompt_index"]: r["prompt"] for r in records}
    answered = Counter(r["prompt_index"] for r in records)
    traced = "with its per-token trace where the method keeps one (value-guided methods; not with --no-traces)"
    lines = ["## Responses by prompt", "",
             f"Each prompt's page shows every method's response side by side, {traced}.", "",
             "| prompt | responses |", "|---|---:|"]
    for index, page in pages.items():
        lines.append(f"| [{index}]({page}) {_preview(texts[index])} | {answered[index]} |")
    return lines + [""]


def _preview(text: str) -> str:
    """The prompt's start on one line, safe in a Markdown table cell (its page shows it exactly): a bar
    would split the cell, and brackets or angle brackets would read as a link or markup in report.md."""
    flat = " ".join(text.split())
    flat = flat if len(flat) <= PREVIEW_CHARS else flat[:PREVIEW_CHARS - 1] + "…"
    return flat.translate(str.maketrans({"|": "¦", "[": "⟦", "]": "⟧", "<": "‹", ">": "›", "`": "'"}))


def link_cell_html(escaped: str) -> str:
    """A report table cell (already HTML-escaped) with a link to a prompt page rendered as one."""
    return _PAGE_LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', escaped)
