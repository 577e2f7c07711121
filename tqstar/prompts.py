"""Prompt sets: the shipped tqstar splits, local JSONL/JSON/CSV files, and a few Hugging Face datasets; and
the check that a prompt is text at all (``unicode_problem``)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from .errors import ConfigError

DATA_DIR = Path(__file__).parent / "data"
SPLITS = ("train", "dev", "test")
#: The training pool (scripts/make_prompt_pool.py, docs/baselines.md): 1,352 composed prompts, none near a
#: dev/test prompt; not an evaluation split, so the eval's safety labels read SPLITS only.
POOL = "pool"
FILE_SUFFIXES = (".jsonl", ".json", ".csv")
# name -> (default field, splits on the Hub, text is in "\n\nHuman: ... \n\nAssistant:" format)
HF_DATASETS = {
    "Dahoas/full-hh-rlhf": ("prompt", ("train", "test"), True),
    "openbmb/UltraFeedback": ("instruction", ("train",), False),
    "berkeley-nest/Nectar": ("prompt", ("train",), True),
}
_FIX = "save the prompts to a local JSONL file ({\"prompt\": ...} per line) and pass its path instead"
_HH_TURN = re.compile(r"(?:^|\n\n)\s*(Human|Assistant):[ \t]?")


def hh_to_messages(text: str) -> list[dict]:
    """Split HH-RLHF text ("\\n\\nHuman: ...\\n\\nAssistant: ...") into chat messages.

    Roles become "user"/"assistant"; empty turns (like the trailing "Assistant:") are dropped.
    Text without any Human/Assistant marker is returned as one user message.
    """
    parts = _HH_TURN.split(text)
    if len(parts) == 1:
        return [{"role": "user", "content": text.strip()}] if text.strip() else []
    pairs = zip(parts[1::2], parts[2::2])
    return [{"role": "user" if who == "Human" else "assistant", "content": body.strip()}
            for who, body in pairs if body.strip()]


def unicode_problem(text: str) -> str | None:
    """What stops ``text`` from being UTF-8, or None. A lone surrogate is what a non-UTF-8 byte on the
    command line becomes, and what an unpaired ``\\ud800`` escape in JSON decodes to; tokenizers and JSON
    writers fail on it far from where it came in, so it is refused where text enters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"is not valid UTF-8 text: {ascii(text[exc.start])} at character {exc.start} is a lone surrogate "
                "(a non-UTF-8 byte, or half of an escaped pair). Pass the text as UTF-8")
    return None


def _last_user_turn(text: str) -> str:
    """The last human turn of an HH-format conversation ("" when there is none)."""
    users = [m["content"] for m in hh_to_messages(text) if m["role"] == "user"]
    return users[-1] if users else ""


def _read_records(path: Path) -> list[dict]:
    """Rows of a .jsonl, .json (a list of objects) or .csv file, as dicts."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8.") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read ({e.strerror or e}); check its permissions.") from None
    if suffix == ".csv":
        return list(csv.DictReader(text.splitlines()))
    try:
        if suffix == ".json":
            rows = json.loads(text) if text.strip() else []
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); fix the file or export it again.") from e
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{path} must hold JSON objects (one per line for .jsonl, a list for .json), "
                          f'each with a text field such as {{"prompt": "..."}}.')
    return rows


def _pick_field(rows: list[dict], field: str, where: str, hh: bool = False) -> list[str]:
    """Non-empty text of `field` in each row; errors name the source, the field and the fix."""
    if not rows:
        raise ConfigError(f"{where} has no rows; give a file with at least one prompt.")
    if not any(field in r for r in rows):
        have = sorted({k for r in rows for k in r if k is not None})  # None: a CSV row's extra cells
        raise ConfigError(f"{where} has no field {field!r}; its fields are {have}. "
                          f"Name the one holding the prompt text with --prompt-field.")
    texts = [r.get(field) for r in rows]
    texts = [_last_user_turn(t) if hh else t.strip() for t in texts if isinstance(t, str)]
    texts = [t for t in texts if t]
    for i, t in enumerate(texts):
        problem = unicode_problem(t)
        if problem:
            raise ConfigError(f"Prompt {i + 1} of {where} {problem}; fix the file.")
    if not texts:
        raise ConfigError(f"Field {field!r} of {where} is empty in every row; "
                          f"point --prompt-field at the field that holds the prompt text.")
    return texts


def _load_shipped(split: str) -> list[str]:
    """Prompts of the tqstar set shipped in tqstar/data/prompts_<split>.jsonl."""
    if split not in SPLITS + (POOL,):
        raise ConfigError(f"Unknown split {split!r} for the tqstar prompt set; use one of {list(SPLITS + (POOL,))}.")
    return _pick_field(_read_records(DATA_DIR / f"prompts_{split}.jsonl"), "prompt", f"tqstar/{split}")


def _import_datasets(what: str):
    """The `datasets` library, or a ConfigError saying how to get it."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"Loading {what} needs the `datasets` library: run `pip install datasets`, "
                          f"or {_FIX}.") from None
    return datasets


