"""The reward–time frontier of an eval run: which methods no other method beats for fewer seconds, and at
each budget (a multiple of greedy's seconds per response) the best Transfer Q* variant against the best
Best-of-N that fits in it. Seconds are per response as the run measured them, so compare methods of
one run only: a second run on a busier machine moves every point."""

from __future__ import annotations

from ..decoding.methods import find_method

#: Budgets in multiples of the fastest greedy-like method's seconds per response.
BUDGETS = (1, 2, 3, 5, 10, 20, 50)
BEST_OF_N = "best-of-n"
UNIT_METHODS = ("greedy", "sample")  # one decoding pass: the unit a budget counts in


def frontier_summary(records: list[dict], summary: dict) -> dict | None:
    """{"unit_seconds", "pareto": [labels by seconds], "budgets": [rows]}; None without timings or a greedy
    (or sample) run to count the budgets in."""
    family = method_families(records)
    points = {label: (row["seconds"]["mean"], row["reward"]["mean"])
              for label, row in summary["methods"].items() if row["seconds"]["mean"] is not None}
    units = [points[label][0] for label in points if family[label] in UNIT_METHODS]
    if not units:
        return None
    unit = min(units)
    return {"unit_seconds": unit, "pareto": pareto_labels(points),
            "budgets": [_budget_row(multiple, unit, points, family) for multiple in BUDGETS]}


def method_families(records: list[dict]) -> dict[str, str]:
    """Each label's decoding method (its family: a sweep point of tq-direct is tq-direct)."""
    return {r["method"]: r["config"]["decode"]["method"] for r in records}


def is_transfer(method_name: str) -> bool:
    """Whether a record's method rolls out the aligned baseline (a record may name a method this version does
    not know: it is not one)."""
    return getattr(find_method(method_name), "transfer", False)


def pareto_labels(points: dict[str, tuple[float, float]]) -> list[str]:
    """The labels that no faster-or-equally-fast method beats on reward, fastest first."""
    kept, best = [], float("-inf")
    for label, (_, reward) in sorted(points.items(), key=lambda item: (item[1][0], -item[1][1])):
        if reward > best:
            kept.append(label)
            best = reward
    return kept


def _budget_row(multiple: int, unit: float, points: dict, family: dict) -> dict:
    budget = multiple * unit
    fits = {label: point for label, point in points.items() if point[0] <= budget}

    def best(labels) -> dict | None:
        label = max(labels, key=lambda m: fits[m][1], default=None)
        return None if label is None else {"label": label, "seconds": fits[label][0], "reward": fits[label][1]}

    return {"multiple": multiple, "seconds": budget, "best": best(fits),
            "best_of_n": best([m for m in fits if family[m] == BEST_OF_N]),
            "transfer": best([m for m in fits if is_transfer(family[m])])}


def frontier_table(frontier: dict) -> list[str]:
    """The report's Markdown section for ``frontier_summary``'s result."""
    def cell(entry: dict | None) -> str:
        return "–" if entry is None else f"{entry['label']} {entry['reward']:.3f} ({entry['seconds']:.1f} s)"

    lines = ["## Reward–time frontier", "",
             f"Budgets in multiples of greedy's {frontier['unit_seconds']:.2f} s per response (as measured in this "
             "run); in each, the best method whose mean seconds per response fit, and the best of two families. "
             "On the frontier (no faster method has more reward): " + ", ".join(frontier["pareto"]) + ".", "",
             "| budget | best | best Best-of-N | best Transfer Q* | Transfer Q* − Best-of-N |",
             "|---|---|---|---|---:|"]
    for row in frontier["budgets"]:
        gap = ("–" if row["transfer"] is None or row["best_of_n"] is None
               else f"{row['transfer']['reward'] - row['best_of_n']['reward']:+.3f}")
        lines.append(f"| {row['multiple']}× ({row['seconds']:.1f} s) | {cell(row['best'])} | "
                     f"{cell(row['best_of_n'])} | {cell(row['transfer'])} | {gap} |")
    return lines + [""]
