"""Training the small reward model of ``tqstar.rewards.trained`` on preference pairs.

``train_reward_model`` fits it to chosen/rejected pairs with the Bradley–Terry loss
−log σ(s(x, y_chosen) − s(x, y_rejected)) through TRL's ``RewardTrainer`` (LoRA on MiniLM's attention plus a
1-logit head); ``load_preference_pairs`` reads and checks the pairs. Runs are resumable from checkpoints.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import parse_object_line, write_json
from ..models.spec import resolve_device
from ..options import at_least, between, check_choice, check_field_types, claim_run, option, positive
from ..prompts import DATA_DIR
from .trained import BASE, FORMAT, FORMAT_VERSION, MAX_POSITIONS, _load_base, _score_pairs

SHIPPED = "tqstar"
SHIPPED_DIR = DATA_DIR / "preferences"
SPLITS = ("train", "heldout")
TEXT_FIELDS = ("prompt", "chosen", "rejected")
#: BERT's linear layers by name: an adapter on attention alone reads too little of the prompt (docs/reward.md).
LORA_LAYERS = {"all": ["query", "key", "value", "dense"], "attention": ["query", "value"]}
#: Upper bounds that keep a training run's memory bounded on a small machine.
MAX_BATCH_SIZE, MAX_LORA_RANK = 256, 256


@dataclass
class RewardModelConfig:
    """How the reward model is trained."""

    output: str = option("", "Directory for checkpoints, the adapter and metadata.json.")
    data: str = option(SHIPPED, "Preference pairs: 'tqstar' (the shipped set), a .jsonl file or a folder of them.")
    epochs: float = option(3.0, "Passes over the training pairs.")
    learning_rate: float = option(5e-4, "Learning rate of the LoRA adapter and the score head.")
    batch_size: int = option(16, "Pairs per optimisation step.")
    lora_r: int = option(16, "LoRA rank of the adapter.")
    lora_layers: str = option("all", "Where the adapter goes: 'all' linear layers, or 'attention' (query and value).",
                              choices=tuple(LORA_LAYERS))
    max_length: int = option(256, "Most tokens of a (prompt, response) pair; longer pairs are truncated.")
    save_steps: int = option(20, "Optimisation steps between the checkpoints a killed run resumes from.")
    seed: int = option(0, "Random seed of the head's initialisation and of the data order.")
    limit: int | None = option(None, "Use only the first N training pairs (quick runs and tests).")

    def __post_init__(self):
        check_field_types(self)
        if not self.output:
            raise ConfigError("Training a reward model needs an output directory. Pass --output DIR.")
        positive("epochs", self.epochs, "Use 1 to 3 passes over the pairs.")
        positive("learning_rate", self.learning_rate, "A LoRA adapter trains well near 5e-4.")
        between("batch_size", self.batch_size, 1, MAX_BATCH_SIZE, "activations grow with it")
        between("lora_r", self.lora_r, 1, MAX_LORA_RANK, "the adapter's size grows with it")
        at_least("save_steps", self.save_steps, 1)
        at_least("max_length", self.max_length, 8)
        if self.max_length > MAX_POSITIONS:
            raise ConfigError(f"max_length must be ≤ {MAX_POSITIONS} (MiniLM's position table), got "
                              f"{self.max_length}. Set max_length to {MAX_POSITIONS} or less.")
        if self.limit is not None:
            at_least("limit", self.limit, 1)
        check_choice("lora_layers", self.lora_layers, LORA_LAYERS)


def load_preference_pairs(source: str | os.PathLike = SHIPPED) -> tuple[list[dict], list[dict]]:
    """Read preference pairs and return ``(train, heldout)``.

    ``source`` is 'tqstar' (the shipped set), a .jsonl file, or a folder whose ``*.jsonl`` files are
    read in name order. Each non-blank line is a JSON object with non-empty ``prompt``, ``chosen`` and
    ``rejected`` texts (chosen ≠ rejected); ``split`` is 'train' (also when absent) or 'heldout';
    ``category`` defaults to the file's stem, ``kind`` (what the rejected side does wrong) to ''. Each
    returned pair has exactly the keys id, prompt, chosen, rejected, split, category and kind. Raises
    ``ConfigError`` naming the file and line at fault.
    """
    train, heldout = [], []
    for path in _preference_files(source):
        for pair in _read_pairs(path):
            (train if pair["split"] == "train" else heldout).append(pair)
    if not train:
        raise ConfigError(f"Preference data {str(source)!r} holds no training pairs, only held-out ones. "
                          "Mark some pairs \"split\": \"train\" (or leave the field out).")
    return train, heldout


def _preference_files(source) -> list[Path]:
    path = SHIPPED_DIR if str(source) == SHIPPED else Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if files:
            return files
        raise ConfigError(f"Folder {str(path)!r} holds no .jsonl files. Point data at a folder of preference "
                          "files, one .jsonl file, or 'tqstar' for the shipped set.")
    raise ConfigError(f"Preference data {str(source)!r} does not exist. Pass a .jsonl file, a folder of them, "
                      "or 'tqstar' for the shipped set.")


def _read_pairs(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    pairs = [_parse_pair(line, path, number) for number, line in enumerate(lines, 1) if line.strip()]
    if not pairs:
        raise ConfigError(f"{path} is empty: it holds no preference pairs. Write one JSON object per line with "
                          "prompt, chosen and rejected, or remove the file.")
    return pairs


def _parse_pair(line: str, path: Path, number: int) -> dict:
    where = f"{path}, line {number}"
    record = parse_object_line(line, where, "prompt, chosen and rejected")
    missing = [key for key in TEXT_FIELDS if key not in record]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}. Every pair needs prompt, chosen and rejected.")
    for key in TEXT_FIELDS:
        if not isinstance(record[key], str) or not record[key].strip():
            raise ConfigError(f"{where}: {key} is empty or not text. Give every pair non-empty prompt, chosen "
                              "and rejected texts.")
    if record["chosen"].strip() == record["rejected"].strip():
        raise ConfigError(f"{where} is a one-sided pair: chosen and rejected are the same text, so it says "
                          "nothing about preference. Fix one side or drop the pair.")
    split = record.get("split", "train")
    if split not in SPLITS:
        raise ConfigError(f"{where} has unknown split {split!r}. Use 'train' or 'heldout', or leave it out (train).")
    return {"id": str(record.get("id", f"{path.stem}:{number}")), "prompt": record["prompt"],
            "chosen": record["chosen"], "rejected": record["rejected"], "split": split,
            "category": str(record.get("category") or path.stem), "kind": str(record.get("kind") or "")}


def train_reward_model(config: RewardModelConfig, progress: bool = True) -> dict:
    """Train the reward model into ``config.output`` and return the metadata written to metadata.json.

    Rerunning the same config is safe: a finished run (metadata.json present) is returned as is, and a
    killed one resumes from its last checkpoint in ``output/checkpoints``. An output directory started
    with other options is refused with ``ConfigError``, as is bad preference data.
    """
    out = Path(config.output)
    finished = finished_metadata(out, config)
    if finished is not None:
        return finished
    train, heldout = load_preference_pairs(config.data)
    train = train[:config.limit] if config.limit else train
    out.mkdir(parents=True, exist_ok=True)
    # checkpoints made with other options (data, rate, rank, ...) must not be resumed
    claim_run(out, {key: value for key, value in asdict(config).items() if key != "output"}, "a reward-model run",
              RewardModelConfig)
    model, tokenizer, state, resumed = _fit(config, train, out, progress)
    model.eval()

    def score(prompts, responses):
        return _score_pairs(model, tokenizer, prompts, responses, config.max_length, 64)

    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "base": BASE,
        "counts": {"train": len(train), "heldout": len(heldout)}, "config": asdict(config),
        "steps": state.global_step, "resumed_from": resumed,
        "loss": [[entry["step"], entry["loss"]] for entry in state.log_history if "loss" in entry],
        "heldout_accuracy": _pairwise_accuracy(score, heldout),
        "train_scores": _score_spread(score, train),
    }
    write_json(out / "metadata.json", metadata)  # written last and atomically: its presence marks a finished run
    return metadata


def finished_metadata(out: Path, config) -> dict | None:
    """The metadata.json of a finished run of ``config`` (a dataclass) in ``out``, or None: it is written last,
    so it marks a finished run, and one made with other options is not this run."""
    path = out / "metadata.json"
    if not path.is_file():
        return None
    metadata = json.loads(path.read_text())
    return metadata if metadata.get("config") == asdict(config) else None


def _fit(config: RewardModelConfig, train: list[dict], out: Path, progress: bool):
    """RewardTrainer with LoRA; returns (model, tokenizer, trainer state, checkpoint resumed from or None)."""
    from peft import LoraConfig
    from transformers import PrinterCallback, set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import RewardConfig, RewardTrainer

    set_seed(config.seed)  # before loading: the fresh head's initialisation draws from it
    tokenizer, model = _load_base()
    checkpoints = out / "checkpoints"
    args = RewardConfig(
        output_dir=str(checkpoints), num_train_epochs=config.epochs, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size, seed=config.seed, logging_steps=1,
        save_steps=config.save_steps, save_total_limit=2, report_to=[], disable_tqdm=not progress,
        max_length=None,  # pairs are truncated when encoded; TRL would drop long ones instead
        remove_unused_columns=False,  # keep the segment-id columns for the collator
        activation_checkpointing=False, bf16=False, use_cpu=resolve_device(None) == "cpu")
    lora = LoraConfig(task_type="SEQ_CLS", r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.0,
                      target_modules=LORA_LAYERS[config.lora_layers])  # SEQ_CLS saves the classifier head with the adapter
    trainer = RewardTrainer(model=model, args=args, train_dataset=_encode(tokenizer, train, config.max_length),
                            processing_class=tokenizer, peft_config=lora, data_collator=_pair_collator(tokenizer))
    if not progress:
        trainer.remove_callback(PrinterCallback)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    trainer.model.save_pretrained(str(out))
    _point_adapter_at_base(out)
    return trainer.model, tokenizer, trainer.state, Path(last).name if last else None


def _encode(tokenizer, pairs: list[dict], max_length: int):
    """Pre-tokenised sentence pairs in the columns RewardTrainer takes as-is, plus segment ids."""
    from datasets import Dataset

    prompts = [p["prompt"] for p in pairs]
    columns = {}
    for side in ("chosen", "rejected"):
        encoded = tokenizer(prompts, [p[side] for p in pairs], truncation=True, max_length=max_length)
        columns[f"{side}_ids"] = encoded["input_ids"]
        columns[f"{side}_types"] = encoded["token_type_ids"]
    return Dataset.from_dict(columns)


def _pair_collator(tokenizer):
    """Pads a batch of pairs: all chosen rows first, then all rejected (RewardTrainer splits it in halves).

    TRL's own collator drops segment ids, and BERT reads the response as segment B."""
    def collate(examples: list[dict]) -> dict:
        rows = [{"input_ids": e[f"{side}_ids"], "token_type_ids": e[f"{side}_types"]}
                for side in ("chosen", "rejected") for e in examples]
        return dict(tokenizer.pad(rows, return_tensors="pt"))

    return collate


