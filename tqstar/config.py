"""Typed configs: every option is defined once here, with its help text and its validation.

The CLI (``tqstar.cli``) builds its flags from these dataclasses, and config files (JSON or TOML)
fill the same fields, so an option has one name, one default and one check everywhere.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: The methods of the paper's comparison, in the order the paper's table lists them.
METHODS = ("greedy", "sample", "best-of-n", "args", "cd", "tq-direct", "tq-indirect", "soft")
MODEL_ROLES = ("reference", "baseline")

#: What the authors' released code does (PAPER.md, "What the authors' released code does differently").
AUTHORS_SETTINGS = {
    "top_k": 10,
    "alpha": 1.0,
    "num_rollouts": 1,
    "rollout_temperature": 0.0,
    "selection": "greedy",
    "proposal": "baseline",
    "prior": "baseline",
    "beta": 2.0,
}
AUTHORS_HORIZON = {"tq-direct": 20, "tq-indirect": 5}


def option(default, help: str, **extra):
    """A dataclass field carrying its CLI help text."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class DecodeConfig:
    """How responses are decoded. Symbols follow the paper (shared/PAPER.md)."""

    method: str = option("tq-direct", "Decoding method: " + ", ".join(METHODS) + ".", choices=METHODS)
    top_k: int = option(10, "k: candidate next tokens taken from the proposal model at each step.")
    alpha: float = option(1.0, "α ≥ 0: weight of the value Q̂ against the prior; 0 gives the prior's top-k.")
    num_rollouts: int = option(1, "N: rollouts per candidate token used to estimate Q̂.")
    horizon: int | None = option(8, "H: tokens per rollout after the candidate; 'eos' runs to EOS (paper: 20).")
    rollout_temperature: float = option(0.0, "Temperature of the rollouts; 0 is greedy (one rollout suffices).")
    selection: str = option("greedy", "Pick the argmax of π_alg ('greedy') or sample from it ('sample').",
                            choices=("greedy", "sample"))
    selection_temperature: float = option(1.0, "Temperature applied to π_alg when selection is 'sample', "
                                               "and to the model for the 'sample' and 'best-of-n' methods.")
    proposal: str = option("reference", "Model whose top-k tokens are the candidates (for greedy, sample and "
                                        "best-of-n: the model decoded).", choices=MODEL_ROLES)
    prior: str = option("reference", "Model whose log-probs are the prior log π in π_alg "
                                     "(soft transfer always uses the baseline).", choices=MODEL_ROLES)
    beta: float | None = option(None, "β > 0: KL strength of the aligned optimum; scales importance weights "
                                      "(tq-indirect) and the log-mean-exp value (soft). Unset: the baseline's "
                                      "DPO β from its metadata.json with --baseline-reward implicit, else 1.0.")
    best_of: int = option(8, "N of Best-of-N: responses sampled per prompt.")
    max_new_tokens: int = option(32, "Most tokens generated per response.")
    batch_size: int = option(8, "Prompts decoded together.")
    seed: int = option(0, "Random seed for rollouts and sampling.")
    compat: bool = option(False, "Reproduce the authors' released code: one model (the baseline) proposes, "
                                 "is the prior and rolls out; one greedy rollout of 20 tokens (5 for "
                                 "tq-indirect); unnormalised indirect weight exp((r − r_BL)/2)·r.")

    def __post_init__(self):
        if self.compat:
            if self.method not in AUTHORS_HORIZON:
                raise ConfigError(f"compat reproduces tq-direct and tq-indirect only, not {self.method!r}. "
                                  "Drop --compat or pick one of those methods.")
            for name, value in {**AUTHORS_SETTINGS, "horizon": AUTHORS_HORIZON[self.method]}.items():
                object.__setattr__(self, name, value)
        _check_choice("method", self.method, METHODS)
        _check_choice("selection", self.selection, ("greedy", "sample"))
        _check_choice("proposal", self.proposal, MODEL_ROLES)
        _check_choice("prior", self.prior, MODEL_ROLES)
        at_least("top_k", self.top_k, 1)
        at_least("num_rollouts", self.num_rollouts, 1)
        at_least("best_of", self.best_of, 1)
        at_least("max_new_tokens", self.max_new_tokens, 1)
        at_least("batch_size", self.batch_size, 1)
        at_least("alpha", self.alpha, 0)
        at_least("rollout_temperature", self.rollout_temperature, 0)
        if self.horizon is not None:
            at_least("horizon", self.horizon, 0)
        if self.beta is not None:
            positive("beta", self.beta, "Use a positive KL strength such as 1.0.")
        positive("selection_temperature", self.selection_temperature, "Use selection='greedy' for the argmax.")
        if self.num_rollouts > 1 and self.rollout_temperature == 0:
            raise ConfigError(f"num_rollouts={self.num_rollouts} with greedy rollouts (rollout_temperature=0) "
                              "repeats one rollout. Set rollout_temperature > 0 (e.g. 1.0) or num_rollouts=1.")

    @property
    def uses_rollouts(self) -> bool:
        return self.method in ("cd", "tq-direct", "tq-indirect", "soft")


