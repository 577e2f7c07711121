"""Training the stance model of ``tqstar.rewards.stance``: two 3-way MiniLM classifiers, request and response.

Each is a LoRA adapter with a 3-logit head fitted with class-weighted cross-entropy (harmless requests
outnumber harmful ones five to one) through transformers' ``Trainer``. Runs are resumable: a finished
classifier is kept, a killed one continues from its last checkpoint, and metadata.json comes last.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError
from ..jsonl import write_json
from ..models.spec import resolve_device
from ..options import at_least, between, check_field_types, claim_run, option, positive
from .stance import FORMAT, FORMAT_VERSION, STANCES
from .stance_data import ROLES, load_stance_examples
from .trained import BASE, MAX_POSITIONS, _load_base, batched_logits, load_adapter
from .training import (LORA_LAYERS, MAX_BATCH_SIZE, MAX_LORA_RANK, SHIPPED, _point_adapter_at_base,
                       finished_metadata)


@dataclass
class StanceModelConfig:
    """How the stance model is trained."""

    output: str = option("", "Directory for checkpoints, the two adapters and metadata.json.")
    data: str = option(SHIPPED, "Labelled examples: 'tqstar' (derived from the shipped data) or a .jsonl file.")
    epochs: float = option(3.0, "Passes over each classifier's training examples.")
    learning_rate: float = option(5e-4, "Learning rate of the LoRA adapters and the heads.")
    batch_size: int = option(32, "Examples per optimisation step.")
    lora_r: int = option(16, "LoRA rank of each adapter (on every linear layer).")
    max_length: int = option(128, "Most tokens of a text; longer ones are truncated.")
    save_steps: int = option(50, "Optimisation steps between the checkpoints a killed run resumes from.")
    seed: int = option(0, "Random seed of the heads' initialisation and of the data order.")
    limit: int | None = option(None, "Use only N training examples of each role, a seeded draw (quick runs, tests).")

    def __post_init__(self):
        check_field_types(self)
        if not self.output:
            raise ConfigError("Training a stance model needs an output directory. Pass --output DIR.")
        positive("epochs", self.epochs, "Use 1 to 3 passes over the examples.")
        positive("learning_rate", self.learning_rate, "A LoRA adapter trains well near 5e-4.")
        between("batch_size", self.batch_size, 1, MAX_BATCH_SIZE, "activations grow with it")
        between("lora_r", self.lora_r, 1, MAX_LORA_RANK, "the adapter's size grows with it")
        between("max_length", self.max_length, 8, MAX_POSITIONS, "MiniLM's position table ends there")
        at_least("save_steps", self.save_steps, 1)
        if self.limit is not None:
            at_least("limit", self.limit, 1)


def train_stance_model(config: StanceModelConfig, progress: bool = True) -> dict:
    """Train both classifiers into ``config.output`` and return the metadata written to metadata.json.

    Rerunning the same config is safe (a finished run is returned as is, a killed one resumes); an output
    directory started with other options is refused with ``ConfigError``, as is bad data.
    """
    out = Path(config.output)
    finished = finished_metadata(out, config)
    if finished is not None:
        return finished
    train, heldout = load_stance_examples(config.data)
    out.mkdir(parents=True, exist_ok=True)
    claim_run(out, {key: value for key, value in asdict(config).items() if key != "output"}, "a stance-model run",
              StanceModelConfig)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "base": BASE, "stances": list(STANCES),
                "config": asdict(config)}
    for role in ROLES:
        role_train = [e for e in train if e["role"] == role]
        if config.limit:  # a seeded draw, so that a small run still sees every stance
            role_train = random.Random(config.seed).sample(role_train, min(config.limit, len(role_train)))
        role_heldout = [e for e in heldout if e["role"] == role]
        model, tokenizer, loss = _trained(config, role, role_train, out, progress)
        metadata[role] = {"counts": {"train": _counts(role_train), "heldout": _counts(role_heldout)}, "loss": loss,
                          "heldout_accuracy": _accuracy(model, tokenizer, role_heldout, config.max_length)}
    write_json(out / "metadata.json", metadata)  # written last and atomically: its presence marks a finished run
    return metadata


def _trained(config: StanceModelConfig, role: str, examples: list[dict], out: Path, progress: bool):
    """One classifier: loaded from ``out/role`` when a run already finished it, else trained there.
    Returns (model, tokenizer, loss curve as [step, loss] pairs)."""
    curve = out / role / "loss.json"
    if curve.is_file():
        tokenizer, model = load_adapter(out / role, len(STANCES), device=None)
        return model, tokenizer, json.loads(curve.read_text())
    model, tokenizer, loss = _fit(config, role, examples, out, progress)
    write_json(curve, loss)  # after the adapter: its presence marks a finished classifier
    return model, tokenizer, loss


def _fit(config: StanceModelConfig, role: str, examples: list[dict], out: Path, progress: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import PrinterCallback, Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    set_seed(config.seed)  # before loading: the fresh head's initialisation draws from it
    tokenizer, base = _load_base(len(STANCES))
    lora = LoraConfig(task_type="SEQ_CLS", r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.0,
                      target_modules=LORA_LAYERS["all"])  # SEQ_CLS saves the head with the adapter
    model = get_peft_model(base, lora)
    labels = [STANCES.index(e["stance"]) for e in examples]
    counts = torch.bincount(torch.tensor(labels), minlength=len(STANCES)).clamp(min=1).float()
    weights = counts.sum() / (len(STANCES) * counts)  # each stance weighs as much in the loss, however rare

    def weighted_loss(outputs, targets, num_items_in_batch=None):
        return torch.nn.functional.cross_entropy(outputs.logits, targets, weight=weights.to(outputs.logits.device))

    checkpoints = out / f"checkpoints-{role}"
    args = TrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=config.epochs, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size, seed=config.seed, logging_steps=1,
        save_steps=config.save_steps, save_total_limit=2, report_to=[], disable_tqdm=not progress,
        remove_unused_columns=False, label_names=["labels"], use_cpu=resolve_device(None) == "cpu")
    trainer = Trainer(model=model, args=args, train_dataset=_encode(tokenizer, examples, labels, config.max_length),
                      data_collator=lambda rows: dict(tokenizer.pad(rows, return_tensors="pt")),
                      compute_loss_func=weighted_loss)
    if not progress:
        trainer.remove_callback(PrinterCallback)
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    trainer.model.save_pretrained(str(out / role))
    _point_adapter_at_base(out / role)
    (out / role / "README.md").unlink(missing_ok=True)  # PEFT's model-card template, empty here
    loss = [[entry["step"], entry["loss"]] for entry in trainer.state.log_history if "loss" in entry]
    return trainer.model.eval(), tokenizer, loss


def _encode(tokenizer, examples: list[dict], labels: list[int], max_length: int):
    from datasets import Dataset

    encoded = tokenizer([e["text"] for e in examples], truncation=True, max_length=max_length)
    return Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                              "labels": labels})


def _counts(examples: list[dict]) -> dict[str, int]:
    return {stance: sum(e["stance"] == stance for e in examples) for stance in STANCES}


def _accuracy(model, tokenizer, examples: list[dict], max_length: int) -> dict:
    """Share of held-out examples whose most likely stance is their label, overall and by stance."""
    logits = batched_logits(model, tokenizer, [e["text"] for e in examples], None, max_length, 64)
    hits: dict[str, list[bool]] = {}
    for example, row in zip(examples, logits):
        hits.setdefault(example["stance"], []).append(STANCES[row.index(max(row))] == example["stance"])
    every = [hit for group in hits.values() for hit in group]
    return {"overall": statistics.fmean(every) if every else None,
            "by_stance": {stance: statistics.fmean(group) for stance, group in sorted(hits.items())}}
