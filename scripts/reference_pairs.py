"""Build tqstar/data/preferences/reference.jsonl: preference pairs over the reference model's own answers.

The written pairs teach what refusals and compliance look like; these teach when each is right, on
the text a decoder actually produces. For every prompt of the written pairs, SmolLM2's greedy answer
(48 tokens, chat template) becomes
  * on a benign or borderline prompt: chosen, against a generic refusal (skipped if it already declines);
  * on a harmful prompt: rejected, against the prompt's written refusal and against a generic refusal
    (skipped if it already declines);
  * on a distress prompt: rejected, against the written supportive reply (skipped if it points to help).
So one generic refusal is chosen under some prompts and rejected under others, and the reference's
style is chosen under some and rejected under others: only the prompt tells them apart.
Declining is judged by tqstar.eval.safety's markers.

    python scripts/reference_pairs.py                      # reference.jsonl from greedy answers
    python scripts/reference_pairs.py --answers RUN_DIR --output PATH --prefix adv
        # the same pairs over the responses of a `tqstar eval` run (a decoder's own outputs), for the
        # prompts of the written pairs that the run answered
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from tqstar.eval import read_records
from tqstar.eval.safety import declines, points_to_help
from tqstar.jsonl import read_jsonl
from tqstar.models import load_language_model
from tqstar.rewards.training import SHIPPED_DIR

OUTPUT = SHIPPED_DIR / "reference.jsonl"
WRITTEN = ("benign", "borderline", "distress", "harmful")  # the files written by hand, in name order
MAX_NEW_TOKENS, BATCH = 48, 50
#: None of these is among the refusals the acceptance check in docs/reward.md compares against.
GENERIC_REFUSALS = [
    "Sorry, I can't help with that.",
    "I'm afraid I can't assist with this request.",
    "I won't be able to answer that, sorry.",
    "Unfortunately, that's not something I can help with.",
    "I'm sorry, but I must decline this request.",
    "I'd rather not get into that. Is there something else I can help with?",
    "That's not something I'm able to help with, but I'm happy to assist with another question.",
    "I can't provide that. Please ask a qualified professional.",
    "Sorry, this request falls outside what I can help with.",
    "I'm not comfortable answering that. Could I help with something else?",
]


def written_pairs_by_prompt() -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for name in WRITTEN:
        for pair in read_jsonl(SHIPPED_DIR / f"{name}.jsonl"):
            groups.setdefault(pair["prompt"], []).append(pair)
    return groups


def greedy_answers(prompts: list[str]) -> dict[str, str]:
    # transformers' generate on the embedded model; prompts go through the model's own chat template
    reference = load_language_model("smollm2", dtype="float32")
    tokenizer = reference.tokenizer
    tokenizer.padding_side = "left"
    answers = {}
    for start in range(0, len(prompts), BATCH):
        batch = prompts[start:start + BATCH]
        encoded = tokenizer.pad({"input_ids": [reference.encode_prompt(p) for p in batch]}, return_tensors="pt")
        with torch.inference_mode():
            out = reference.model.generate(**encoded, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                           pad_token_id=tokenizer.pad_token_id)
        for prompt, ids in zip(batch, out[:, encoded["input_ids"].shape[1]:]):
            answers[prompt] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return answers


def reference_pairs(groups: dict[str, list[dict]], answers: dict[str, str], prefix: str = "ref",
                    answered_by: str = "reference") -> list[dict]:
    rng = random.Random(0)
    pairs = []

    def add(first: dict, chosen: str, rejected: str, kind: str) -> None:
        pairs.append({"id": f"{prefix}-{len(pairs) + 1:04d}", "split": first["split"], "category": first["category"],
                      "kind": kind.replace("reference", answered_by), "prompt": first["prompt"], "chosen": chosen, "rejected": rejected})

    for prompt, group in groups.items():
        if prompt not in answers:
            continue
        first, answer = group[0], answers[prompt]
        if not answer:
            continue
        if first["category"] in ("benign", "borderline"):
            if not declines(answer):
                add(first, answer, rng.choice(GENERIC_REFUSALS), "reference_vs_refusal")
        elif first["category"] == "harmful":
            if not declines(answer):
                add(first, first["chosen"], answer, "written_vs_reference")
                add(first, rng.choice(GENERIC_REFUSALS), answer, "refusal_vs_reference")
        elif not points_to_help(answer):  # distress
            add(first, first["chosen"], answer, "written_vs_reference")
    return pairs


def eval_answers(run_dir: Path) -> dict[str, str]:
    return {row["prompt"]: row["response"].strip() for row in read_records(run_dir)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=Path, help="a tqstar eval run directory (default: greedy answers)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--prefix", default="ref", help="id prefix of the pairs")
    args = parser.parse_args()
    groups = written_pairs_by_prompt()
    answers = eval_answers(args.answers) if args.answers else greedy_answers(list(groups))
    pairs = reference_pairs(groups, answers, args.prefix, "decoder" if args.answers else "reference")
    args.output.write_text("".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs))
    print(f"{len(pairs)} pairs -> {args.output}")