def _load_hf(source: str, split: str, field: str | None, from_disk: bool) -> list[str]:
    """Prompts of a known Hub dataset, or of a directory saved with `Dataset.save_to_disk`."""
    default, splits, hh = HF_DATASETS.get(source, ("prompt", None, None))
    if splits is not None and split not in splits:
        raise ConfigError(f"{source} has only the split(s) {list(splits)} (asked: {split!r}); "
                          f"pass split={splits[0]!r} (--split {splits[0]}).")
    datasets = _import_datasets(source)
    try:
        ds = datasets.load_from_disk(source) if from_disk else datasets.load_dataset(source, split=split)
    except Exception as e:  # offline, hub down, gated, corrupt cache: all end the same way for the user
        need = "a readable dataset directory" if from_disk else "network access to the Hugging Face Hub"
        raise ConfigError(f"Could not load {source} ({type(e).__name__}: {e}). This needs {need}; "
                          f"alternatively {_FIX}.") from e
    if isinstance(ds, dict):  # a DatasetDict saved to disk: pick the split
        if split not in ds:
            raise ConfigError(f"{source} has splits {sorted(ds.keys())}, not {split!r}; pick one with --split.")
        ds = ds[split]
    field = field or default
    if field not in ds.column_names:
        raise ConfigError(f"{source} has no field {field!r}; its fields are {sorted(ds.column_names)}. "
                          f"Name the one holding the prompt text with --prompt-field.")
    column = list(ds[field])
    if hh is None:  # a saved directory: detect the HH format from the first rows
        hh = any(isinstance(t, str) and t.lstrip().startswith("Human:") for t in column[:50])
    return _pick_field([{field: t} for t in column], field, source, hh=hh)


def load_prompts(source: str = "tqstar", split: str = "test", field: str | None = None,
                 limit: int | None = None) -> list[str]:
    """Prompt texts from `source`, first `limit` of them when given.

    source: "tqstar" (the shipped set; split is train/dev/test, or "pool", the training pool), a local
    .jsonl/.json/.csv file (`field`, default "prompt", names the text column; split is ignored), a directory
    saved with `datasets`, or one of HF_DATASETS (HH-format prompts become their last user turn).
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}.")
    path = Path(source)
    if source == "tqstar":
        texts = _load_shipped(split)
    elif path.is_dir():
        texts = _load_hf(source, split, field, from_disk=True)
    elif path.is_file() and path.suffix.lower() in FILE_SUFFIXES:
        texts = _pick_field(_read_records(path), field or "prompt", str(path))
    elif source in HF_DATASETS:
        texts = _load_hf(source, split, field, from_disk=False)
    elif path.suffix.lower() in FILE_SUFFIXES or path.is_file():
        what = "does not exist" if not path.exists() else f"has an unsupported type; use {list(FILE_SUFFIXES)}"
        raise ConfigError(f"Prompt file {source} {what}.")
    else:
        raise ConfigError(f"Unknown prompt source {source!r}; use 'tqstar', a .jsonl/.json/.csv file, "
                          f"a saved dataset directory, or one of {list(HF_DATASETS)}.")
    texts = texts[:limit] if limit else texts
    if not texts:
        raise ConfigError(f"No prompts loaded from {source!r}; check the source, split and field.")
    return texts
