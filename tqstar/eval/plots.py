"""The report's PNG plots: mean reward, the win-tie matrix, reward against KL as α (or β) varies, reward against
compute, reward against seconds (the frontier). A method whose metric has no values (its mean is None) is
left out of the plot that needs it."""

from __future__ import annotations

from pathlib import Path

from .frontier import method_families
from .metrics import KL_STEPWISE

COMPUTE_OPTIONS = ("best_of", "top_k", "horizon", "num_rollouts", "block_size")
#: The options that move a method along its reward–KL curve: α, and β (soft transfer's α is 1/β; for
#: tq-indirect it sharpens the importance weights).
STRENGTH = {"alpha": "α", "beta": "β"}


def write_plots(run_dir: Path, records: list[dict], summary: dict) -> dict[str, str]:
    """Write the plots into ``run_dir``; return title → file name, in the report's order."""
    import matplotlib

    matplotlib.use("Agg")
    plots = {"Mean target reward": _reward_plot(run_dir, summary),
             "Win-tie matrix": _win_tie_plot(run_dir, summary)}
    sweeps = _sweeps(records)
    if any(option in STRENGTH for _, option in sweeps):
        plots["Reward against KL as alpha or beta varies"] = _tradeoff_plot(run_dir, summary, sweeps)
    plots["Reward against compute"] = _compute_plot(run_dir, summary, sweeps)
    if summary.get("frontier"):
        plots["Reward against seconds per response"] = _frontier_plot(run_dir, records, summary)
    return plots


def _sweeps(records: list[dict]) -> dict[tuple[str, str], list[tuple[object, str]]]:
    """(swept method, option) → [(value, label)], from the records' configs."""
    found: dict[tuple[str, str], dict[str, object]] = {}
    for r in records:
        sweep = r["config"].get("sweep")
        if sweep:
            found.setdefault((sweep["of"], sweep["option"]), {})[r["method"]] = sweep["value"]
    return {key: sorted(((v, label) for label, v in points.items()), key=lambda p: (p[0] is None, p[0] or 0))
            for key, points in found.items()}


def _points(methods: dict, labels, x: str) -> tuple[list, list[float], list[float]]:
    """(labels, x means, reward means) of the methods whose ``x`` has a mean."""
    kept = [label for label in labels if methods[label][x]["mean"] is not None]
    return kept, [methods[label][x]["mean"] for label in kept], [methods[label]["reward"]["mean"] for label in kept]


def _save(fig, run_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(run_dir / name, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def _errorbar_args(cells: list[dict]):
    means = [c["mean"] for c in cells]
    return means, [[m - c["low"] for m, c in zip(means, cells)], [c["high"] - m for m, c in zip(means, cells)]]


def _reward_plot(run_dir: Path, summary: dict) -> str:
    import matplotlib.pyplot as plt

    methods = summary["methods"]  # every record has a reward, so every method has a mean
    order = sorted(methods, key=lambda m: methods[m]["reward"]["mean"])
    means, errors = _errorbar_args([methods[m]["reward"] for m in order])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(order) + 1.2))
    ax.barh(order, means, xerr=errors, color="#4c72b0", capsize=3)
    ax.set_xlabel("mean target reward per response (95% bootstrap interval)")
    ax.set_xlim(min(means) - 0.3 * (max(means) - min(means) + 1e-9), None)
    return _save(fig, run_dir, "reward.png")


def _win_tie_plot(run_dir: Path, summary: dict) -> str:
    import matplotlib.pyplot as plt

    methods = summary["methods"]
    order = sorted(methods, key=lambda m: -methods[m]["reward"]["mean"])
    # NaN only inside the plot (an empty cell): the diagonal, and pairs that share no prompt
    grid = [[float("nan") if a == b or summary["duels"][a][b]["win_tie"]["mean"] is None
             else summary["duels"][a][b]["win_tie"]["mean"] for b in order] for a in order]
    fig, ax = plt.subplots(figsize=(0.8 * len(order) + 2.5, 0.6 * len(order) + 1.5))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    ax.set_yticks(range(len(order)), order)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel("against")
    ax.set_ylabel("method")
    fig.colorbar(image, ax=ax, label="win-tie rate by target reward")
    return _save(fig, run_dir, "win_tie.png")


