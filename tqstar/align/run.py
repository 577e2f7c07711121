"""``run_align``: the whole recipe, in one round or several, resumable at every step."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..jsonl import read_jsonl, write_json
from ..models.loader import load_language_model
from ..prompts import load_prompts
from ..rewards.loading import load_reward
from ..rewards.training import load_preference_pairs
from .config import AlignConfig, check_same_run, dev_source, round_folder_name, round_prompts, start_adapter_dir
from .pairs import build_pairs, given_pairs, mean_reward, mixed_given_pairs
from .plots import plot_curves, plot_dev_rewards
from .train import CURVES, plain_model_dir, point_adapter_at, publish_adapter, train_adapter

#: Written last in a round's folder: its presence marks a finished round, which is never redone.
ROUND_FILE = "round.json"


@dataclass
class _Run:
    """What every round of one run shares."""

    config: AlignConfig
    out: Path
    reference: object  # the LanguageModel of --reference
    reward: object
    train_prompts: list[str]
    dev_prompts: list[str]
    progress: bool
    start_adapter: Path | None  # --start-adapter's folder: round 1 continues it


def run_align(config: AlignConfig, progress: bool = True) -> dict:
    """The whole recipe; returns the metadata it writes to ``output/metadata.json``.

    One round (the default): pairs, checkpoints and the adapter at the top of ``output``. Several: round r
    in ``output/round-r`` (its pairs, checkpoints, adapter, plots and ``round.json``), sampling from round
    r−1's adapter and training it further; the last round's adapter is copied to the top of ``output``.
    """
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    check_same_run(config, out)
    if config.pairs is not None:
        load_preference_pairs(config.pairs)  # a bad pairs file fails before the models load
    run = _Run(config, out, load_language_model(config.reference), load_reward(config.reward),
               load_prompts(config.prompts, config.split, config.prompt_field, config.limit),
               load_prompts(dev_source(config), "dev", config.prompt_field, config.dev_limit), progress,
               start_adapter_dir(config))
    metadata = _one_round(run) if config.rounds == 1 else _several_rounds(run)
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2))
    return metadata


def _one_round(run: _Run) -> dict:
    result = _run_round(run, 1, run.out, start_from=run.start_adapter)
    plot_curves(result["curves"], run.out)
    return {**_header(run), "prompts": result["prompts"], "pairs": result["pairs"],
            "skipped_ties": result["skipped_ties"], "curves": result["curves"],
            "dev_reward": _dev_rewards(run, result["dev_reward"])}


def _several_rounds(run: _Run) -> dict:
    rounds = []
    for index in range(1, run.config.rounds + 1):
        folder = run.out / round_folder_name(index)
        if (folder / ROUND_FILE).is_file():
            rounds.append(json.loads((folder / ROUND_FILE).read_text()))
            continue
        start_from = run.out / round_folder_name(index - 1) if index > 1 else run.start_adapter
        result = _run_round(run, index, folder, start_from)
        plot_curves(result["curves"], folder)
        write_json(folder / ROUND_FILE, result)
        rounds.append(result)
    publish_adapter(run.out / round_folder_name(run.config.rounds), run.out)
    curves, starts = _joined_curves(rounds)
    used = {p for index in range(1, run.config.rounds + 1) for p in _prompts_of_round(run, index)}
    dev_rewards = _dev_rewards(run, rounds[-1]["dev_reward"])
    plot_curves(curves, run.out, starts)
    plot_dev_rewards(dev_rewards, rounds, run.out)
    return {**_header(run), "prompts": len(used), "pairs": sum(r["pairs"] for r in rounds),
            "skipped_ties": sum(r["skipped_ties"] for r in rounds), "curves": curves,
            "dev_reward": dev_rewards,
            "rounds": [{k: v for k, v in r.items() if k != "curves"} for r in rounds],
            "seconds": sum(r["seconds"]["total"] for r in rounds)}


def _run_round(run: _Run, index: int, folder: Path, start_from: Path | None) -> dict:
    """Sample pairs from the policy (the reference, or it with ``start_from``'s adapter), or in round 1 take
    the given ``--pairs``; train the adapter on them into ``folder`` and measure its dev reward; a killed
    round resumes from its pairs and checkpoints."""
    config = run.config
    folder.mkdir(parents=True, exist_ok=True)
    resumed = (folder / "pairs.jsonl").is_file()
    began = time.monotonic()
    pairs = _round_pairs(run, index, folder, start_from)
    sampled = time.monotonic()
    curves = train_adapter(config, plain_model_dir(run.reference, run.out), pairs, folder, start_from)
    point_adapter_at(folder, config.reference)
    trained = time.monotonic()
    dev = _dev_reward(run, _adapter(folder))
    measured = time.monotonic()
    recorded = read_jsonl(folder / "pairs.jsonl")  # every prompt of the round, near-ties included
    kept = sum(not pair["skipped"] for pair in recorded)  # the rest of ``pairs`` are mixed-in given pairs
    return {"round": index, "sampled_from": _source_of_round(run, index, start_from),
            "prompts": len({pair["prompt"] for pair in recorded}), "given_pairs": len(pairs) - kept,
            "pairs": len(pairs), "skipped_ties": len(recorded) - kept,
            "curves": curves, "dev_reward": dev, "resumed": resumed,
            "seconds": {"sampling": sampled - began, "training": trained - sampled, "dev": measured - trained,
                        "total": measured - began}}


def _given_pairs_round(run: _Run, index: int) -> bool:
    """Round 1 trains on the given pairs alone, unless it continues a start adapter (which mixes them in)."""
    return index == 1 and run.config.pairs is not None and run.start_adapter is None


def _round_pairs(run: _Run, index: int, folder: Path, start_from: Path | None) -> list[dict]:
    if _given_pairs_round(run, index):
        return given_pairs(run.config, folder)
    policy = run.reference if start_from is None else _adapter(start_from)
    sampled = build_pairs(run.config, policy, run.reward, round_prompts(run.config, run.train_prompts, index),
                          run.progress, folder, index)
    if run.config.given_pairs_per_round is None:
        return sampled
    return sampled + mixed_given_pairs(run.config, folder, index)


def _source_of_round(run: _Run, index: int, start_from: Path | None) -> str:
    if _given_pairs_round(run, index):
        return f"pairs {run.config.pairs}"
    return start_from.name if start_from else "reference"


def _prompts_of_round(run: _Run, index: int) -> list[str]:
    if _given_pairs_round(run, index):
        return [pair["prompt"] for pair in read_jsonl(run.out / round_folder_name(1) / "pairs.jsonl")]
    return round_prompts(run.config, run.train_prompts, index)


def _header(run: _Run) -> dict:
    config = run.config
    return {"config": asdict(config), "reference": config.reference, "reward": config.reward, "beta": config.beta}


def _dev_rewards(run: _Run, adapter: dict) -> dict:
    """The dev reward of the reference, of ``--start-adapter`` when given (what the rounds improve on), and
    of the final adapter."""
    rewards = {"reference": _dev_reward(run, run.reference)}
    if run.start_adapter is not None:
        rewards["start"] = _dev_reward(run, _adapter(run.start_adapter))
    return {**rewards, "adapter": adapter}


def _dev_reward(run: _Run, policy) -> dict:
    return mean_reward(policy, run.reward, run.dev_prompts, run.config.max_new_tokens)


def _adapter(folder: Path):
    """The adapter saved in ``folder``, loaded by its absolute path."""
    return load_language_model(str(folder.resolve()))


def _joined_curves(rounds: list[dict]) -> tuple[dict, list[int]]:
    """The rounds' curves on one step axis (round r's steps follow round r−1's), and where rounds 2.. start."""
    joined, starts, offset = {curve: [] for curve in CURVES}, [], 0
    for result in rounds:
        if offset:
            starts.append(offset + 1)
        for key in joined:
            joined[key] += [[offset + step, value] for step, value in result["curves"].get(key, [])]
        offset += max((step for step, _ in result["curves"]["loss"]), default=0)
    return joined, starts
