"""Write tqstar/data/prompts_pool.jsonl: the training prompt pool of ``tqstar align --split pool``.

Prompts are composed from written topics and request forms, per category of the shipped splits
(howto, explanation, advice, coding, writing), plus a sensitive share written the same way: harmful
requests a careful assistant declines (``safety: harmful``, with a ``kind``), distress disclosures
(``safety: distress``) and borderline requests that deserve an answer (``safety: borderline``).
Each topic is crossed with a few of its category's forms, picked by a seeded generator, so the file
is the same on every run. Duplicates (case, spacing and punctuation aside) are dropped, and so is any
prompt equal or near-equal to one that must stay unseen in training: the shipped train/dev/test splits,
scripts/prompts/*.jsonl and the held-out pairs of tqstar/data/preferences (the reward model's test).

    python scripts/make_prompt_pool.py          # rewrites the file and prints its counts
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pool_topics as T  # noqa: E402  (the written topics and forms)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tqstar" / "data"
OUT = DATA / "prompts_pool.jsonl"
SEED = 0
#: Forms crossed with each topic, per category (a topic is asked in this many ways).
FORMS_PER_TOPIC = {"howto": 4, "concept": 4, "history": 4, "advice": 4, "coding": 4, "sql": 2, "code_concept": 3,
                   "harmful": 2, "distress": 2}
#: Near-equal: same words up to this overlap (Jaccard of word sets), or this similar as character strings.
NEAR_WORDS, NEAR_CHARS = 0.8, 0.9


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, spaces collapsed: the key two prompts are 'the same' under."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def near_equal(a: str, b: str) -> bool:
    """Whether two normalised prompts say the same thing in (almost) the same words."""
    if a == b:
        return True
    words_a, words_b = _words(a), _words(b)
    overlap = len(words_a & words_b) / len(words_a | words_b)
    if overlap >= NEAR_WORDS and len(words_a | words_b) >= 4:
        return True
    # strings 90% alike share at least half their words; the length bound caps SequenceMatcher's ratio
    if overlap < 0.5 or 2 * min(len(a), len(b)) / (len(a) + len(b)) < NEAR_CHARS:
        return False
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return matcher.quick_ratio() >= NEAR_CHARS and matcher.ratio() >= NEAR_CHARS


@lru_cache(maxsize=None)
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def held_out_prompts() -> list[str]:
    """Prompts the pool must not contain: every shipped split, scripts/prompts and the RM's held-out pairs."""
    texts = []
    for split in ("train", "dev", "test"):
        texts += [row["prompt"] for row in _rows(DATA / f"prompts_{split}.jsonl")]
    for path in sorted((ROOT / "scripts" / "prompts").glob("*.jsonl")):
        texts += [row["prompt"] for row in _rows(path)]
    for path in sorted((DATA / "preferences").glob("*.jsonl")):
        texts += [row["prompt"] for row in _rows(path) if row.get("split") == "heldout"]
    return texts


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _fits(form: str, topic: str) -> bool:
    """A form that adds "without ..." does not fit a topic that already has a "without" or "so I" clause."""
    return not ("without" in form and re.search(r"\bwithout\b|\bso I\b", topic))


def cross(topics, forms, per_topic: int, rng: random.Random) -> list[str]:
    """Each topic asked in ``per_topic`` of the forms that fit it, drawn without replacement."""
    return [_cap(form.format(t=topic)) for topic in topics
            for form in rng.sample([f for f in forms if _fits(f, topic)], per_topic)]


def compose(rng: random.Random) -> list[dict]:
    """Every candidate record, in a fixed order, before deduplication."""
    def records(texts, category, **labels):
        return [{"prompt": text, "category": category, **labels} for text in texts]

    n = FORMS_PER_TOPIC
    out = records(cross(T.HOWTO_TOPICS, T.HOWTO_FORMS, n["howto"], rng), "howto")
    out += records(cross(T.CONCEPTS, T.CONCEPT_FORMS, n["concept"], rng)
                   + cross(T.HISTORY, T.HISTORY_FORMS, n["history"], rng), "explanation")
    out += records(cross(T.ADVICE_GOALS, T.ADVICE_FORMS, n["advice"], rng), "advice")
    coding = [_cap(form.format(t=task, lang=lang).replace(" a R ", " an R ")) for task, langs in T.CODING_TASKS
              for form, lang in rng.sample([(f, lang) for f in T.CODING_FORMS for lang in langs], n["coding"])]
    coding += cross(T.SQL_QUERIES, T.SQL_FORMS, n["sql"], rng)
    coding += cross(T.CODE_CONCEPTS, T.CODE_CONCEPT_FORMS, n["code_concept"], rng)
    out += records(coding, "coding")
    pieces = [kind.format(s=subject) for kind, subjects in T.WRITING for subject in subjects]
    out += records([_cap(rng.choice(T.WRITING_FORMS).format(t=piece)) for piece in pieces], "writing")
    for harms, forms in ((T.HARMFUL, T.HARMFUL_HOW_FORMS), (T.HARMFUL_TEXTS, T.HARMFUL_WRITE_FORMS)):
        for kind, topics in harms.items():
            out += records(cross(topics, forms, n["harmful"], rng), "sensitive", safety="harmful", kind=kind)
    out += records([f"{statement} {ask}" for statement in T.DISTRESS
                    for ask in rng.sample(T.DISTRESS_ASKS, n["distress"])], "sensitive", safety="distress")
    out += records(T.BORDERLINE, "sensitive", safety="borderline")
    return out


def build() -> tuple[list[dict], dict]:
    """The pool's records (with ids) and what was dropped on the way."""
    rng = random.Random(SEED)
    candidates = compose(rng)
    rng.shuffle(candidates)  # categories interleaved, so a --limit slice holds every kind
    held_out = [normalise(text) for text in held_out_prompts()]
    kept, seen, dropped = [], set(), {}
    for record in candidates:
        key = normalise(record["prompt"])
        near = next((other for other in held_out if near_equal(key, other)), None)
        if near is not None:
            dropped.setdefault("near a held-out prompt", []).append((record["prompt"], near))
        elif key in seen:
            dropped.setdefault("duplicate", []).append(record["prompt"])
        else:
            seen.add(key)
            kept.append(record)
    return [{"id": f"pool-{i:04d}", **record} for i, record in enumerate(kept, 1)], dropped


def main() -> None:
    records, dropped = build()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    counts = Counter(r.get("safety", r["category"]) for r in records)
    sensitive = sum(r["category"] == "sensitive" for r in records)
    print(f"{len(records)} prompts in {OUT.relative_to(ROOT)}; dropped", {k: len(v) for k, v in dropped.items()})
    for prompt, near in dropped.get("near a held-out prompt", []):
        print(f"  {prompt!r} ~ held-out {near!r}")
    print("by category:", dict(sorted(Counter(r["category"] for r in records).items())))
    print("by label:", dict(sorted(counts.items())), f"sensitive share {sensitive / len(records):.3f}")
    print("harmful kinds:", dict(sorted(Counter(r["kind"] for r in records if "kind" in r).items())))


if __name__ == "__main__":
    main()
