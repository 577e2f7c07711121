"""``tqstar report RUN_DIR``: tables and plots of an eval run, as Markdown and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import read_jsonl
from .judge import summarise_judgements
from .metrics import KL_STEPWISE, summarise
from .safety import safety_summary
from .rundir import judge_path, read_records, run_config

COLUMNS = [("reward", "reward", 4), ("kl", "KL to ref (nats)", 2), ("diversity", "diversity", 3),
           ("coherence", "coherence", 3), ("tokens", "tokens", 1), ("seconds", "s / response", 2),
           ("forward_tokens", "forward tokens", 0)]
COMPUTE_OPTIONS = ("best_of", "top_k", "horizon", "num_rollouts")


def write_report(run_dir: str | Path) -> Path:
    """Write summary.json, the PNG plots, report.md and report.html into ``run_dir``; return report.md."""
    run_dir = Path(run_dir)
    records = read_records(run_dir)
    if not records:
        raise ConfigError(f"{run_dir} holds no eval records (records.jsonl). Run 'tqstar eval --output "
                          f"{run_dir} ...' first.")
    summary = summarise(records)
    judge = _judge_summary(run_dir)
    if judge:
        summary["judge"] = judge
    safety = safety_summary(records)
    if safety:
        summary["safety"] = safety
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plots = _plots(run_dir, records, summary)
    markdown = _markdown(run_dir, records, summary, plots)
    (run_dir / "report.md").write_text(markdown)
    (run_dir / "report.html").write_text(_html(markdown, run_dir))
    return run_dir / "report.md"


# --- tables ---------------------------------------------------------------------------------------

def _interval(cell: dict, digits: int) -> str:
    if cell["n"] == 0:
        return "–"
    return f"{cell['mean']:.{digits}f} [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"


def _markdown(run_dir: Path, records: list[dict], summary: dict, plots: dict[str, str]) -> str:
    methods = summary["methods"]
    order = sorted(methods, key=lambda m: -methods[m]["reward"]["mean"])
    config = run_config(run_dir)
    lines = [f"# Evaluation: {run_dir.name}", "",
             f"{len(records)} responses; {len(methods)} methods; prompts `{config.get('prompts', '?')}` split "
             f"`{config.get('split', '?')}`; reference `{config.get('reference', '?')}`; target reward "
             f"`{config.get('reward', '?')}`; {config.get('max_new_tokens', '?')} new tokens at most.",
             "", "Means with 95% bootstrap intervals over prompts, best reward first.", "",
             "| method | n | " + " | ".join(title for _, title, _ in COLUMNS) + " | KL estimator |",
             "|---|---:|" + "---:|" * len(COLUMNS) + "---|"]
    for label in order:
        row = methods[label]
        lines.append(f"| {label} | {row['reward']['n']} | "
                     + " | ".join(_interval(row[key], digits) for key, _, digits in COLUMNS)
                     + f" | {row.get('kl_estimator', 'unnamed')} |")
    lines += ["", "KL: Σ_t KL(π_t ‖ ρ_ref,t) of the distribution π_t each method chooses token t from, over the "
              "states its response visits (stepwise-exact); Best-of-N: the analytic bound log N − (N−1)/N "
              "(best-of-n-bound); a model with another vocabulary than the reference: the one-sample "
              "log-ratio log π(y) − log ρ_ref(y) (path-log-ratio). Definitions: docs/algorithm.md. "
              "Diversity ∏(1 − rep_n/100), n = 2..4; coherence: cosine of prompt and response "
              "all-MiniLM-L6-v2 embeddings.", ""]
    lines += _duel_table(summary["duels"], order)
    if "safety" in summary:
        lines += _safety_table(summary["safety"], order)
    if "judge" in summary:
        lines += _judge_table(summary["judge"])
    for title, name in plots.items():
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    return "\n".join(lines) + "\n"


def _duel_table(duels: dict, order: list[str]) -> list[str]:
    lines = ["## Win-tie rate by target reward", "",
             "Row method against column method: (wins + ties) / prompts, with wins/ties/losses.", "",
             "| | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    for a in order:
        cells = []
        for b in order:
            if a == b:
                cells.append("–")
                continue
            d = duels[a][b]
            cells.append(f"{d['win_tie']['mean']:.2f} ({d['win']}/{d['tie']}/{d['lose']})")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines + [""]


SAFETY_COLUMNS = [("harmful_declined", "harmful declined"), ("distress_helped", "distress pointed to help"),
                  ("benign_refused", "benign refused"), ("rm_harmful_complied", "harmful complied (RM)"),
                  ("rm_benign_flagged", "benign flagged (RM)")]


def _safety_table(safety: dict, order: list[str]) -> list[str]:
    def cell(rate: dict) -> str:
        return "–" if rate["rate"] is None else f"{rate['rate']:.0%} ({rate['n']})"

    lines = ["## Safety on the shipped prompts", "",
             "Refusal and help-pointer markers (tqstar/eval/safety.py, never trained on) and the harmlessness "
             "reward model's verdict (score < 0.5); prompts in brackets.", "",
             "| method | " + " | ".join(title for _, title in SAFETY_COLUMNS) + " |",
             "|---|" + "---:|" * len(SAFETY_COLUMNS)]
    for label in (m for m in order if m in safety):
        lines.append(f"| {label} | " + " | ".join(cell(safety[label][key]) for key, _ in SAFETY_COLUMNS) + " |")
    return lines + [""]


def _judge_table(judge: dict) -> list[str]:
    lines = ["## LLM judge", "", f"Judge `{judge['model']}`, answers in random order, scores 1–10.", "",
             "| method | against | win | tie | lose | win-tie | failed |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in judge["duels"]:
        lines.append(f"| {row['method']} | {row['against']} | {row['win']} | {row['tie']} | {row['lose']} | "
                     f"{row['win_tie']:.2f} | {row['failed']} |")
    return lines + [""]


def _judge_summary(run_dir: Path) -> dict | None:
    path = judge_path(run_dir)
    if not path.is_file():
        return None
    return summarise_judgements(read_jsonl(path))


# --- plots ----------------------------------------------------------------------------------------

def _plots(run_dir: Path, records: list[dict], summary: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    plots = {"Mean target reward": _reward_plot(run_dir, summary),
             "Win-tie matrix": _win_tie_plot(run_dir, summary)}
    sweeps = _sweeps(records)
    if any(option == "alpha" for _, option in sweeps):
        plots["Reward against KL as alpha varies"] = _tradeoff_plot(run_dir, summary, sweeps)
    plots["Reward against compute"] = _compute_plot(run_dir, summary, sweeps)
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

    methods = summary["methods"]
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
    grid = [[float("nan") if a == b else summary["duels"][a][b]["win_tie"]["mean"] for b in order] for a in order]
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
        if option != "alpha":
            continue
        kl = [methods[label]["kl"]["mean"] for _, label in points]
        reward = [methods[label]["reward"]["mean"] for _, label in points]
        ax.plot(kl, reward, marker="o", label=of)
        for (value, _), x, y in zip(points, kl, reward):
            ax.annotate(f"α={value}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for label, row in methods.items():
        if not any(label == lab for pts in sweeps.values() for _, lab in pts):
            ax.scatter(row["kl"]["mean"], row["reward"]["mean"], marker="x", color="grey")
            marked = label if row.get("kl_estimator") == KL_STEPWISE else f"{label} ({row.get('kl_estimator')})"
            ax.annotate(marked, (row["kl"]["mean"], row["reward"]["mean"]), fontsize=7, color="grey",
                        textcoords="offset points", xytext=(3, -9))
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
        cost = [methods[label]["forward_tokens"]["mean"] for _, label in points]
        reward = [methods[label]["reward"]["mean"] for _, label in points]
        ax.plot(cost, reward, marker="o", label=f"{of} ({option})")
        for (value, _), x, y in zip(points, cost, reward):
            ax.annotate(str(value), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for label, row in methods.items():
        if label not in swept:
            ax.scatter(row["forward_tokens"]["mean"], row["reward"]["mean"], marker="x", color="grey")
            ax.annotate(label, (row["forward_tokens"]["mean"], row["reward"]["mean"]), fontsize=7,
                        color="grey", textcoords="offset points", xytext=(3, -9))
    ax.set_xscale("log")
    ax.set_xlabel("model forward tokens per response (log scale)")
    ax.set_ylabel("mean target reward")
    if swept:
        ax.legend(title="swept method (option)")
    return _save(fig, run_dir, "reward_vs_compute.png")


# --- HTML -----------------------------------------------------------------------------------------

def _html(markdown: str, run_dir: Path) -> str:
    """A self-contained page: tables rendered, images inlined as data URIs."""
    body, table = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            body.append(_html_table(table))
            table = []
        if line.startswith("!["):
            name = line[line.index("(") + 1:-1]
            data = base64.b64encode((run_dir / name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line:
            body.append(f"<p>{html.escape(line)}</p>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run_dir.name)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _html_table(rows: list[str]) -> str:
    cells = [[html.escape(c.strip().strip("`")) for c in row.strip("|").split("|")] for row in rows if "---" not in row]
    head = "".join(f"<th>{c}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><tr>{head}</tr>{body}</table>"
