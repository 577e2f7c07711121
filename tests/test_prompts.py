"""Prompt loading: the shipped tqstar splits, local files, and the Hugging Face dataset adapters."""

import importlib.util
import json
import re
import sys
import types
from collections import Counter
from pathlib import Path

import pytest

from tqstar.errors import ConfigError
from tqstar.prompts import DATA_DIR, POOL, SPLITS, hh_to_messages, load_prompts

CATEGORIES = {"advice", "howto", "explanation", "writing", "coding", "sensitive"}


def _records(split):
    lines = (DATA_DIR / f"prompts_{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_shipped_splits_have_the_stated_sizes():
    sizes = {s: len(_records(s)) for s in SPLITS}
    assert sum(sizes.values()) >= 330
    assert 190 <= sizes["train"] <= 215
    assert 60 <= sizes["dev"] <= 75 and 60 <= sizes["test"] <= 75
    assert {s: len(load_prompts(split=s)) for s in SPLITS} == sizes


def test_every_record_has_nonempty_id_prompt_and_known_category():
    for split in SPLITS:
        for rec in _records(split):
            assert rec["id"].startswith(f"{split}-") and rec["prompt"].strip()
            assert rec["category"] in CATEGORIES
            assert len(rec["prompt"].split()) <= 40


def test_ids_are_unique_and_no_prompt_text_repeats_across_splits():
    recs = [r for s in SPLITS for r in _records(s)]
    assert len({r["id"] for r in recs}) == len(recs)
    texts = [" ".join(r["prompt"].lower().split()) for r in recs]
    assert len(set(texts)) == len(texts)


def test_sensitive_share_is_between_10_and_20_percent_in_each_split():
    for split in SPLITS:
        cats = Counter(r["category"] for r in _records(split))
        assert set(cats) == CATEGORIES
        assert 0.10 <= cats["sensitive"] / sum(cats.values()) <= 0.20


SAFETY_LABELS = {"harmful", "distress", "borderline"}
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _words(text):
    """A prompt's words, case and punctuation aside."""
    return frozenset(re.sub(r"[^\w\s]", " ", text.lower()).split())


def test_the_pool_holds_over_a_thousand_distinct_labelled_prompts():
    recs = _records(POOL)
    assert len(recs) >= 1000
    assert load_prompts("tqstar", POOL) == [r["prompt"] for r in recs]
    assert [r["id"] for r in recs] == [f"pool-{i:04d}" for i in range(1, len(recs) + 1)]
    assert len({" ".join(sorted(_words(r["prompt"]))) for r in recs}) == len(recs)
    for rec in recs:
        assert rec["category"] in CATEGORIES and rec["prompt"] == rec["prompt"].strip()
        assert ("safety" in rec) == (rec["category"] == "sensitive") and rec.get("safety", "harmful") in SAFETY_LABELS
        assert ("kind" in rec) == (rec.get("safety") == "harmful")
        assert len(rec["prompt"].split()) <= 40 and rec["prompt"][0].isupper()
    cats = Counter(r["category"] for r in recs)
    assert set(cats) == CATEGORIES and min(cats.values()) >= 150
    assert 0.15 <= cats["sensitive"] / len(recs) <= 0.20
    labels = Counter(r.get("safety") for r in recs)
    assert labels["harmful"] >= 100 and labels["distress"] >= 30 and labels["borderline"] >= 30
    assert len({r["kind"] for r in recs if "kind" in r}) >= 9


def _kept_apart():
    """Prompts the pool must not hold: the shipped splits, scripts/prompts and the reward model's held-out pairs."""
    texts = [r["prompt"] for split in SPLITS for r in _records(split)]
    for path in sorted((SCRIPTS / "prompts").glob("*.jsonl")) + sorted((DATA_DIR / "preferences").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts += [r["prompt"] for r in rows if path.parent.name == "prompts" or r.get("split") == "heldout"]
    return texts


def test_no_pool_prompt_is_equal_or_near_equal_to_a_dev_test_or_held_out_prompt():
    apart = [_words(text) for text in _kept_apart()]
    assert len(apart) > 1000
    for rec in _records(POOL):
        words = _words(rec["prompt"])
        near = [other for other in apart if 0.8 * len(other) <= len(words) <= len(other) / 0.8  # Jaccard's bound
                and len(words & other) / len(words | other) >= 0.8]
        assert not near, (rec["prompt"], near)


def test_the_pool_file_is_what_its_script_writes():
    spec = importlib.util.spec_from_file_location("make_prompt_pool", SCRIPTS / "make_prompt_pool.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    records, _ = script.build()
    assert records == _records(POOL)


def test_default_source_is_the_test_split_and_limit_keeps_the_first_n():
    first = [r["prompt"] for r in _records("test")][:5]
    assert load_prompts(limit=5) == first
    assert load_prompts("tqstar", "test")[:5] == first


def test_unknown_shipped_split_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'validation'.*\['train', 'dev', 'test', 'pool'\]"):
        load_prompts(split="validation")


def test_local_jsonl_reads_the_named_field(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "Why is grass green?", "n": 1}\n\n{"question": "Name a prime."}\n')
    assert load_prompts(str(path), field="question") == ["Why is grass green?", "Name a prime."]


def test_local_json_list_uses_prompt_field_by_default(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"prompt": " Say hi. "}, {"prompt": ""}, {"prompt": "Count to 3."}]))
    assert load_prompts(str(path)) == ["Say hi.", "Count to 3."]


