"""The paper's roles, loaded: the reference and baseline models, the target reward and the baseline's reward."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..models.baselines import DEFAULT_BASELINE, adapter_base, adapter_dir, adapter_metadata, shipped_adapter_path
from ..models.loader import load_language_model
from ..models.protocol import LanguageModel
from ..models.quantize import int8_copy
from ..models.spec import EMBEDDED_NAMES, resolve_device, resolve_dtype, same_model
from ..options import check_choice
from ..rewards.loading import load_reward
from ..rewards.protocol import Reward
from .config import MODEL_ROLES, RolesConfig

IMPLICIT = "implicit"


@dataclass
class Roles:
    """The loaded models and rewards of the paper's roles."""

    reference: LanguageModel
    baseline: LanguageModel
    reward: Reward
    baseline_reward: Reward | None = None  # explicit r_BL
    implicit: bool = False  # r_BL is DPO's implicit reward β·log(ρ_BL/ρ_ref)
    baseline_beta: float | None = None  # the DPO β the baseline was trained with, when its metadata says

    def model(self, role: str) -> LanguageModel:
        """The model playing ``role``: 'reference' or 'baseline'."""
        check_choice("role", role, MODEL_ROLES)
        return self.reference if role == "reference" else self.baseline

    @classmethod
    def load(cls, config: RolesConfig) -> "Roles":
        baseline_spec = baseline_spec_for(config)
        implicit = config.baseline_reward == IMPLICIT
        if implicit:
            _require_adapter_of(baseline_spec, config.reference)
        reference = load_language_model(config.reference, config.device, config.dtype)
        baseline = load_baseline(config, reference)
        reward = load_reward(config.reward, device=config.device)
        baseline_reward = None if config.baseline_reward in (None, "", IMPLICIT) else load_reward(
            config.baseline_reward, device=config.device)
        found = adapter_dir(baseline_spec)
        beta = adapter_metadata(found).get("beta") if found else None
        return cls(reference, baseline, reward, baseline_reward, implicit, beta)


def load_baseline(config: RolesConfig, reference: LanguageModel) -> LanguageModel:
    """The model that rolls out: the baseline spec (or ``reference`` itself) in ``baseline_dtype``, as an int8
    copy with ``int8_baseline``."""
    baseline_spec = baseline_spec_for(config)
    baseline_dtype = config.dtype if _same_dtype(config) else config.baseline_dtype
    if baseline_spec or baseline_dtype != config.dtype:  # the reference in another dtype is another copy
        baseline = load_language_model(baseline_spec or config.reference, config.device, baseline_dtype)
    else:
        baseline = reference
    if config.int8_baseline:
        baseline = int8_copy(baseline)  # a copy: the reference keeps its own weights even when it is the baseline
    return baseline


def _same_dtype(config: RolesConfig) -> bool:
    """Whether --baseline-dtype names the dtype the reference loads in anyway (unset, or e.g. float32 on a CPU)."""
    if config.baseline_dtype is None:
        return True
    device = resolve_device(config.device)
    return resolve_dtype(config.baseline_dtype, device) == resolve_dtype(config.dtype, device)


def baseline_spec_for(config: RolesConfig) -> str | None:
    """The baseline to load: the one asked for, else the shipped default of the embedded reference."""
    if config.baseline:
        return config.baseline
    if config.reference in EMBEDDED_NAMES and shipped_adapter_path(DEFAULT_BASELINE):
        return DEFAULT_BASELINE
    return None  # the reference itself, as in the authors' code


def _require_adapter_of(baseline_spec: str | None, reference_spec: str) -> None:
    """DPO's implicit reward β·log(ρ_BL/ρ_ref) is only defined against the reference DPO started from, and
    is 0 for every response when the baseline is the reference itself (every weight equal, silently)."""
    if baseline_spec is None or same_model(baseline_spec, reference_spec):
        raise ConfigError(
            f"--baseline-reward implicit compares the baseline with the reference, but the baseline is the "
            f"reference itself ({reference_spec!r}), so β·log(ρ_BL/ρ_ref) is 0 for every response. Pass "
            "--baseline with the DPO-aligned model (e.g. an adapter made by 'tqstar align'), or name the "
            "baseline's reward with --baseline-reward SPEC.")
    found = adapter_dir(baseline_spec)
    base = adapter_base(found) if found else None
    if base is not None and not same_model(base, reference_spec):
        raise ConfigError(
            f"--baseline-reward implicit compares the baseline with the model it was trained from, but "
            f"{baseline_spec!r} was trained on {base!r} while the reference is {reference_spec!r}. "
            f"Pass --reference {base}, or name the baseline's reward explicitly with --baseline-reward SPEC.")
