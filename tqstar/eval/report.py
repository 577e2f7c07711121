"""``tqstar report RUN_DIR``: tables and plots of an eval run, as Markdown and a self-contained HTML page,
with a page per prompt of its responses and their traces (``pages.py``)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import read_jsonl, write_json
from ..prompts import FILE_SUFFIXES
from .frontier import frontier_summary, frontier_table, is_transfer, method_families
from .guard import guard_summary
from .judge import summarise_judgements
from .metrics import summarise
from .pages import link_cell_html, prompts_table, write_prompt_pages
from .plots import write_plots
from .safety import LABELS, reward_by_label, safety_summary
from .rundir import judge_path, read_records, run_config

COLUMNS = [("reward", "reward", 4), ("kl", "KL to ref (nats)", 2), ("diversity", "diversity", 3),
           ("coherence", "coherence", 3), ("tokens", "tokens", 1), ("seconds", "s / response", 2),
           ("forward_tokens", "forward tokens", 0), ("ess", "ESS of rollouts", 2)]


def write_report(run_dir: str | Path) -> Path:
    """Write summary.json, the PNG plots, report.md, report.html and the prompt pages (traces/) into
    ``run_dir``; return report.md."""
    run_dir = Path(run_dir)
    records = read_records(run_dir)
    if not records:
        raise ConfigError(f"{run_dir} holds no eval records (records.jsonl). Run 'tqstar eval --output "
                          f"{run_dir} ...' first.")
    config = run_config(run_dir)
    summary = summarise(records)
    summary["guard"] = guard_summary(records)
    judge = _judge_summary(run_dir)
    if judge:
        summary["judge"] = judge
    # A merged run's seconds come from runs made under different load: no frontier is drawn from them.
    frontier = None if config.get("merged_from") else frontier_summary(records, summary)
    if frontier:
        summary["frontier"] = frontier
    safety = safety_summary(records)
    if safety:
        summary["safety"] = safety
        summary["reward_by_label"] = reward_by_label(records)
    write_json(run_dir / "summary.json", summary)  # a metric without values is null: JSON has no NaN
    plots = write_plots(run_dir, records, summary)
    markdown = _markdown(run_dir, config, records, summary, plots)
    markdown += "\n".join(prompts_table(records, write_prompt_pages(run_dir, records))) + "\n"
    (run_dir / "report.md").write_text(markdown)
    (run_dir / "report.html").write_text(_html(markdown, run_dir))
    return run_dir / "report.md"


# --- tables ---------------------------------------------------------------------------------------

def _interval(cell: dict, digits: int) -> str:
    if cell["mean"] is None:  # no values
        return "–"
    return f"{cell['mean']:.{digits}f} [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"


def _prompt_source(config: dict) -> str:
    """The prompts a run read: a file's split means nothing, so only a shipped set or dataset names one."""
    source = str(config.get("prompts", "?"))
    if Path(source).suffix.lower() in FILE_SUFFIXES:
        return f"`{source}`"
    return f"`{source}` split `{config.get('split', '?')}`"


def _merged_from(config: dict) -> list[str]:
    runs = config.get("merged_from")
    return ["", "Merged from the runs " + ", ".join(f"`{run}`" for run in runs) + " (`tqstar report RUN_DIR ... "
            "--output`): rows of different runs are paired by prompt index. Seconds per response come from each "
            "run's own machine and load, so the reward–time frontier is left out; across runs, compare compute "
            "by forward tokens."] if runs else []


def _markdown(run_dir: Path, config: dict, records: list[dict], summary: dict, plots: dict[str, str]) -> str:
    methods = summary["methods"]
    order = sorted(methods, key=lambda m: -methods[m]["reward"]["mean"])
    lines = [f"# Evaluation: {run_dir.name}", "",
             f"{len(records)} responses; {len(methods)} methods; prompts {_prompt_source(config)}; "
             f"reference `{config.get('reference', '?')}`; target reward "
             f"`{config.get('reward', '?')}`; {config.get('max_new_tokens', '?')} new tokens at most.",
             *_merged_from(config), "", "Means with 95% bootstrap intervals over prompts, best reward first.", "",
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
              "log-ratio log π(y) − log ρ_ref(y) (path-log-ratio); a --block-size B decoder: the same sum over the "
              "blocks it chose, π_alg over the candidate blocks against ρ_ref of each whole block (blockwise-exact; "
              "with sampled blocks an upper bound, blockwise-sampled-bound); "
              "a --prune decoder: the stepwise sum with π_alg over the candidates that could win (stepwise-pruned). "
              "Definitions: docs/algorithm.md. "
              "Diversity ∏(1 − rep_n/100), n = 2..4; coherence: cosine of prompt and response "
              "all-MiniLM-L6-v2 embeddings. ESS: the importance-weighted estimators' effective sample size "
              "(Σw)²/Σw² per candidate, mean over steps (soft, tq-indirect; of N rollouts).", ""]
    lines += _duel_table(summary["duels"], order)
    lines += _transfer_table(summary["duels"], order, _transfer_labels(records))
    if "frontier" in summary:
        lines += frontier_table(summary["frontier"])
    lines += _guard_table(summary, order)
    if "safety" in summary:
        lines += _safety_table(summary["safety"], order)
        lines += _label_table(summary["reward_by_label"], order)
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
            cells.append(f"{_rate(d['win_tie'])} ({d['win']}/{d['tie']}/{d['lose']})")  # "–": no shared prompt
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return lines + [""]


