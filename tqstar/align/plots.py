"""The plots of an align run: DPO loss and margin per step, and the dev reward per round."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: dict, out: Path, round_starts: list[int] | None = None) -> None:
    """loss.png, margins.png and chosen_logps.png; ``round_starts``: the first step of each round after the first, marked."""
    plt = _pyplot()
    for key, title, unit in (("loss", "DPO loss", "loss (nats)"),
                             ("margins", "DPO reward margin, chosen − rejected", "margin (β × nats)"),
                             ("chosen_logps", "log-probability of the chosen answers", "nats")):
        if not curves.get(key):  # rounds finished before a curve was kept lack it
            continue
        steps, values = zip(*curves[key])
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, values)
        for start in round_starts or []:
            ax.axvline(start - 0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("optimisation step (batch of pairs)" + (", rounds marked" if round_starts else ""))
        ax.set_ylabel(unit)
        ax.set_title(f"{out.name}: {title}", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / f"{key}.png", dpi=120)
        plt.close(fig)


def plot_dev_rewards(dev_rewards: dict, rounds: list[dict], out: Path) -> None:
    """dev_reward.png: the dev reward of the reference, of the start adapter when there is one, and of each
    round's adapter, mean and 95% interval."""
    plt = _pyplot()
    start = ["start"] if "start" in dev_rewards else []
    points = [dev_rewards[key] for key in ["reference", *start]] + [r["dev_reward"] for r in rounds]
    means = [p["mean"] for p in points]
    below = [p["mean"] - p["interval"][0] for p in points]
    above = [p["interval"][1] - p["mean"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.errorbar(range(len(points)), means, yerr=[below, above], marker="o", capsize=3)
    ax.set_xticks(range(len(points)), ["ref", *start] + [str(r["round"]) for r in rounds])
    ax.set_xlabel("round (ref: the reference model" + ("; start: the adapter continued)" if start else ")"))
    ax.set_ylabel("dev reward")
    ax.set_title(f"{out.name}: dev reward by round (greedy, n={points[0]['n']}, 95% interval)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "dev_reward.png", dpi=120)
    plt.close(fig)
