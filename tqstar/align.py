"""``tqstar align``: make an aligned baseline from a reference model and a reward, with DPO + LoRA.

1. Sample responses per prompt from the reference and score them with the reward.
2. Keep the best and worst response of each prompt as a chosen/rejected pair, skipping near-ties.
   Pairs are appended to ``pairs.jsonl`` as they are made, so a killed run loses none of them.
3. Train a LoRA adapter with TRL's ``DPOTrainer``; checkpoints let a killed run resume.
4. Save the adapter with ``metadata.json`` (reference, reward, β, counts, curves, dev rewards) and plots.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .decoding.config import SIZE_BOUNDS, SIZE_WHY
from .decoding.decoder import SamplingDecoder
from .errors import ConfigError
from .jsonl import append_jsonl, read_jsonl, rewrite_jsonl
from .models.loader import load_language_model
from .models.spec import resolve_device
from .options import at_least, between, check_field_types, claim_run, option, positive, temperature
from .prompts import load_prompts
from .rewards.loading import load_reward

MAX_LORA_RANK = 256


@dataclass
class AlignConfig:
    """How a baseline is made with DPO."""

    output: str = option("", "Directory for pairs, checkpoints, the adapter and its metadata.")
    reference: str = option("smollm2", "Reference model the adapter is trained on top of.")
    reward: str = option("helpful_harmless", "Reward the baseline is aligned to.")
    prompts: str = option("tqstar", "Prompt source: 'tqstar' (shipped set), a JSONL/CSV file or a dataset name.")
    prompt_field: str | None = option(None, "Field holding the prompt text in a file or dataset.")
    split: str = option("train", "Split used to build pairs.")
    limit: int | None = option(None, "Use only the first N training prompts.")
    samples_per_prompt: int = option(4, "Responses sampled from the reference per prompt.")
    temperature: float = option(1.0, "Sampling temperature of those responses.")
    max_new_tokens: int = option(48, "Most tokens per sampled response.")
    min_margin: float = option(0.1, "Skip a prompt whose best and worst reward differ by less than this.")
    beta: float = option(0.1, "β of DPO (recorded for the implicit reward β·log(ρ_BL/ρ_ref)).")
    lora_r: int = option(8, "LoRA rank.")
    learning_rate: float = option(5e-4, "Learning rate of the adapter.")
    epochs: float = option(2.0, "Passes over the pairs.")
    batch_size: int = option(4, "Pairs per optimisation step.")
    dev_limit: int = option(32, "Dev prompts used to measure the reward gain.")
    dev_prompts: str | None = option(None, "Source of those dev prompts (its dev split); default: --prompts, "
                                           "or the shipped set when --prompts is a file, which has no splits.")
    seed: int = option(0, "Random seed for sampling and training.")

    def __post_init__(self):
        check_field_types(self)
        if not self.output:
            raise ConfigError("align needs an output directory. Pass --output DIR.")
        # a pair needs two responses; the samples of a prompt are drawn together, like best_of
        between("samples_per_prompt", self.samples_per_prompt, 2, SIZE_BOUNDS["best_of"], SIZE_WHY)
        for name in ("max_new_tokens", "batch_size"):
            between(name, getattr(self, name), 1, SIZE_BOUNDS[name], SIZE_WHY)
        between("lora_r", self.lora_r, 1, MAX_LORA_RANK, "the adapter's size grows with it")
        at_least("dev_limit", self.dev_limit, 1)
        positive("beta", self.beta, "DPO's β is typically 0.1.")
        positive("learning_rate", self.learning_rate, "LoRA adapters train well near 5e-4.")
        positive("epochs", self.epochs, "Use 1 or 2 passes over the pairs.")
        temperature("temperature", self.temperature, greedy=False)  # pairs need varied responses


def build_pairs(config: AlignConfig, model, reward, prompts: list[str], progress: bool = True) -> list[dict]:
    """Sample, score and pair responses; prompts already in ``pairs.jsonl`` are not redone."""
    path = Path(config.output) / "pairs.jsonl"
    done = read_jsonl(path)
    rewrite_jsonl(path, done)  # drops a last line cut short by a kill, before anything is appended
    seen = {record["prompt"] for record in done}
    todo = [p for p in prompts if p not in seen]
    sampler = SamplingDecoder(model=model, temperature=config.temperature, max_new_tokens=config.max_new_tokens,
                              method="sample", reward=reward,
                              generator=torch.Generator().manual_seed(config.seed + len(done)))
    for prompt in _progress(todo, progress, "sampling pairs"):
        results = sampler.generate([prompt] * config.samples_per_prompt)
        best = max(results, key=lambda r: r.reward)
        worst = min(results, key=lambda r: r.reward)
        record = {"prompt": prompt, "chosen": best.text, "rejected": worst.text,
                  "chosen_reward": best.reward, "rejected_reward": worst.reward,
                  "skipped": best.reward - worst.reward < config.min_margin or best.text == worst.text}
        append_jsonl(path, [record])
        done.append(record)
    return [r for r in done if not r["skipped"]]


def train_adapter(config: AlignConfig, model_dir: str, pairs: list[dict]) -> dict:
    """DPO with a LoRA adapter; resumes from the last checkpoint in ``output/checkpoints``."""
    from datasets import Dataset
    from peft import LoraConfig

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    if not pairs:
        raise ConfigError("No usable pairs: every prompt's samples were near-ties. Lower --min-margin or "
                          "raise --samples-per-prompt.")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    data = Dataset.from_list([{
        "prompt": [{"role": "user", "content": p["prompt"]}],
        "chosen": [{"role": "assistant", "content": p["chosen"]}],
        "rejected": [{"role": "assistant", "content": p["rejected"]}],
    } for p in pairs])
    checkpoints = Path(config.output) / "checkpoints"
    args = DPOConfig(output_dir=str(checkpoints), beta=config.beta, learning_rate=config.learning_rate,
                     num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
                     logging_steps=1, save_steps=10, save_total_limit=2, report_to=[], seed=config.seed,
                     max_length=256, use_cpu=resolve_device(None) == "cpu",
                     # TRL's defaults (bf16 autocast, activation checkpointing) make a CPU step 100× slower
                     bf16=False, activation_checkpointing=False)
    lora = LoraConfig(r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    trainer = DPOTrainer(model=base, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    resume = any(checkpoints.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.model.save_pretrained(config.output)
    return {"loss": [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e],
            "margins": [(e["step"], e["rewards/margins"]) for e in trainer.state.log_history
                        if "rewards/margins" in e]}


def mean_reward(model, reward, prompts: list[str], max_new_tokens: int) -> dict:
    """Mean and spread of the reward of greedy responses."""
    decoder = SamplingDecoder(model=model, temperature=0.0, max_new_tokens=max_new_tokens, method="greedy",
                              reward=reward)
    results = decoder.generate(prompts)
    scores = [r.reward for r in results]
    return {"mean": statistics.fmean(scores), "stdev": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "n": len(scores)}


def run_align(config: AlignConfig, progress: bool = True) -> dict:
    """The whole recipe; returns the metadata it writes to ``output/metadata.json``."""

    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    check_same_run(config, out)
    reference = load_language_model(config.reference)
    reward = load_reward(config.reward)
    train_prompts = load_prompts(config.prompts, config.split, config.prompt_field, config.limit)
    dev_prompts = load_prompts(dev_source(config), "dev", config.prompt_field, config.dev_limit)
    pairs = build_pairs(config, reference, reward, train_prompts, progress)
    model_dir = _plain_model_dir(reference, out)
    curves = train_adapter(config, model_dir, pairs)
    _point_adapter_at(out, config.reference)
    adapted = load_language_model(str(out.resolve()))
    metadata = {
        "config": asdict(config), "reference": config.reference, "reward": config.reward, "beta": config.beta,
        "prompts": len(train_prompts), "pairs": len(pairs), "skipped_ties": len(read_jsonl(out / "pairs.jsonl"))
        - len(pairs), "curves": curves,
        "dev_reward": {"reference": mean_reward(reference, reward, dev_prompts, config.max_new_tokens),
                       "adapter": mean_reward(adapted, reward, dev_prompts, config.max_new_tokens)},
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2))
    _plot_curves(curves, out)
    return metadata


def dev_source(config: AlignConfig) -> str:
    # A file is read whole whatever the split, so its "dev" prompts would be its training prompts.
    if config.dev_prompts:
        return config.dev_prompts
    return "tqstar" if Path(config.prompts).is_file() else config.prompts


#: Options that may change between a killed run and its resumption: they pick prompts, not pairs.
RESUMABLE_CHANGES = ("output", "limit", "dev_limit", "dev_prompts")


def check_same_run(config: AlignConfig, out: Path) -> None:
    """Refuse to mix pairs or checkpoints made with other options (another reference, reward, β, ...)."""
    claim_run(out, {k: v for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES}, "an align run")


def _plain_model_dir(reference, out: Path) -> str:
    """TRL loads a model from a directory; save the reference once as plain safetensors."""
    target = out / "base-model"
    if not (target / "config.json").is_file():
        reference.model.save_pretrained(target)
        reference.tokenizer.save_pretrained(target)
    return str(target)


def _point_adapter_at(out: Path, reference_spec: str) -> None:
    """Record the reference *spec* as the base, so the adapter loads on any machine that resolves it."""
    path = out / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = reference_spec
    path.write_text(json.dumps(config, indent=2))


def _plot_curves(curves: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, title, unit in (("loss", "DPO loss", "loss (nats)"),
                             ("margins", "DPO reward margin, chosen − rejected", "margin (β × nats)")):
        if not curves[key]:
            continue
        steps, values = zip(*curves[key])
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(steps, values)
        ax.set_xlabel("optimisation step (batch of pairs)")
        ax.set_ylabel(unit)
        ax.set_title(f"{out.name}: {title}", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / f"{key}.png", dpi=120)
        plt.close(fig)


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    return tqdm(items, desc=desc)

