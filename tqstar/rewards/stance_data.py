"""Labelled examples for the stance model: which stance a request calls for, which one a response takes.

An example is a JSON object ``{"text", "role", "stance", "split"}``: ``role`` is 'request' or 'response',
``stance`` one of answer, decline and support, ``split`` 'train' (also when absent) or 'heldout'.
``load_stance_examples('tqstar')`` derives them from the shipped preference pairs (their categories say
what each request calls for, and their categories and kinds what each side does), the shipped harmless
prompts, and ``stance_requests.jsonl``, requests written for this model.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import parse_object_line
from ..prompts import DATA_DIR
from .stance import ROLES, STANCES
from .training import SHIPPED, SPLITS, load_preference_pairs

#: What a request of each preference category calls for.
CALLED_FOR = {"harmful": "decline", "distress": "support", "benign": "answer", "borderline": "answer"}
#: Benign pairs whose rejected side is a poor *answer* (off topic, vague, rude), not a refusal.
POOR_ANSWERS = {"off_topic", "vague", "rude"}
#: Requests written for the stance model near the boundaries the preference data leaves thin: health,
#: sleep and account-security questions to answer, harmful and distress requests in everyday words.
WRITTEN_REQUESTS = DATA_DIR / "stance_requests.jsonl"
#: Prompt splits shipped with the package whose non-sensitive prompts are harmless requests to answer.
HARMLESS_PROMPT_SPLITS = ("train", "pool")
#: One in this many shipped harmless prompts is held out (chosen by a hash of the text, so stable).
HELDOUT_EVERY = 7
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: Words that make a sentence decline; the sentences of a refusal without them only offer an alternative.
DECLINING = re.compile(r"\b(can't|cannot|won't|not|unable|decline|sorry|afraid|refuse|shouldn't|don't|no)\b", re.I)
#: First-person openings put before written compliance. The written refusals mostly start with "I",
#: the written compliance almost never, and a classifier trained on that alone calls "I'd be happy to
#: help you get into your ex's email account" a decline (a decoder found exactly this on dev).
EAGER_OPENINGS = (
    "I'd be happy to help with that!", "I'll walk you through it.", "I can definitely help with this.",
    "I'd love to help!", "I'll keep it simple.", "I've got you covered.", "I'll explain how.",
    "I'd suggest this approach.", "I'm glad you asked!", "I think this will work for you.",
)

#: Hedges that decline within a sentence and then offer to comply, put before written compliance (an
#: answer). The split refusals teach "a declining sentence, then compliance"; decoders on dev went on to
#: write the hedge inside one sentence ("While I can't provide a specific solution, I can suggest a few
#: methods that can help you track your girlfriend's location without her knowing").
HEDGED_OPENINGS = (
    "While I can't provide a specific solution, I can suggest a few methods.",
    "I'm not able to give you the exact steps, but here is the general idea.",
    "While I'm not equipped to do this for you, I can walk you through it.",
    "I can't help with that directly, however, there are a few things you could try.",
    "Although I won't go into every detail, I can point you in the right direction.",
    "I'm not a substitute for a professional, but here's what you can do.",
    "I'm afraid I can't do it for you, but I can tell you how it's done.",
    "I don't recommend this, but if you insist, here's how.",
)


def load_stance_examples(source: str | os.PathLike = SHIPPED) -> tuple[list[dict], list[dict]]:
    """``(train, heldout)`` examples, each with exactly text, role, stance and split; duplicates dropped.

    ``source`` is 'tqstar' (derived from the shipped data) or a .jsonl file of examples. Raises
    ``ConfigError`` naming the file and line at fault, or when a role lacks training examples.
    """
    examples = _shipped_examples() if str(source) == SHIPPED else _read_examples(Path(source).expanduser())
    unique = list({(e["role"], e["text"]): e for e in examples}.values())
    train = [e for e in unique if e["split"] == "train"]
    for role in ROLES:
        if not any(e["role"] == role for e in train):
            raise ConfigError(f"Stance data {str(source)!r} holds no training examples of role {role!r}. Both "
                              "classifiers need some: add lines with \"role\": \"request\" and \"response\".")
    return train, [e for e in unique if e["split"] == "heldout"]


def _shipped_examples() -> list[dict]:
    train, heldout = load_preference_pairs(SHIPPED)
    examples = []
    for pair in train + heldout:
        chosen, rejected = _response_stances(pair)
        split = pair["split"]
        examples += [_example(pair["prompt"], "request", CALLED_FOR[pair["category"]], split),
                     _example(pair["chosen"], "response", chosen, split),
                     _example(pair["rejected"], "response", rejected, split)]
        if pair["category"] == "harmful":
            opening = EAGER_OPENINGS[zlib.crc32(pair["rejected"].encode()) % len(EAGER_OPENINGS)]
            hedge = HEDGED_OPENINGS[zlib.crc32(pair["prompt"].encode()) % len(HEDGED_OPENINGS)]
            examples += [_example(f"{opening} {pair['rejected']}", "response", "answer", split),
                         _example(f"{hedge} {pair['rejected']}", "response", "answer", split)]
            examples += _split_refusal(pair)
    examples += _read_examples(WRITTEN_REQUESTS)
    asked = {e["text"] for e in examples if e["role"] == "request"}
    for name in HARMLESS_PROMPT_SPLITS:
        for line in (DATA_DIR / f"prompts_{name}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("category") != "sensitive" and record["prompt"] not in asked:
                examples.append(_example(record["prompt"], "request", "answer", _hashed_split(record["prompt"])))
    return examples


def _response_stances(pair: dict) -> tuple[str, str]:
    """The stances of a shipped pair's chosen and rejected responses."""
    called_for = CALLED_FOR[pair["category"]]
    if called_for != "answer":
        return called_for, "answer"  # a refusal or a caring reply beats compliance or a brush-off
    if pair["kind"] in POOR_ANSWERS:
        return "answer", "answer"
    return "answer", "decline"  # a needless refusal or a preachy non-answer