def _point_adapter_at_base(out: Path) -> None:
    """Record the package name as the base, not this machine's site-packages path."""
    path = out / "adapter_config.json"
    adapter_config = json.loads(path.read_text())
    adapter_config["base_model_name_or_path"] = BASE
    path.write_text(json.dumps(adapter_config, indent=2))


def _pairwise_accuracy(score, pairs: list[dict]) -> dict:
    """Share of pairs scored s(chosen) > s(rejected), overall and by category (None without pairs)."""
    prompts = [p["prompt"] for p in pairs]
    chosen = score(prompts, [p["chosen"] for p in pairs])
    rejected = score(prompts, [p["rejected"] for p in pairs])
    wins: dict[str, list[bool]] = {}
    for pair, good, bad in zip(pairs, chosen, rejected):
        wins.setdefault(pair["category"], []).append(good > bad)
    every = [win for group in wins.values() for win in group]
    return {"overall": statistics.fmean(every) if every else None,
            "by_category": {category: statistics.fmean(group) for category, group in sorted(wins.items())},
            "pairs_by_category": {category: len(group) for category, group in sorted(wins.items())}}


def _score_spread(score, pairs: list[dict]) -> dict:
    """Mean and (population) standard deviation of the scores of every chosen and rejected response."""
    prompts = [p["prompt"] for p in pairs]
    scores = score(prompts * 2, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    return {"mean": statistics.fmean(scores), "std": statistics.pstdev(scores), "n": len(scores)}