def _tradeoff_plot(run_dir: Path, summary: dict, sweeps: dict) -> str:
    import matplotlib.pyplot as plt

    methods = summary["methods"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for (of, option), points in sweeps.items():
        if option not in STRENGTH:
            continue
        # drawn in order of KL: an unset β (the baseline's DPO β) has no value to sort by
        curve = sorted(zip(*_points(methods, [label for _, label in points], "kl")), key=lambda point: point[1])
        if not curve:
            continue
        labels, kl, reward = zip(*curve)
        ax.plot(kl, reward, marker="o", label=of)
        value_of = {label: "default" if value is None else value for value, label in points}
        for label, x, y in zip(labels, kl, reward):
            ax.annotate(f"{STRENGTH[option]}={value_of[label]}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    swept = {label for pts in sweeps.values() for _, label in pts}
    for label, x, y in zip(*_points(methods, [m for m in methods if m not in swept], "kl")):
        ax.scatter(x, y, marker="x", color="grey")
        estimator = methods[label].get("kl_estimator")
        marked = label if estimator == KL_STEPWISE else f"{label} ({estimator})"
        ax.annotate(marked, (x, y), fontsize=7, color="grey", textcoords="offset points", xytext=(3, -9))
    ax.set_xlabel(f"mean KL to the reference per response (nats; {KL_STEPWISE} unless marked)")
    ax.set_ylabel("mean target reward")
    ax.legend(title="swept method")
    return _save(fig, run_dir, "reward_vs_kl.png")


def _compute_plot(run_dir: Path, summary: dict, sweeps: dict) -> str:
    import matplotlib.pyplot as plt

    methods = summary["methods"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    swept = set()
    for (of, option), points in sweeps.items():
        if option not in COMPUTE_OPTIONS:
            continue
        swept.update(label for _, label in points)
        labels, cost, reward = _points(methods, [label for _, label in points], "forward_tokens")
        ax.plot(cost, reward, marker="o", label=f"{of} ({option})")
        value_of = {label: value for value, label in points}
        for label, x, y in zip(labels, cost, reward):
            ax.annotate(str(value_of[label]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for label, x, y in zip(*_points(methods, [m for m in methods if m not in swept], "forward_tokens")):
        ax.scatter(x, y, marker="x", color="grey")
        ax.annotate(label, (x, y), fontsize=7, color="grey", textcoords="offset points", xytext=(3, -9))
    ax.set_xscale("log")
    ax.set_xlabel("model forward tokens per response (log scale)")
    ax.set_ylabel("mean target reward")
    if swept:
        ax.legend(title="swept method (option)")
    return _save(fig, run_dir, "reward_vs_compute.png")


def _frontier_plot(run_dir: Path, records: list[dict], summary: dict) -> str:
    """Every method as a point coloured by its family, the frontier as a step line through the methods on it."""
    import matplotlib.pyplot as plt

    methods, pareto = summary["methods"], summary["frontier"]["pareto"]
    family = method_families(records)
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for name in dict.fromkeys(family[label] for label in methods):
        labels, seconds, reward = _points(methods, [m for m in methods if family[m] == name], "seconds")
        ax.scatter(seconds, reward, label=name, zorder=3)
        for label, x, y in zip(labels, seconds, reward):
            ax.annotate(label, (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    _, seconds, reward = _points(methods, pareto, "seconds")
    ax.step(seconds, reward, where="post", color="grey", linestyle="--", label="frontier")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per response, as measured in this run (log scale)")
    ax.set_ylabel("mean target reward")
    ax.legend(fontsize=8)
    return _save(fig, run_dir, "reward_vs_seconds.png")
