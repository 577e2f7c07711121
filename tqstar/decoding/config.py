"""The decoding and role options: each defined once here, with its help text and its validation.

``tqstar.options`` turns these dataclasses into CLI flags (``tqstar.cli``) and reads them from config files
(JSON or TOML), eval method strings and server requests, so an option has one name, one default and one
check everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..models.spec import DTYPE_NAMES
from ..options import at_least, between, build, check_choice, check_field_types, defaults, option, temperature
from .methods import METHOD_TABLE, METHODS, Method, method_of
from .protocol import BLOCK_CANDIDATES, BLOCKS_SAMPLED, BLOCKS_TOP_K, SELECT_GREEDY, SELECTIONS
from .values import ROLLOUT_BEST, ROLLOUT_MEAN, ROLLOUT_VALUES, require_weighted_rollouts

MODEL_ROLES = ("reference", "baseline")

#: What the authors' released code does (docs/algorithm.md, "What --compat reproduces"). Their β = 2
#: applies to an explicit r_BL only; an implicit r_BL keeps the baseline's own DPO β.
AUTHORS_SETTINGS = {
    "top_k": 10,
    "alpha": 1.0,
    "num_rollouts": 1,
    "rollout_temperature": 0.0,
    "selection": SELECT_GREEDY,
    "proposal": "baseline",
    "prior": "baseline",
    "fixed_horizon": True,
    "block_size": 1,  # token by token
}
AUTHORS_BETA = 2.0

#: Upper bounds of the size options, wherever they are set (flags, config files, eval method strings,
#: server defaults). The top_k candidates, and best_of samples of a prompt, decode together, each holding
#: its KV cache and a vocabulary-wide row of logits: without a bound --top-k 1000000000 grew to 21 GB before
#: the kernel killed it. Rollouts are sampled in chunks of ROLLOUT_ROWS_BOUND rows, so N costs time, and
#: its bound only keeps a step finite. The server caps requests lower still.
SIZE_BOUNDS = {"top_k": 256, "num_rollouts": 65536, "best_of": 64, "horizon": 4096, "max_new_tokens": 4096,
               "batch_size": 256, "lookahead": 256}
SIZE_WHY = "memory grows with it"
#: β below this makes soft transfer's α = 1/β, and the weights exp(Δr/β), overflow to inf; α above its
#: bound overflows α·Q̂ likewise. Both are far outside any useful setting (the paper: α = 1, β ≈ 0.1).
MIN_BETA, MAX_ALPHA = 1e-3, 1e4
#: A block of more tokens is most of a response: choosing among whole responses is what best-of-n does.
MAX_BLOCK_SIZE = 64


@dataclass
class DecodeConfig:
    """How responses are decoded. Symbols follow the paper (docs/algorithm.md)."""

    method: str = option("tq-direct", "Decoding method: " + ", ".join(METHODS) + ".", choices=METHODS)
    top_k: int = option(10, "k: candidate next tokens taken from the proposal model at each step.")
    # α = 10 scored best of 1, 3, 10 on dev for helpful_harmless (docs/reward.md); the paper's α = 1
    # barely steers a reward that moves by tenths between candidates (--compat restores it)
    alpha: float = option(10.0, "α ≥ 0: weight of the value Q̂ against the prior; 0 gives the prior's top-k.")
    num_rollouts: int | None = option(None, "N: rollouts per candidate token used to estimate Q̂. Unset: 4 for "
                                             "tq-indirect and soft (they need N ≥ 2), else 1.")
    horizon: int | None = option(8, "H: tokens per rollout after the candidate; 'eos' runs to EOS (paper: 20). "
                                    "Rollouts also stop at the response budget unless --fixed-horizon. With "
                                    "--block-size B, rollouts after a block run H − B + 1 tokens (the same "
                                    "look-ahead from the step's state).")
    fixed_horizon: bool = option(False, "Roll out the full H even past max_new_tokens (the paper's fixed horizon); "
                                        "by default rollouts stop where the response must end.")
    rollout_temperature: float | None = option(None, "Temperature of the rollouts; 0 is greedy (one rollout "
                                                     "suffices). Unset: 1 for tq-indirect and soft (their weights "
                                                     "need sampled rollouts), else 0.")
    rollout_value: str = option(ROLLOUT_MEAN, "How cd and tq-direct make Q̂ from N rollouts: their 'mean' reward "
                                              "(the rollout model's value), or the 'best' (the value of Best-of-N "
                                              "of the rollout model, a more aligned policy; needs N ≥ 2 sampled "
                                              "rollouts).", choices=ROLLOUT_VALUES)
    sampled_steps: int | None = option(None, "S: with cd or tq-direct and N ≥ 2 sampled rollouts, sample them only "
                                             "while the response has fewer than S tokens, and value later "
                                             "candidates by one greedy rollout (an answer's stance is set by its "
                                             "first tokens). Unset: every step.")
    block_size: int = option(1, "B: tokens committed per step (blockwise mode, after Mudgal et al. 2024). Each of "
                                "k candidate blocks of B tokens (--block-candidates says how they are drawn): "
                                "Q̂ values the whole block, π_alg picks one and commits it. 1 is the token-level "
                                "decoder; larger B costs ~B× fewer steps of rollouts. Value-guided methods only.")
    block_candidates: str = option(BLOCKS_TOP_K, "With --block-size B: the k candidate blocks are the proposal's "
                                                 "top-k next tokens each continued greedily ('top-k'), or k blocks "
                                                 "sampled from the proposal ('sampled', as blockwise controlled "
                                                 "decoding draws them; a block drawn twice is valued once and "
                                                 "weighs twice in π_alg).", choices=BLOCK_CANDIDATES)
    lookahead: int = option(1, "Token decoder: while at most this many prompts decode together, also value the "
                               "state after the proposal's likeliest next token in the same step, so that when "
                               "it is chosen the next token needs no step of its own (the same answers with greedy "
                               "selection). 1: when a prompt decodes alone, where it is 1.2–1.3× faster on a CPU "
                               "(docs/benchmarks.md); 0: never.")
    selection: str = option(SELECT_GREEDY, "Pick the argmax of π_alg ('greedy') or sample from it ('sample').",
                            choices=SELECTIONS)
    selection_temperature: float = option(1.0, "Temperature applied to π_alg when selection is 'sample', "
                                               "and to the model for the 'sample' and 'best-of-n' methods.")
    prune: bool = option(False, "With selection 'greedy': skip the value estimate of candidates whose prior trails "
                                "the favourite's by more than α·(reward range), since they cannot win (same "
                                "choices, fewer rollouts; needs a reward that declares its bounds). Their Q̂ and "
                                "π_alg are not computed: the trace shows none, and KL counts the others only.")
    proposal: str = option("reference", "Model whose top-k tokens are the candidates (for greedy, sample and "
                                        "best-of-n: the model decoded; soft always uses the baseline).",
                           choices=MODEL_ROLES)
    prior: str = option("reference", "Model whose log-probs are the prior log π in π_alg "
                                     "(soft always uses the baseline).", choices=MODEL_ROLES)
    beta: float | None = option(None, "β > 0: KL strength of the aligned optimum; scales importance weights "
                                      "(tq-indirect) and the log-mean-exp value (soft). Unset: the baseline's "
                                      "DPO β from its metadata.json with --baseline-reward implicit, else 1.0 "
                                      "(2.0 with --compat).")
    best_of: int = option(8, "N of Best-of-N: responses sampled per prompt.")
    max_new_tokens: int = option(32, "Most tokens generated per response.")
    batch_size: int = option(8, "Prompts decoded together.")
    seed: int = option(0, "Random seed for rollouts and sampling.")
    compat: bool = option(False, "Reproduce the authors' released code: one model (the baseline) proposes, "
                                 "is the prior and rolls out; one greedy rollout of a fixed 20 tokens (5 for "
                                 "tq-indirect); unnormalised indirect weight exp((r − r_BL)/2)·r. Options it "
                                 "sets cannot be combined with other values.")

    def __post_init__(self):
        check_field_types(self)
        method = method_of(self.method)
        if self.compat:
            self._apply_compat(method)
        check_choice("selection", self.selection, SELECTIONS)
        check_choice("proposal", self.proposal, MODEL_ROLES)
        check_choice("prior", self.prior, MODEL_ROLES)
        self._check_sizes()
        between("block_size", self.block_size, 1, MAX_BLOCK_SIZE,
                "a longer block is most of a response; compare whole responses with best-of-n")
        check_choice("block_candidates", self.block_candidates, BLOCK_CANDIDATES)
        if self.block_candidates == BLOCKS_SAMPLED and self.block_size == 1:
            raise ConfigError("block_candidates='sampled' draws blocks of --block-size tokens, but block_size is 1 "
                              "(the token decoder, whose candidates are the top-k). Set --block-size 2 or more.")
        between("alpha", self.alpha, 0, MAX_ALPHA, "α·Q̂ overflows beyond it")
        if self.rollout_temperature is not None:
            temperature("rollout_temperature", self.rollout_temperature)
        if self.beta is not None:  # β > 0, and far enough from 0 that 1/β stays finite
            at_least("beta", self.beta, MIN_BETA)
        temperature("selection_temperature", self.selection_temperature, greedy=False)
        if method.weighted and not self.compat:
            require_weighted_rollouts(self.method, self.rollouts, self.rollout_temp)
        if self.rollouts > 1 and self.rollout_temp == 0:
            raise ConfigError(f"num_rollouts={self.rollouts} with greedy rollouts (rollout_temperature=0) "
                              "repeats one rollout. Set rollout_temperature > 0 (e.g. 1.0) or num_rollouts=1.")
        if self.prune:
            self._check_prune()
        check_choice("rollout_value", self.rollout_value, ROLLOUT_VALUES)
        if self.rollout_value == ROLLOUT_BEST:
            self._check_sampled_rollouts(method, "rollout_value='best'", "keeps the best of N sampled rollouts")
        if self.sampled_steps is not None:
            at_least("sampled_steps", self.sampled_steps, 1)
            self._check_sampled_rollouts(method, f"sampled_steps={self.sampled_steps}",
                                         "samples N rollouts at the first steps and one greedy rollout after")
            if self.block_size > 1:
                raise ConfigError("sampled_steps counts token steps; with --block-size it is not implemented. Drop "
                                  "one of them.")

    def _check_sampled_rollouts(self, method: Method, option: str, what: str) -> None:
        """The options that change how cd and tq-direct use N ≥ 2 sampled rollouts, for those methods only."""
        if not method.rolls_out or method.weighted:
            plain = " and ".join(m.name for m in METHOD_TABLE if m.rolls_out and not m.weighted)
            raise ConfigError(f"{option} {what}, which {self.method} does not: it applies to {plain}. Use one of "
                              "them, or drop it.")
        if self.rollouts < 2 or self.rollout_temp == 0:
            raise ConfigError(f"{option} {what}, but num_rollouts={self.rollouts} and rollout_temperature="
                              f"{self.rollout_temp:g}. Set num_rollouts ≥ 2 and rollout_temperature > 0 (e.g. 4 "
                              "and 1.0).")

    def _check_prune(self) -> None:
        """--prune decides the argmax without some values: only the token decoder's greedy selection has one."""
        if self.selection != SELECT_GREEDY:
            raise ConfigError("--prune skips candidates that cannot be the argmax, but selection='sample' draws "
                              "from every candidate. Drop --prune, or use selection='greedy'.")
        if self.block_size > 1:
            raise ConfigError("--prune works token by token; with --block-size it is not implemented. Drop one "
                              "of them.")

    def _check_sizes(self) -> None:
        """Each size option from its least useful value to its bound."""
        for name, bound in SIZE_BOUNDS.items():
            value = getattr(self, name)
            if value is not None:  # num_rollouts unset: the method's default; horizon unset: to EOS
                between(name, value, 0 if name in ("horizon", "lookahead") else 1, bound, SIZE_WHY)

    def _apply_compat(self, method: Method) -> None:
        """Set the authors' values, refusing any option the user set to something else."""
        if method.authors_horizon is None:
            reproduced = " and ".join(m.name for m in METHOD_TABLE if m.authors_horizon is not None)
            raise ConfigError(f"compat reproduces {reproduced} only, not {self.method!r}. "
                              "Drop --compat or pick one of those methods.")
        authors = {**AUTHORS_SETTINGS, "horizon": method.authors_horizon}
        defaults_ = defaults(DecodeConfig)
        conflicts = [f"{name}={getattr(self, name)!r} (compat: {value!r})" for name, value in authors.items()
                     if getattr(self, name) not in (value, defaults_[name])]
        if conflicts:
            raise ConfigError("--compat sets these options to the authors' values, but they were set otherwise: "
                              + "; ".join(conflicts) + ". Drop those options or drop --compat.")
        for name, value in authors.items():
            setattr(self, name, value)

    @property
    def rollouts(self) -> int:
        """N in effect: the one set, else the method's default."""
        if self.num_rollouts is not None:
            return self.num_rollouts
        return method_of(self.method).default_rollouts

    @property
    def rollout_temp(self) -> float:
        """Rollout temperature in effect: the one set, else the method's default."""
        if self.rollout_temperature is not None:
            return self.rollout_temperature
        return method_of(self.method).default_rollout_temperature


