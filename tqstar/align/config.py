"""The options of ``tqstar align``, the check that a resumed run keeps them, and which prompts each round uses."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from ..decoding.config import SIZE_BOUNDS, SIZE_WHY
from ..errors import ConfigError
from ..models.baselines import adapter_base, adapter_dir, shipped_adapters
from ..models.spec import same_model
from ..options import at_least, between, check_field_types, claim_run, option, positive, temperature

MAX_LORA_RANK = 256
#: Each round samples every prompt again and trains again, so a run's time grows with its rounds; the gains
#: of iterative DPO level off after a handful of rounds.
MAX_ROUNDS = 50


@dataclass
class AlignConfig:
    """How a baseline is made with DPO."""

    output: str = option("", "Directory for pairs, checkpoints, the adapter and its metadata.")
    reference: str = option("smollm2", "Reference model the adapter is trained on top of.")
    reward: str = option("helpful_harmless", "Reward the baseline is aligned to.")
    prompts: str = option("tqstar", "Prompt source: 'tqstar' (shipped set), a JSONL/CSV file or a dataset name.")
    prompt_field: str | None = option(None, "Field holding the prompt text in a file or dataset.")
    split: str = option("train", "Split used to build pairs ('pool': the shipped pool of ~1,350 training prompts).")
    limit: int | None = option(None, "Use only the first N training prompts.")
    samples_per_prompt: int = option(4, "Responses sampled from the policy per prompt.")
    temperature: float = option(1.0, "Sampling temperature of those responses.")
    max_new_tokens: int = option(48, "Most tokens per sampled response.")
    min_margin: float = option(0.1, "Skip a prompt whose best and worst reward differ by less than this.")
    beta: float = option(0.1, "β of DPO (recorded for the implicit reward β·log(ρ_BL/ρ_ref)).")
    sft_weight: float = option(0.0, "Weight of a supervised (negative log-likelihood) loss on the chosen answers "
                                    "added to DPO's (TRL's 'sft' loss type, as in RPO). DPO alone on pairs the "
                                    "policy would not write (--pairs) lowers the chosen answers' likelihood along "
                                    "with the rejected ones'; this term makes the policy write them. 0: DPO alone.")
    lora_r: int = option(8, "LoRA rank.")
    learning_rate: float = option(5e-4, "Learning rate of the adapter.")
    epochs: float = option(2.0, "Passes over the pairs (of each round).")
    batch_size: int = option(4, "Pairs per optimisation step.")
    dev_limit: int = option(32, "Dev prompts used to measure the reward gain.")
    dev_prompts: str | None = option(None, "Source of those dev prompts (its dev split); default: --prompts, "
                                           "or the shipped set when --prompts is a file, which has no splits.")
    rounds: int = option(1, "Rounds of on-policy DPO. Round 1 samples from the reference; round r ≥ 2 samples "
                            "from the reference with round r−1's adapter, pairs best and worst again and trains "
                            "that adapter further (DPO's reference stays the reference). Each round has its "
                            "folder round-N; 1 keeps everything at the top of --output.")
    prompts_per_round: int | None = option(None, "Prompts sampled per round: round r takes the r-th slice of "
                                                 "this many from the training prompts shuffled by --seed "
                                                 "(wrapping around). Unset: every prompt in every round.")
    pairs: str | None = option(None, "Round 1 trains on these preference pairs (their train split) instead of "
                                     "sampling: 'tqstar' for the project's written set, a .jsonl file or a folder "
                                     "of them (prompt, chosen, rejected per line). Later rounds sample as usual. "
                                     "With --start-adapter they are only mixed in (--given-pairs-per-round).")
    pairs_per_prompt: int | None = option(None, "With --pairs: keep at most this many pairs per prompt, drawn by "
                                                "--seed. Unset: every pair.")
    given_pairs_per_round: int | None = option(None, "With --pairs and --rounds ≥ 2: rounds 2.. also train on "
                                                     "this many of the given pairs, a fresh draw each round, so "
                                                     "what the policy never samples (refusals) stays taught; "
                                                     "with --start-adapter every round does, round 1 included. "
                                                     "Unset: round 1 only.")
    start_adapter: str | None = option(None, "Continue this adapter (a shipped baseline's name or a folder "
                                             "made on --reference) instead of a fresh one: round 1 samples "
                                             "from it and trains it further; DPO's reference stays the "
                                             "reference. Unset: a fresh LoRA adapter.")
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
        between("rounds", self.rounds, 1, MAX_ROUNDS, "each round samples and trains again; gains level off "
                                                      "after a few rounds")
        if self.prompts_per_round is not None:
            at_least("prompts_per_round", self.prompts_per_round, 1)
        at_least("dev_limit", self.dev_limit, 1)
        if self.pairs is not None and not self.pairs.strip():
            raise ConfigError("pairs is empty. Pass --pairs tqstar (the written set), a .jsonl file or a folder.")
        if self.pairs_per_prompt is not None:
            if self.pairs is None:
                raise ConfigError("pairs_per_prompt applies to given pairs only. Pass --pairs SOURCE, or drop "
                                  "--pairs-per-prompt.")
            at_least("pairs_per_prompt", self.pairs_per_prompt, 1)
        if self.given_pairs_per_round is not None:
            if self.pairs is None or (self.rounds < 2 and self.start_adapter is None):
                raise ConfigError("given_pairs_per_round mixes given pairs into the sampled rounds (2 and later, "
                                  "or all with --start-adapter). Pass --pairs SOURCE and --rounds ≥ 2 or "
                                  "--start-adapter, or drop --given-pairs-per-round.")
            at_least("given_pairs_per_round", self.given_pairs_per_round, 1)
        if self.start_adapter is not None and self.pairs is not None and self.given_pairs_per_round is None:
            # the adapter continued has had its round on the given pairs; retraining on all of them would undo
            # the rounds since, so with a start adapter they are only mixed in
            raise ConfigError("With --start-adapter, --pairs are mixed into each sampled round. Pass "
                              "--given-pairs-per-round N, or drop --pairs.")
        positive("beta", self.beta, "DPO's β is typically 0.1.")
        between("sft_weight", self.sft_weight, 0, 100, "the supervised term would drown DPO's")
        positive("learning_rate", self.learning_rate, "LoRA adapters train well near 5e-4.")
        positive("epochs", self.epochs, "Use 1 or 2 passes over the pairs.")
        temperature("temperature", self.temperature, greedy=False)  # pairs need varied responses
        start_adapter_dir(self)  # a missing or foreign adapter fails before any model loads


def start_adapter_dir(config: AlignConfig) -> Path | None:
    """The folder of ``--start-adapter``, checked to hold an adapter made on ``--reference``."""
    if config.start_adapter is None:
        return None
    folder = adapter_dir(config.start_adapter)
    if folder is None:
        shipped = ", ".join(shipped_adapters()) or "none"
        raise ConfigError(f"start_adapter {config.start_adapter!r} is neither a shipped adapter ({shipped}) nor a "
                          "folder holding adapter_config.json. Pass one of those, or drop --start-adapter.")
    base = adapter_base(folder)
    if base is not None and not same_model(base, config.reference):
        raise ConfigError(f"start_adapter {config.start_adapter!r} was made on {base!r}, not on the reference "
                          f"{config.reference!r}. Pass --reference {base}, or an adapter made on it.")
    return folder.resolve()


def dev_source(config: AlignConfig) -> str:
    # A file is read whole whatever the split, so its "dev" prompts would be its training prompts.
    if config.dev_prompts:
        return config.dev_prompts
    return "tqstar" if Path(config.prompts).is_file() else config.prompts


#: Options that may change between a killed run and its resumption: they pick prompts or add rounds, not
#: pairs. More rounds extend a finished run; its finished rounds are kept.
RESUMABLE_CHANGES = ("output", "limit", "dev_limit", "dev_prompts", "rounds")


def check_same_run(config: AlignConfig, out: Path) -> None:
    """Refuse to mix pairs or checkpoints made with other options (another reference, reward, β, ...), and
    a single-round run's files (at the top of ``out``) with rounds' folders."""
    claim_run(out, {k: v for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES}, "an align run",
              AlignConfig)
    if config.rounds > 1 and (out / "pairs.jsonl").is_file():
        raise ConfigError(f"{out} holds a single-round align run (pairs.jsonl at its top); runs of several rounds "
                          "keep each round in its own round-N folder. Resume it with --rounds 1, or pass a new "
                          "--output for rounds.")
    if config.rounds == 1 and (out / round_folder_name(1)).is_dir():
        raise ConfigError(f"{out} holds an align run of several rounds; resume or extend it with --rounds 2 or "
                          "more, or pass a new --output for a single round.")


def round_folder_name(round_index: int) -> str:
    return f"round-{round_index}"


def round_prompts(config: AlignConfig, prompts: list[str], round_index: int) -> list[str]:
    """The prompts round ``round_index`` (from 1) samples: all of them, or with ``prompts_per_round`` M the
    round's slice of M from the prompts shuffled by the seed, consecutive rounds taking consecutive slices
    and wrapping around at the end, so M · rounds prompts cover the set before any repeats."""
    size = config.prompts_per_round
    if size is None or size >= len(prompts):
        return list(prompts)
    order = list(prompts)
    random.Random(config.seed).shuffle(order)
    start = (round_index - 1) * size % len(order)
    return (order + order)[start:start + size]
