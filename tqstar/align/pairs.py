"""Preference pairs from a policy's own samples, and the dev measurement of a policy's reward."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from ..decoding.decoder import SamplingDecoder
from ..jsonl import append_jsonl, read_jsonl, rewrite_jsonl
from ..rewards.training import load_preference_pairs
from .config import AlignConfig

#: Round r's sampling seeds start this far from round r−1's, so rounds draw different responses.
ROUND_SEED_STRIDE = 1_000_003
#: z of a two-sided 95% normal interval.
Z95 = 1.959964


def build_pairs(config: AlignConfig, model, reward, prompts: list[str], progress: bool = True,
                folder: Path | None = None, round_index: int = 1) -> list[dict]:
    """Sample ``samples_per_prompt`` responses per prompt from ``model``, score them and pair the best with
    the worst, appending each to ``folder/pairs.jsonl`` (default: the output directory). Prompts already in
    that file are not redone; returns the pairs that are not near-ties."""
    path = Path(folder or config.output) / "pairs.jsonl"
    done = read_jsonl(path)
    rewrite_jsonl(path, done)  # drops a last line cut short by a kill, before anything is appended
    seen = {record["prompt"] for record in done}
    todo = [p for p in prompts if p not in seen]
    seed = config.seed + ROUND_SEED_STRIDE * (round_index - 1) + len(done)
    sampler = SamplingDecoder(model=model, temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                              method="sample", reward=reward, generator=torch.Generator().manual_seed(seed))
    for prompt in _progress(todo, progress, "sampling pairs"):
        results = sampler.generate([prompt] * config.samples_per_prompt)
        best = max(results, key=lambda r: r.reward)
        worst = min(results, key=lambda r: r.reward)
        record = {"prompt": prompt, "chosen": best.text, "rejected": worst.text,
                  "chosen_reward": best.reward, "rejected_reward": worst.reward,
                  "skipped": best.reward - worst.reward < config.min_margin or best.text == worst.text}
        append_jsonl(path, [record])
        done.append(record)
    return [r for r in done if not r["skipped"]]


#: A later round's share of the given pairs (--given-pairs-per-round), beside its sampled ``pairs.jsonl``.
MIXED_PAIRS_FILE = "given_pairs.jsonl"


def given_pairs(config: AlignConfig, folder: Path) -> list[dict]:
    """The training pairs of ``config.pairs``, at most ``pairs_per_prompt`` per prompt (a seeded draw, in
    file order), recorded in ``folder/pairs.jsonl`` like sampled pairs so a round's folder always says what
    it trained on."""
    records = _kept_given_pairs(config)
    rewrite_jsonl(Path(folder) / "pairs.jsonl", records)
    return records


def mixed_given_pairs(config: AlignConfig, folder: Path, round_index: int) -> list[dict]:
    """Round ``round_index``'s draw of ``given_pairs_per_round`` of the given pairs (seeded by
    --seed and the round, so a resumed round draws the same), recorded in ``folder/given_pairs.jsonl``."""
    kept = _kept_given_pairs(config)
    rng = random.Random(config.seed + ROUND_SEED_STRIDE * round_index)
    records = rng.sample(kept, min(config.given_pairs_per_round, len(kept)))
    rewrite_jsonl(Path(folder) / MIXED_PAIRS_FILE, records)
    return records


def _kept_given_pairs(config: AlignConfig) -> list[dict]:
    """The given train pairs, at most ``pairs_per_prompt`` per prompt, as records like sampled pairs."""
    train = [{**pair, "skipped": False} for pair in load_preference_pairs(config.pairs)[0]]
    if config.pairs_per_prompt is None:
        return train
    order = list(range(len(train)))
    random.Random(config.seed).shuffle(order)
    kept, per_prompt = set(), Counter()
    for index in order:
        per_prompt[train[index]["prompt"]] += 1
        if per_prompt[train[index]["prompt"]] <= config.pairs_per_prompt:
            kept.add(index)
    return [pair for index, pair in enumerate(train) if index in kept]


def mean_reward(model, reward, prompts: list[str], max_new_tokens: int) -> dict:
    """Mean, spread and 95% interval of the mean (normal approximation, mean ± 1.96·sd/√n) of the reward
    of greedy responses."""
    decoder = SamplingDecoder(model=model, temperature=0.0, max_new_tokens=max_new_tokens, method="greedy",
                              reward=reward)
    results = decoder.generate(prompts)
    scores = [r.reward for r in results]
    mean = statistics.fmean(scores)
    stdev = statistics.stdev(scores) if len(scores) > 1 else 0.0
    half = Z95 * stdev / math.sqrt(len(scores))
    return {"mean": mean, "stdev": stdev, "n": len(scores), "interval": [mean - half, mean + half]}


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    return tqdm(items, desc=desc)