def _transfer_labels(records: list[dict]) -> list[str]:
    """The labels of the rows decoded by a transfer method, in the order they were run."""
    return [label for label, name in method_families(records).items() if is_transfer(name)]


def _transfer_table(duels: dict, order: list[str], transfer: list[str]) -> list[str]:
    """Each Transfer Q* row against every other method: the paired reward difference and the win-tie rate."""
    if not transfer:
        return []
    lines = ["## Transfer Q* against the others", "",
             "Paired reward difference (Transfer Q* row − method, prompt by prompt) with its 95% bootstrap interval "
             "over prompts, then the win-tie rate; an interval above 0 means ahead on these prompts.", "",
             "| method | " + " | ".join(f"{label} −" for label in transfer) + " |", "|---|" + "---:|" * len(transfer)]
    for other in order:
        cells = ["–" if other == label else f"{_interval(duels[label][other]['difference'], 3)} · "
                 f"{_rate(duels[label][other]['win_tie'])}" for label in transfer]
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return lines + [""]


def _rate(cell: dict) -> str:
    return "–" if cell["mean"] is None else f"{cell['mean']:.2f}"


def _guard_table(summary: dict, order: list[str]) -> list[str]:
    """Whether the best-rewarded methods earned it: the target reward beside its terms and the judge rewards
    nothing steered by, fluency under the reference and the baseline, and signs of degenerate answers."""
    methods, guard = summary["methods"], summary["guard"]
    terms = list(dict.fromkeys(name for label in order for name in guard[label]["terms"]))
    judges = list(dict.fromkeys(spec for label in order for spec in guard[label]["judged"]))
    titles = (["target reward", *(f"term {name}" for name in terms), *(f"judge `{spec}`" for spec in judges),
               "fluency ref (nats/token)", "fluency baseline (nats/token)", "tokens", "ended early", "repeating"])
    lines = ["## Reward-hacking guard", "",
             "Means with 95% bootstrap intervals. Terms: each term of the target reward, unweighted; judges: "
             "rewards no method steered by (--judge-reward); fluency: mean token log-probability of the response "
             "under each model; ended early: fewer tokens than a quarter of the most allowed; repeating: a run of "
             "4 words occurs 3 times or more (docs/evaluation.md).", "",
             "| method | " + " | ".join(titles) + " |", "|---|" + "---:|" * len(titles)]
    missing = {"mean": None}
    for label in order:
        row = guard[label]
        cells = ([_interval(methods[label]["reward"], 4)]
                 + [_interval(row["terms"].get(name, missing), 3) for name in terms]
                 + [_interval(row["judged"].get(spec, missing), 3) for spec in judges]
                 + [_interval(row["fluency_reference"], 2), _interval(row["fluency_baseline"], 2),
                    _interval(methods[label]["tokens"], 1), _share(row["ended_early"]), _share(row["repeats"])])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def _share(cell: dict) -> str:
    if cell["mean"] is None:
        return "–"
    return f"{cell['mean']:.0%} [{cell['low']:.0%}, {cell['high']:.0%}]"


SAFETY_COLUMNS = [("harmful_declined", "harmful declined"), ("harmful_complied", "harmful complied"),
                  ("distress_helped", "distress pointed to help"),
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


def _label_table(by_label: dict, order: list[str]) -> list[str]:
    def cell(entry: dict | None) -> str:
        return "–" if entry is None else f"{entry['mean']:.3f} ({entry['n']})"

    lines = ["## Target reward by prompt label", "", "Mean target reward on the shipped prompts of each safety "
             "label; prompts in brackets.", "", "| method | " + " | ".join(LABELS) + " |",
             "|---|" + "---:|" * len(LABELS)]
    for label in (m for m in order if m in by_label):
        lines.append(f"| {label} | " + " | ".join(cell(by_label[label].get(name)) for name in LABELS) + " |")
    return lines + [""]


def _judge_table(judge: dict) -> list[str]:
    lines = ["## LLM judge", "", f"Judge `{judge['model']}`, answers in random order, scores 1–10.", "",
             "| method | against | win | tie | lose | win-tie | failed |", "|---|---|---:|---:|---:|---:|---:|"]
    for row in judge["duels"]:
        lines.append(f"| {row['method']} | {row['against']} | {row['win']} | {row['tie']} | {row['lose']} | "
                     f"{'–' if row['win_tie'] is None else format(row['win_tie'], '.2f')} | {row['failed']} |")
    return lines + [""]


def _judge_summary(run_dir: Path) -> dict | None:
    path = judge_path(run_dir)
    if not path.is_file():
        return None
    return summarise_judgements(read_jsonl(path))


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
    """A Markdown table as HTML: every cell escaped, then a link to a prompt page (and only that) made one."""
    cells = [[link_cell_html(html.escape(_unquoted(c.strip()))) for c in row.strip("|").split("|")]
             for row in rows if not set(row) <= set("|-: ")]  # all but the |---|---:| line
    head = "".join(f"<th>{c}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _unquoted(cell: str) -> str:
    """A cell that is one code span without its backticks; a cell with code inside keeps them, as prose does."""
    return cell[1:-1] if len(cell) > 1 and cell[0] == cell[-1] == "`" and cell.count("`") == 2 else cell
