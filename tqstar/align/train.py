"""DPO training of the LoRA adapter with TRL, fresh or continued from an earlier round's adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..models.spec import resolve_device
from .config import AlignConfig

#: The curves an align run keeps, by the name TRL logs them under: the chosen answers' log-probability shows
#: whether DPO raises them or only lowers the rejected ones faster (what --sft-weight is for).
CURVES = {"loss": "loss", "margins": "rewards/margins", "chosen_logps": "logps/chosen"}
#: The files of a saved adapter (PEFT's ``save_pretrained``).
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md")


def train_adapter(config: AlignConfig, model_dir: str, pairs: list[dict], folder: Path | None = None,
                  start_from: Path | None = None) -> dict:
    """DPO with a LoRA adapter saved to ``folder`` (default: the output directory); resumes from the last
    checkpoint in ``folder/checkpoints``. ``start_from``: an adapter to train further (an earlier round's)
    instead of a fresh one; DPO's reference ρ_ref stays the plain model in ``model_dir`` either way."""
    from datasets import Dataset
    from peft import LoraConfig

    from transformers import AutoTokenizer
    from trl import DPOTrainer

    if not pairs:
        raise ConfigError("No usable pairs: every prompt's samples were near-ties. Lower --min-margin or "
                          "raise --samples-per-prompt.")
    folder = Path(folder or config.output)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    policy, reference = dpo_models(model_dir, start_from)
    data = Dataset.from_list([{
        "prompt": [{"role": "user", "content": p["prompt"]}],
        "chosen": [{"role": "assistant", "content": p["chosen"]}],
        "rejected": [{"role": "assistant", "content": p["rejected"]}],
    } for p in pairs])
    checkpoints = folder / "checkpoints"
    args = dpo_arguments(config, checkpoints)
    lora = None if start_from else LoraConfig(
        r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.0, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=data,
                         processing_class=tokenizer, peft_config=lora)
    resume = any(checkpoints.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.model.save_pretrained(folder)
    return {curve: [(e["step"], e[logged]) for e in trainer.state.log_history if logged in e]
            for curve, logged in CURVES.items()}


def dpo_arguments(config: AlignConfig, checkpoints: Path):
    """TRL's ``DPOConfig`` for ``config``: DPO's sigmoid loss, plus the NLL of the chosen answers weighted by
    ``sft_weight`` when it is positive."""
    from trl import DPOConfig

    losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, config.sft_weight]} if config.sft_weight else {}
    return DPOConfig(output_dir=str(checkpoints), beta=config.beta, learning_rate=config.learning_rate,
                     num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
                     logging_steps=1, save_steps=10, save_total_limit=2, report_to=[], seed=config.seed,
                     max_length=256, use_cpu=resolve_device(None) == "cpu",
                     # TRL's defaults (bf16 autocast, activation checkpointing) make a CPU step 100× slower
                     bf16=False, activation_checkpointing=False, **losses)


def dpo_models(model_dir: str, start_from: Path | None = None):
    """``(policy, reference)`` for ``DPOTrainer``. Fresh: the plain model, and None (TRL then takes the
    model with its new adapter switched off as ρ_ref). Continued: the model with ``start_from``'s adapter,
    trainable, and a second plain copy as ρ_ref; TRL would otherwise freeze a copy of that adapter as the
    reference, so each round would be anchored to the last instead of to the reference model."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    if start_from is None:
        return base, None
    from peft import PeftModel

    policy = PeftModel.from_pretrained(base, str(start_from), is_trainable=True)
    return policy, AutoModelForCausalLM.from_pretrained(model_dir)


def plain_model_dir(reference, out: Path) -> str:
    """TRL loads a model from a directory; save the reference once as plain safetensors. The path is absolute
    because the trainer writes it into every checkpoint's adapter config, which must load from any directory."""
    target = out.resolve() / "base-model"
    if not (target / "config.json").is_file():
        reference.model.save_pretrained(target)
        reference.tokenizer.save_pretrained(target)
    return str(target)


def point_adapter_at(folder: Path, reference_spec: str) -> None:
    """Record the reference *spec* as the base, so the adapter loads on any machine that resolves it."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = reference_spec
    path.write_text(json.dumps(config, indent=2))


def publish_adapter(source: Path, out: Path) -> None:
    """Copy the adapter in ``source`` (the last round's folder) to the top of ``out``."""
    for name in ADAPTER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
