"""How alike two value-guided methods of one eval run value the same candidates, from its traces.

A state is shared when both methods reached it: same prompt, same position, and the same tokens chosen
before it (greedy decoding from one prompt shares every state up to the first differing choice). At each
shared state both methods valued the same top-k candidates of the reference, so their values can be set
side by side: rank correlation, spread, the candidate each prefers, and whether the value overrode the
prior's first choice. Printed as a markdown table, one row per pair of methods:

    python scripts/compare_values.py runs/dev16-traces --pairs tq-direct:cd tq-direct-ext:cd
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from tqstar.eval.rundir import read_traces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an eval run directory with traces.jsonl")
    parser.add_argument("--pairs", nargs="+", required=True, metavar="A:B", help="method labels to compare")
    args = parser.parse_args()
    paths = paths_by_method(read_traces(args.run))
    print("| " + " | ".join(COLUMNS) + " |")
    print("|---" + "|---:" * (len(COLUMNS) - 1) + "|")
    for pair in args.pairs:
        first, _, second = pair.partition(":")
        missing = [label for label in (first, second) if label not in paths]
        if missing:
            raise SystemExit(f"{pair!r}: no traces for {', '.join(map(repr, missing))} in {args.run}. Methods with "
                             f"traces there: {', '.join(sorted(paths))}. Pass pairs as A:B.")
        print(table_row(pair, compare(shared_states(paths[first], paths[second]))))


COLUMNS = ("A vs B", "shared states", "prompts diverged (median position)", "Spearman ρ (median)", "top value same",
           "same choice", "A's value std", "B's value std", "A overrides prior", "B overrides prior",
           "A − B mean value")


def paths_by_method(steps: list[dict]) -> dict[str, dict[int, list[dict]]]:
    """method → prompt index → its trace steps in position order."""
    paths: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for step in steps:
        paths[step["method"]][step["prompt_index"]].append(step)
    for by_prompt in paths.values():
        for path in by_prompt.values():
            path.sort(key=lambda step: step["position"])
    return dict(paths)


def shared_states(first: dict[int, list[dict]], second: dict[int, list[dict]]) -> list[tuple[dict, dict]]:
    """The (step of A, step of B) pairs at states both reached: every position up to and including the
    first where their choices differ."""
    pairs = []
    for prompt_index in sorted(first.keys() & second.keys()):
        for step_a, step_b in zip(first[prompt_index], second[prompt_index]):
            if step_a["candidates"] != step_b["candidates"]:
                raise SystemExit(f"prompt {prompt_index} position {step_a['position']}: the methods valued "
                                 "different candidates; compare methods with the same prior and top-k.")
            pairs.append((step_a, step_b))
            if step_a["chosen"] != step_b["chosen"]:
                break
    return pairs


def compare(pairs: list[tuple[dict, dict]]) -> dict[str, float]:
    values_a = [np.asarray(a["values"]) for a, _ in pairs]
    values_b = [np.asarray(b["values"]) for _, b in pairs]
    # A state where either method valued every candidate alike has no ranking to correlate.
    rhos = [spearmanr(va, vb).statistic for va, vb in zip(values_a, values_b) if va.std() > 0 and vb.std() > 0]
    diverged = [a["position"] for a, b in pairs if a["chosen"] != b["chosen"]]
    return {"states": len(pairs), "diverged": len(diverged),
            "diverged_at": float(np.median(diverged)) if diverged else float("nan"),
            "rho": float(np.median(rhos)) if rhos else float("nan"),
            "same_top": float(np.mean([va.argmax() == vb.argmax() for va, vb in zip(values_a, values_b)])),
            "same_choice": float(np.mean([a["chosen"] == b["chosen"] for a, b in pairs])),
            "std_a": float(np.mean([va.std() for va in values_a])),
            "std_b": float(np.mean([vb.std() for vb in values_b])),
            "override_a": overrides([a for a, _ in pairs]),
            "override_b": overrides([b for _, b in pairs]),
            "gap": float(np.mean([(va - vb).mean() for va, vb in zip(values_a, values_b)]))}


def overrides(steps: list[dict]) -> float:
    """Share of steps whose chosen token is not the prior's most likely candidate."""
    return float(np.mean([step["chosen"] != step["candidates"][int(np.argmax(step["prior_logprobs"]))]
                          for step in steps]))


def table_row(pair: str, stats: dict[str, float]) -> str:
    cells = [pair.replace(":", " vs "), str(stats["states"]), f"{stats['diverged']} ({stats['diverged_at']:g})",
             f"{stats['rho']:.2f}", f"{stats['same_top']:.2f}", f"{stats['same_choice']:.2f}",
             f"{stats['std_a']:.3f}", f"{stats['std_b']:.3f}", f"{stats['override_a']:.2f}",
             f"{stats['override_b']:.2f}", f"{stats['gap']:+.3f}"]
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    main()
