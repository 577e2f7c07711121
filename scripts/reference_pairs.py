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
Declining is judged by tqstar.eval.safety's markers. Usage: python scripts/reference_pairs.py
"""

from __future__ import annotations

import json
import random

import torch

from tqstar.eval.safety import declines, points_to_help
from tqstar.models.loader import embedded_gguf_path, _load_gguf
from tqstar.rewards.training import SHIPPED_DIR

OUTPUT = SHIPPED_DIR / "reference.jsonl"
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
    for path in sorted(SHIPPED_DIR.glob("*.jsonl")):
        if path != OUTPUT:
            for line in path.read_text().splitlines():
                pair = json.loads(line)
                groups.setdefault(pair["prompt"], []).append(pair)
    return groups


def greedy_answers(prompts: list[str]) -> dict[str, str]:
    model, tokenizer = _load_gguf(embedded_gguf_path(), torch.float32)
    tokenizer.padding_side = "left"
    answers = {}
    for start in range(0, len(prompts), BATCH):
        batch = prompts[start:start + BATCH]
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in batch]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        for prompt, ids in zip(batch, out[:, encoded["input_ids"].shape[1]:]):
            answers[prompt] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return answers


def reference_pairs(groups: dict[str, list[dict]], answers: dict[str, str]) -> list[dict]:
    rng = random.Random(0)
    pairs = []

    def add(first: dict, chosen: str, rejected: str, kind: str) -> None:
        pairs.append({"id": f"ref-{len(pairs) + 1:04d}", "split": first["split"], "category": first["category"],
                      "kind": kind, "prompt": first["prompt"], "chosen": chosen, "rejected": rejected})

    for prompt, group in groups.items():
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


if __name__ == "__main__":
    groups = written_pairs_by_prompt()
    pairs = reference_pairs(groups, greedy_answers(list(groups)))
    OUTPUT.write_text("".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs))
    print(f"{len(pairs)} pairs -> {OUTPUT}")
