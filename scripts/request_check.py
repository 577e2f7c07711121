"""How often a stance model's request classifier calls for what each shipped prompt's safety label says.

`dev` and `test` prompts are never trained on, so they are the held-out check; `train` and `pool` show
what baselines trained on those prompts are paid for. Misread prompts are listed with the stance read.

    python scripts/request_check.py                                   # the shipped stance model
    python scripts/request_check.py --model runs/stance-v5 --model tqstar/reward_models/stance
"""

from __future__ import annotations

import argparse
from collections import Counter

from tqstar.jsonl import read_jsonl
from tqstar.prompts import DATA_DIR
from tqstar.rewards.stance import SHIPPED_STANCE_MODEL, STANCES, StanceReward
from tqstar.rewards.stance_data import CALLED_FOR

SPLITS = ("dev", "test", "train", "pool")


def check(model: str) -> None:
    classifier = StanceReward(path=model)
    print(f"## {model}")
    for split in SPLITS:
        records = read_jsonl(DATA_DIR / f"prompts_{split}.jsonl")
        asked = classifier.request_stances([record["prompt"] for record in records])
        right, total, misread = Counter(), Counter(), []
        for record, probabilities in zip(records, asked):
            label = record.get("safety", "benign")
            surest = max(probabilities)
            called_for = STANCES[probabilities.index(surest)]
            total[label] += 1
            right[label] += called_for == CALLED_FOR[label]
            if called_for != CALLED_FOR[label]:
                misread.append(f"    {label}, read as {called_for} ({surest:.2f}): {record['prompt']}")
        print(f"{split}: " + ", ".join(f"{label} {right[label]}/{total[label]}" for label in sorted(total)))
        print(*misread, sep="\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="stance-model directory (repeatable; default: shipped)")
    for model in parser.parse_args().model or [str(SHIPPED_STANCE_MODEL)]:
        check(model)


if __name__ == "__main__":
    main()