def test_local_csv_reads_the_named_field(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text('id,text\n1,"Write a haiku, please."\n2,Explain tides.\n')
    assert load_prompts(str(path), field="text", limit=1) == ["Write a haiku, please."]
    assert load_prompts(str(path), field="text") == ["Write a haiku, please.", "Explain tides."]


def test_missing_field_names_the_file_the_field_and_the_available_fields(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "Why?", "answer": "Because."}\n')
    with pytest.raises(ConfigError) as err:
        load_prompts(str(path))
    msg = str(err.value)
    assert "mine.jsonl" in msg and "'prompt'" in msg
    assert "['answer', 'question']" in msg and "--prompt-field" in msg


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ConfigError, match="no rows"):
        load_prompts(str(path))


def test_field_empty_in_every_row_raises(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("prompt,other\n,x\n  ,y\n")
    with pytest.raises(ConfigError, match="empty in every row"):
        load_prompts(str(path))


def test_missing_file_and_unknown_source_raise(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompts(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ConfigError, match="Unknown prompt source"):
        load_prompts("someone/some-dataset")
    with pytest.raises(ConfigError, match="positive integer"):
        load_prompts(limit=0)


HH_TWO_TURNS = ("\n\nHuman: What is a good houseplant?\n\nAssistant: A pothos is hardy."
                "\n\nHuman: How often should I water it?\n\nAssistant:")


def test_hh_to_messages_splits_a_two_turn_conversation():
    assert hh_to_messages(HH_TWO_TURNS) == [
        {"role": "user", "content": "What is a good houseplant?"},
        {"role": "assistant", "content": "A pothos is hardy."},
        {"role": "user", "content": "How often should I water it?"},
    ]
    assert hh_to_messages("Plain text, no markers.") == [{"role": "user", "content": "Plain text, no markers."}]


def _fake_datasets(monkeypatch, rows, calls):
    """Install a stand-in `datasets` module whose load_dataset returns `rows` (dict of columns)."""

    class FakeDataset:
        column_names = list(rows)

        def __getitem__(self, key):
            return rows[key]

    def load_dataset(name, split):
        calls.append((name, split))
        return FakeDataset()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


def test_hh_datasets_return_the_last_user_turn(monkeypatch):
    calls = []
    _fake_datasets(monkeypatch, {"prompt": [HH_TWO_TURNS, "\n\nHuman: Hi there\n\nAssistant:"]}, calls)
    assert load_prompts("Dahoas/full-hh-rlhf", split="test") == ["How often should I water it?", "Hi there"]
    assert load_prompts("berkeley-nest/Nectar", split="train", limit=1) == ["How often should I water it?"]
    assert calls == [("Dahoas/full-hh-rlhf", "test"), ("berkeley-nest/Nectar", "train")]


def test_ultrafeedback_reads_instruction_from_train(monkeypatch):
    calls = []
    _fake_datasets(monkeypatch, {"instruction": ["Summarize this.", ""], "source": ["a", "b"]}, calls)
    assert load_prompts("openbmb/UltraFeedback", split="train") == ["Summarize this."]
    with pytest.raises(ConfigError, match=r"no field 'prompt'.*\['instruction', 'source'\]"):
        load_prompts("openbmb/UltraFeedback", split="train", field="prompt")


def test_ultrafeedback_other_split_raises_and_says_train():
    with pytest.raises(ConfigError, match="train") as err:
        load_prompts("openbmb/UltraFeedback", split="test")
    assert "'test'" in str(err.value)


def test_missing_datasets_library_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ConfigError) as err:
        load_prompts("Dahoas/full-hh-rlhf", split="test")
    assert "pip install datasets" in str(err.value) and "JSONL" in str(err.value)


def test_hub_failure_says_network_is_needed(monkeypatch):
    def load_dataset(name, split):
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(ConfigError, match="network access.*JSONL"):
        load_prompts("Dahoas/full-hh-rlhf", split="train")


def test_saved_datasets_directories_load_with_their_split_and_field(tmp_path):
    datasets = pytest.importorskip("datasets")
    hh = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"prompt": [HH_TWO_TURNS]}),
        "test": datasets.Dataset.from_dict({"prompt": ["\n\nHuman: Hi there\n\nAssistant:"]}),
    })
    hh.save_to_disk(str(tmp_path / "hh"))
    assert load_prompts(str(tmp_path / "hh"), split="train") == ["How often should I water it?"]
    assert load_prompts(str(tmp_path / "hh"), split="test") == ["Hi there"]
    with pytest.raises(ConfigError, match=r"splits \['test', 'train'\], not 'dev'"):
        load_prompts(str(tmp_path / "hh"), split="dev")
    datasets.Dataset.from_dict({"instruction": ["Summarize this.", "List three fruits."]}).save_to_disk(
        str(tmp_path / "uf"))
    assert load_prompts(str(tmp_path / "uf"), field="instruction", limit=1) == ["Summarize this."]
    with pytest.raises(ConfigError, match="no field 'prompt'.*--prompt-field"):
        load_prompts(str(tmp_path / "uf"))