def _split_refusal(pair: dict) -> list[dict]:
    """Three examples from a harmful pair's written refusal: its declining first sentence alone (a decline);
    the safe alternative after it alone, which declines nothing (an answer); and the declining sentence
    followed by the pair's compliance (an answer: it complies). Trained on whole refusals, the classifier
    took the alternative's caring vocabulary, or a refusal's opening words, for the decline, and decoders on
    dev wrote exactly that instead of declining ("a secure and safe way to get into my ex's e-commerce";
    "I don't know how to get into someone's email account. You need to use … a VPN")."""
    parts = SENTENCE_END.split(pair["chosen"].strip(), maxsplit=1)
    if len(parts) < 2 or not DECLINING.search(parts[0]) or DECLINING.search(parts[1]):
        return []
    declining, alternative = parts
    return [_example(declining, "response", "decline", pair["split"]),
            _example(alternative, "response", "answer", pair["split"]),
            _example(f"{declining} {pair['rejected']}", "response", "answer", pair["split"])]


def _hashed_split(text: str) -> str:
    return "heldout" if zlib.crc32(text.encode()) % HELDOUT_EVERY == 0 else "train"


def _example(text: str, role: str, stance: str, split: str) -> dict:
    return {"text": text, "role": role, "stance": stance, "split": split}


def _read_examples(path: Path) -> list[dict]:
    if not path.is_file():
        raise ConfigError(f"Stance data {str(path)!r} is not a file. Pass a .jsonl file of examples, or 'tqstar' "
                          "for the shipped set.")
    lines = path.read_text(encoding="utf-8").splitlines()
    examples = [_parse_example(line, f"{path}, line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not examples:
        raise ConfigError(f"{path} is empty. Write one JSON object per line with text, role and stance.")
    return examples


def _parse_example(line: str, where: str) -> dict:
    record = parse_object_line(line, where, "text, role and stance")
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: text is missing, empty or not text. Give every example a non-empty text.")
    for key, allowed in (("role", ROLES), ("stance", STANCES), ("split", SPLITS)):
        value = record.get(key, "train" if key == "split" else None)
        if value not in allowed:
            raise ConfigError(f"{where}: {key} is {value!r}. Use one of {', '.join(allowed)}.")
    return _example(text, record["role"], record["stance"], record.get("split", "train"))
