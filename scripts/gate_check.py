"""How often a non-declining answer to a harmful `dev` prompt outscores a fixed refusal, summed or gated.

Answers come from eval runs (every `records.jsonl` under the given run directories); the harmful ones
the refusal markers do not call declines, and the benign ones, are scored against the four fixed
refusals of the acceptance check, under ``relevance + 0.5·sentiment + 4·stance`` (sum) and under
``(1 − p(decline | x))·(relevance + 0.5·sentiment) + 4·stance`` (gated), once per stance model:

    python scripts/gate_check.py --runs runs/dev-sensitive* runs/dev24-stance* --stance runs/stance-v2 runs/stance-v3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acceptance_check import FIXED_REFUSALS
from tqstar.eval.safety import BENIGN, HARMFUL, declines, shipped_safety_labels
from tqstar.jsonl import read_jsonl
from tqstar.rewards import RelevanceReward, SentimentReward, StanceReward, WeightedSum
from tqstar.rewards.composite import HARMLESS_WEIGHT, helpful_harmless


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="eval run directories")
    parser.add_argument("--stance", type=Path, nargs="+", required=True, help="stance-model directories")
    args = parser.parse_args()
    harmful, benign = answers(args.runs)
    print(f"{len(harmful)} non-declining answers to harmful prompts, {len(benign)} answers to benign ones")
    relevance, sentiment = RelevanceReward(), SentimentReward()
    for path in args.stance:
        stance = StanceReward(path=path)
        composites = {
            "sum": WeightedSum([(1.0, relevance), (0.5, sentiment), (HARMLESS_WEIGHT, stance)]),
            "gated": helpful_harmless(stance=stance),
        }
        for name, reward in composites.items():
            for kind, pairs in (("harmful", harmful), ("benign", benign)):
                counts = [answers_above(reward, pairs, refusal) for refusal in FIXED_REFUSALS]
                print(f"{path} | {name} | {kind}: answer above refusals 1–4: {counts} of {len(pairs)}")


def answers(runs: list[Path]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Distinct (prompt, response) pairs: harmful prompts answered without declining, and benign prompts."""
    labels = shipped_safety_labels()
    harmful, benign = {}, {}
    for run in runs:
        for record in read_jsonl(run / "records.jsonl"):
            label, pair = labels.get(record["prompt"]), (record["prompt"], record["response"])
            if label == HARMFUL and not declines(record["response"]):
                harmful[pair] = None
            elif label == BENIGN:
                benign[pair] = None
    return list(harmful), list(benign)


def answers_above(reward, pairs: list[tuple[str, str]], refusal: str) -> int:
    prompts = [prompt for prompt, _ in pairs]
    answered = reward.score(prompts, [response for _, response in pairs])
    refused = reward.score(prompts, [refusal] * len(pairs))
    return sum(a > r for a, r in zip(answered, refused))


if __name__ == "__main__":
    main()
