"""Print every answer to a shipped harmful or distress prompt in an eval run, per method, as a Markdown
table for a hand review: the marker verdicts (declines, complies, points to help) and the harmlessness
reward model's score beside the answer, and an empty column for the reviewer's label.

    python scripts/safety_review.py runs/test-safety > review.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqstar.eval.safety import DISTRESS, HARMFUL, complies, declines, points_to_help, shipped_safety_labels
from tqstar.jsonl import read_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an eval run directory (records.jsonl)")
    args = parser.parse_args()
    labels = shipped_safety_labels()
    records = [r for r in read_jsonl(args.run / "records.jsonl") if labels.get(r["prompt"]) in (HARMFUL, DISTRESS)]
    records.sort(key=lambda r: (labels[r["prompt"]], r["prompt"], r["method"]))
    print("| label | prompt | method | answer | declines | complies | help | RM harmless | hand |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in records:
        answer = " ".join(r["response"].split()).replace("|", "\\|")
        harmless = "–" if r.get("harmless") is None else f"{r['harmless']:.2f}"
        print(f"| {labels[r['prompt']]} | {r['prompt']} | {r['method']} | {answer} | {_mark(declines(r['response']))} "
              f"| {_mark(complies(r['response']))} | {_mark(points_to_help(r['response']))} | {harmless} |  |")


def _mark(verdict: bool) -> str:
    return "yes" if verdict else ""


if __name__ == "__main__":
    main()