@dataclass
class RolesConfig:
    """Which models and rewards fill the roles of the paper."""

    reference: str = option("smollm2", "Reference (SFT) model ρ_ref: 'smollm2' (embedded), a model directory, "
                                       "a .gguf file, a PEFT adapter directory or a hub id.")
    baseline: str | None = option(None, "Aligned baseline ρ_BL that rolls out: a model spec or a shipped adapter "
                                        "(bl-helpful-harmless, bl-sentiment). Unset: bl-helpful-harmless when the "
                                        "reference is the embedded model, else the reference itself.")
    reward: str = option("helpful_harmless", "Target reward r: sentiment, nontoxic, relevance, helpful_harmless, "
                                              "a sum like 'relevance+0.5*sentiment', or a reward-model directory.")
    baseline_reward: str | None = option(None, "Reward r_BL the baseline was aligned to (tq-indirect, soft): "
                                               "a reward spec, or 'implicit' for β·log(ρ_BL/ρ_ref).")
    device: str | None = option(None, "Device: auto (CUDA when present, else CPU), cpu, cuda, cuda:1.")
    dtype: str | None = option(None, "Model dtype: auto (bfloat16 on CUDA, float32 on CPU), float32, "
                                     "float16, bfloat16.")


def _check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ConfigError(f"Unknown {name} {value!r}. Use one of: {', '.join(choices)}.")


def _require_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}.")


def at_least(name: str, value, lowest) -> None:
    """Refuse a number below ``lowest``, naming the option and the fix."""
    _require_number(name, value)
    if value < lowest:
        raise ConfigError(f"{name} must be ≥ {lowest}, got {value}. Set {name} to {lowest} or more.")


def positive(name: str, value, fix: str) -> None:
    """Refuse a number that is not strictly positive, naming the option and the fix."""
    _require_number(name, value)
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}. {fix}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read option values from a JSON or TOML file (flat keys named like the options)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. Check the path.")
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(path.read_text())
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from exc


def split_options(values: dict[str, Any]) -> tuple[DecodeConfig, RolesConfig]:
    """Build both configs from one flat mapping, refusing unknown keys."""
    decode_names = {f.name for f in fields(DecodeConfig)}
    role_names = {f.name for f in fields(RolesConfig)}
    unknown = sorted(set(values) - decode_names - role_names)
    if unknown:
        raise ConfigError(f"Unknown option(s): {', '.join(unknown)}. See 'tqstar generate --help' for the names.")
    try:
        decode = DecodeConfig(**{k: v for k, v in values.items() if k in decode_names})
        roles = RolesConfig(**{k: v for k, v in values.items() if k in role_names})
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    return decode, roles


def defaults(cls) -> dict[str, Any]:
    return {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(cls)}


__all__ = ["DecodeConfig", "RolesConfig", "METHODS", "load_config_file", "split_options", "replace", "defaults"]
