"""The ``tqstar`` command. Its flags are generated from the config dataclasses (``tqstar.options.add_flags``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .align.config import AlignConfig
from .align.run import run_align
from .audit.page import write_page
from .audit.read import read_answers, select
from .bench import BenchConfig, run_bench
from .decoding.build import build_decoder
from .decoding.config import DecodeConfig, RolesConfig
from .decoding.decoder import write_trace
from .decoding.methods import METHOD_TABLE
from .decoding.roles import Roles
from .errors import ConfigError, TQStarError
from .eval.config import EvalConfig
from .eval.merge import merge_runs
from .eval.report import write_report
from .eval.run import run_eval
from .options import add_flags, from_args, load_config_file, writable_file
from .rewards.stance_data import ROLES
from .rewards.stance_training import StanceModelConfig, train_stance_model
from .rewards.training import RewardModelConfig, train_reward_model
from .serve.config import ServeConfig
from .serve.server import run_serve

COMPARE = tuple(m.name for m in METHOD_TABLE if m.compare)

DESCRIPTION = """\
Transfer Q* decoding: at each step take the proposal model's top-k next tokens, estimate each
token's value Q̂ with rollouts of an aligned baseline, and choose from
    π_alg(z | s_t) ∝ π_prior(z | s_t) · exp(α · Q̂(s_t, z)).