@dataclass
class RolesConfig:
    """Which models and rewards fill the roles of the paper."""

    reference: str = option("smollm2", "Reference (SFT) model ρ_ref: 'smollm2' (embedded), a model directory, "
                                       "a .gguf file, a PEFT adapter directory or a hub id.")
    baseline: str | None = option(None, "Aligned baseline ρ_BL that rolls out: a model spec or a shipped adapter "
                                        "(bl-helpful-harmless, bl-sentiment). Unset: bl-helpful-harmless when the "
                                        "reference is the embedded model, else the reference itself.")
    reward: str = option("helpful_harmless", "Target reward r: helpful_harmless (relevance and tone unless the "
                                              "request is one to decline, + 4·stance; docs/reward.md), "
                                              "upbeat_relevant, sentiment, nontoxic, relevance, harmless, stance, a sum like "
                                              "'relevance+0.5*sentiment', or a reward-model directory.")
    baseline_reward: str | None = option(None, "Reward r_BL the baseline was aligned to (tq-indirect, soft): "
                                               "a reward spec, or 'implicit' for β·log(ρ_BL/ρ_ref).")
    device: str | None = option(None, "Device: auto (CUDA when present, else CPU), cpu, cuda, cuda:1.")
    dtype: str | None = option(None, "Model dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, "
                                     "float16, bfloat16.")
    int8_baseline: bool = option(False, "Run the baseline (the model TQ* rolls out) with int8 dynamic quantisation "
                                        "of its linear layers: about 2× faster rollouts on a CPU, slightly "
                                        "different values (docs/benchmarks.md). CPU only.")
    baseline_dtype: str | None = option(None, "dtype of the baseline alone (the model TQ* rolls out), e.g. "
                                              "bfloat16: half the weight bytes each rollout step reads, while the "
                                              "reference's prior stays in --dtype. Unset: --dtype.",
                                        choices=DTYPE_NAMES)

    def __post_init__(self):
        check_field_types(self)
        if self.baseline_dtype is not None:
            check_choice("baseline_dtype", self.baseline_dtype, DTYPE_NAMES)
            if self.int8_baseline and self.baseline_dtype not in ("auto", "float32"):
                raise ConfigError(f"int8_baseline quantises float32 weights, but baseline_dtype is "
                                  f"{self.baseline_dtype}. Drop one of --int8-baseline and --baseline-dtype.")


def split_options(values: dict[str, Any]) -> tuple[DecodeConfig, RolesConfig]:
    """Build both configs from one flat mapping, refusing unknown keys."""
    return build(values, DecodeConfig, RolesConfig)