Defaults: the embedded SmolLM2-135M-Instruct as reference, its shipped DPO adapter
bl-helpful-harmless as baseline, target reward helpful_harmless.
Methods differ only in Q̂: args (reward of the partial response), cd (reference rollouts),
tq-direct (baseline rollouts), tq-indirect (importance-weighted baseline rollouts, needs
--baseline-reward; 4 sampled rollouts per candidate unless set), soft (our extension; proposal and
prior = baseline). greedy, sample and best-of-n decode without Q̂.
The algorithm, its estimators and what --compat reproduces: docs/algorithm.md in the project.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that answers a bad command line with one line: the problem, and where the options are
    listed (its default prints the whole usage first, and the problem is lost below it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message.rstrip('.')}. See '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tqstar", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="Decode a response to each prompt.", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("prompts", nargs="+", metavar="PROMPT", help="Prompt text (several allowed).")
    gen.add_argument("--config", metavar="FILE", help="JSON or TOML file of options; flags override it.")
    gen.add_argument("--compare", action="store_true",
                     help=f"Run {', '.join(COMPARE)} side by side and print reward and time.")
    gen.add_argument("--trace", metavar="FILE", help="Write the per-token audit trace as JSON Lines.")
    gen.add_argument("--json", action="store_true", help="Print results as JSON Lines.")
    gen.add_argument("--quiet", action="store_true", help="No progress bar.")
    add_flags(gen, DecodeConfig, RolesConfig)
    align = commands.add_parser("align", help="Make an aligned baseline: DPO with a LoRA adapter on the reference.")
    add_flags(align, AlignConfig)
    evaluate = commands.add_parser("eval", help="Compare methods over a prompt set; resumable run directory.")
    evaluate.add_argument("--config", metavar="FILE", help="JSON or TOML file of eval options; flags override it.")
    evaluate.add_argument("--quiet", action="store_true", help="No progress bar.")
    add_flags(evaluate, EvalConfig)
    report = commands.add_parser("report", help="Write report.md and report.html (tables, plots) for a run, or "
                                                "for several runs paired prompt by prompt.")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="Directory written by 'tqstar eval'.")
    report.add_argument("-o", "--output", metavar="DIR",
                        help="Merge the RUN_DIRs (same prompts, reward and response length) into this directory "
                             "and report on them together; a label two runs use gets its run's name as prefix.")
    trace = commands.add_parser("trace", help="Look at per-token traces.").add_subparsers(dest="action", required=True)
    view = trace.add_parser("view", help="Write the token inspector for a --trace file, an audit log or a saved "
                                         "answer as one self-contained HTML page.")
    view.add_argument("source", metavar="TRACE", help="A 'tqstar generate --trace' file, an audit log directory "
                                                      "or file (tqstar serve --audit-log), or an API answer as JSON.")
    view.add_argument("-o", "--output", metavar="HTML", default="trace.html", help="The page to write.")
    view.add_argument("--record", metavar="ID", help="Only this answer: its id, or its index (negative from the end).")
    serve = commands.add_parser("serve", help="Serve the decoders over an OpenAI-compatible HTTP API.")
    add_flags(serve, ServeConfig, DecodeConfig, RolesConfig)
    bench = commands.add_parser("bench", help="Measure decoding speed against the authors' per-step approach.")
    add_flags(bench, BenchConfig, RolesConfig)
    reward_model = commands.add_parser("reward-model", help="Train a reward model on chosen/rejected pairs.")
    actions = reward_model.add_subparsers(dest="action", required=True)
    train = actions.add_parser(
        "train", help="Bradley-Terry training of a MiniLM cross-encoder (LoRA + head); resumable; docs/reward.md.")
    train.add_argument("--quiet", action="store_true", help="No progress bar.")
    add_flags(train, RewardModelConfig)
    stance = actions.add_parser(
        "stance", help="Train the stance model (request and response classifiers: answer, decline, support); "
                       "resumable; docs/reward.md.")
    stance.add_argument("--quiet", action="store_true", help="No progress bar.")
    add_flags(stance, StanceModelConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return run_serve(args)
        if args.command == "bench":
            return run_bench(*from_args(args, BenchConfig, RolesConfig))
        if args.command == "align":
            return _align(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "report":
            return _report(args)
        if args.command == "trace":
            return _trace_view(args)
        if args.command == "reward-model":
            return _train_stance_model(args) if args.action == "stance" else _train_reward_model(args)
        return _generate(args)
    except TQStarError as exc:
        print(f"tqstar: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tqstar: interrupted", file=sys.stderr)
        return 130


def _generate(args) -> int:
    config, roles_config = from_args(args, DecodeConfig, RolesConfig, base=_config_file(args))
    if args.trace:  # before decoding: a path that cannot be written would lose the whole run
        writable_file(args.trace, "--trace")
    roles = Roles.load(roles_config)
    methods = COMPARE if args.compare else (config.method,)
    all_results = []
    for method in methods:
        decoder = build_decoder(replace(config, method=method), roles, progress=not args.quiet)
        results = decoder.generate(args.prompts)
        all_results.extend(results)
        if not args.compare:
            _print_results(results, args.json)
    if args.compare:
        _print_comparison(all_results, len(args.prompts), args.json)
    if args.trace:
        write_trace(all_results, args.trace, len(args.prompts))
    return 0


def _align(args) -> int:
    print(align_summary(run_align(*from_args(args, AlignConfig)), args.output))
    return 0


def align_summary(metadata: dict, output: str) -> str:
    """What ``tqstar align`` prints: the dev rewards (reference, start adapter when continued, final adapter)
    and a line per round."""
    dev = metadata["dev_reward"]
    measured = ", ".join(f"{'start adapter' if name == 'start' else name} {dev[name]['mean']:.4f} ± "
                         f"{dev[name]['stdev']:.4f}" for name in dev)
    lines = [f"{metadata['pairs']} pairs; dev reward (greedy, n={dev['reference']['n']}): {measured}. "
             f"Saved to {output}"]
    for result in metadata.get("rounds", []):
        low, high = result["dev_reward"]["interval"]
        lines.append(f"  round {result['round']}: {result['pairs']} pairs, dev reward "
                     f"{result['dev_reward']['mean']:.4f} (95% interval {low:.4f} to {high:.4f}), "
                     f"{result['seconds']['total'] / 60:.1f} min")
    return "\n".join(lines)


def _eval(args) -> int:
    config, = from_args(args, EvalConfig, base=_config_file(args))
    run_dir = run_eval(config, progress=not args.quiet)
    print(f"Records in {run_dir / 'records.jsonl'}; report: {write_report(run_dir)}")
    return 0


def _train_reward_model(args) -> int:
    (config,) = from_args(args, RewardModelConfig)
    metadata = train_reward_model(config, progress=not args.quiet)
    accuracy = metadata["heldout_accuracy"]
    print(f"{metadata['counts']['train']} training pairs; held-out pairwise accuracy {accuracy['overall']:.3f} "
          f"on {metadata['counts']['heldout']} pairs. Saved to {config.output}; use it with --reward {config.output}")
    return 0


def _train_stance_model(args) -> int:
    (config,) = from_args(args, StanceModelConfig)
    metadata = train_stance_model(config, progress=not args.quiet)
    for role in ROLES:
        counts, accuracy = metadata[role]["counts"], metadata[role]["heldout_accuracy"]["overall"]
        print(f"{role}: {sum(counts['train'].values())} training examples; held-out accuracy {accuracy:.3f} on "
              f"{sum(counts['heldout'].values())}")
    print(f"Saved to {config.output}; use it with --reward {config.output}")
    return 0


def _trace_view(args) -> int:
    answers = select(read_answers(args.source), args.record)
    writable_file(args.output, "--output")
    path = write_page(answers, args.output, f"tqstar trace: {Path(args.source).name}")
    print(f"{len(answers)} answer(s), {sum(len(a.steps) for a in answers)} traced tokens: {path}")
    return 0


def _report(args) -> int:
    if args.output is None and len(args.run_dirs) > 1:
        raise ConfigError("several RUN_DIRs are reported together in a new directory: add --output DIR.")
    run_dir = merge_runs(args.run_dirs, args.output) if args.output else args.run_dirs[0]
    print(write_report(run_dir))
    return 0


def _config_file(args) -> dict:
    return load_config_file(args.config) if args.config else {}


def _print_results(results, as_json: bool) -> None:
    for r in results:
        if as_json:
            print(json.dumps({"prompt": r.prompt, "method": r.method, "response": r.text, "reward": r.reward,
                              "seconds": round(r.seconds, 3)}, ensure_ascii=False))
        else:
            print(r.text.strip())
            print(f"\n[{r.method}] reward {r.reward:.4f} · {len(r.token_ids)} tokens · {r.seconds:.1f} s")


def _print_comparison(results, num_prompts: int, as_json: bool) -> None:
    if as_json:
        return _print_results(results, True)
    for p in range(num_prompts):
        rows = results[p::num_prompts]
        print(f"Prompt: {rows[0].prompt}")
        print(f"{'method':<10} {'reward':>8} {'seconds':>8}  response")
        for r in rows:
            print(f"{r.method:<10} {r.reward:>8.4f} {r.seconds:>8.1f}  {' '.join(r.text.split())}")
        print()


if __name__ == "__main__":
    sys.exit(main())
