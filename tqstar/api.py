"""Assemble a decoder from configs: the one place where method names meet classes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .config import AUTHORS_BETA, DecodeConfig, RolesConfig
from .decoder import DecodingSettings, GenerationResult, SamplingDecoder, ValueGuidedDecoder
from .errors import ConfigError
from .models.baselines import DEFAULT_BASELINE, adapter_base, adapter_dir, adapter_metadata, shipped_adapter_path
from .models.loader import load_language_model
from .models.protocol import LanguageModel
from .models.spec import EMBEDDED_NAMES, same_model
from .rewards.loading import load_reward
from .rewards.protocol import Reward
from .values import IndirectValue, MeanRolloutValue, PartialReward, RolloutSpec, SoftTransferValue

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

    @classmethod
    def load(cls, config: RolesConfig) -> "Roles":
        baseline_spec = baseline_spec_for(config)
        implicit = config.baseline_reward == IMPLICIT
        if implicit:
            _require_adapter_of(baseline_spec, config.reference)
        reference = load_language_model(config.reference, config.device, config.dtype)
        baseline = load_language_model(baseline_spec, config.device, config.dtype) if baseline_spec else reference
        reward = load_reward(config.reward, device=config.device)
        baseline_reward = None if config.baseline_reward in (None, "", IMPLICIT) else load_reward(
            config.baseline_reward, device=config.device)
        found = adapter_dir(baseline_spec)
        beta = adapter_metadata(found).get("beta") if found else None
        return cls(reference, baseline, reward, baseline_reward, implicit, beta)


def baseline_spec_for(config: RolesConfig) -> str | None:
    """The baseline to load: the one asked for, else the shipped default of the embedded reference."""
    if config.baseline:
        return config.baseline
    if config.reference in EMBEDDED_NAMES and shipped_adapter_path(DEFAULT_BASELINE):
        return DEFAULT_BASELINE
    return None  # the reference itself, as in the authors' code


def _require_adapter_of(baseline_spec: str | None, reference_spec: str) -> None:
    """DPO's implicit reward β·log(ρ_BL/ρ_ref) is only defined against the reference DPO started from."""
    found = adapter_dir(baseline_spec)
    base = adapter_base(found) if found else None
    if base is not None and not same_model(base, reference_spec):
        raise ConfigError(
            f"--baseline-reward implicit compares the baseline with the model it was trained from, but "
            f"{baseline_spec!r} was trained on {base!r} while the reference is {reference_spec!r}. "
            f"Pass --reference {base}, or name the baseline's reward explicitly with --baseline-reward SPEC.")


def build_decoder(config: DecodeConfig, roles: Roles, progress: bool = False):
    """The decoder ``config.method`` names, wired to the loaded roles."""
    config = replace(config, beta=_beta(config, roles))
    generator = torch.Generator().manual_seed(config.seed)
    model_of = {"reference": roles.reference, "baseline": roles.baseline}
    if config.method in ("greedy", "sample", "best-of-n"):
        return SamplingDecoder(
            model_of[config.proposal],
            temperature=0.0 if config.method == "greedy" else config.selection_temperature,
            max_new_tokens=config.max_new_tokens, method=config.method, reward=roles.reward,
            best_of=config.best_of if config.method == "best-of-n" else 1,
            batch_size=config.batch_size, generator=generator)
    proposal, prior, alpha = model_of[config.proposal], model_of[config.prior], config.alpha
    if config.method == "soft":  # the exact rule ρ_BL · E[exp((r − r_BL)/β)], over the baseline's own top-k
        proposal, prior, alpha = roles.baseline, roles.baseline, 1.0 / config.beta
    settings = DecodingSettings(config.top_k, alpha, config.selection, config.selection_temperature,
                                config.max_new_tokens, config.batch_size)
    estimator = _estimator(config, roles, proposal, generator)
    return ValueGuidedDecoder(proposal, prior, estimator, settings, config.method, roles.reward, generator, progress)


def _beta(config: DecodeConfig, roles: Roles) -> float:
    """β as given, else the implicit baseline's own DPO β (the paper's indirect transfer shares one β), else
    the authors' 2 under --compat, else 1."""
    if config.beta is not None:
        return config.beta
    if not roles.implicit:
        return AUTHORS_BETA if config.compat else 1.0
    if roles.baseline_beta is None and config.method in ("tq-indirect", "soft"):
        raise ConfigError("--baseline-reward implicit needs the β the baseline was DPO-trained with, and the "
                          "baseline has no tqstar metadata.json saying it. Pass --beta (e.g. --beta 0.1).")
    return roles.baseline_beta or 1.0


def _estimator(config: DecodeConfig, roles: Roles, proposal: LanguageModel, generator: torch.Generator):
    if config.method == "args":
        return PartialReward(proposal, roles.reward)
    spec = RolloutSpec(
        model=roles.reference if config.method == "cd" else roles.baseline,
        text_model=proposal, reward=roles.reward, num_rollouts=config.rollouts, horizon=config.horizon,
        fixed_horizon=config.fixed_horizon, temperature=config.rollout_temp, beta=config.beta, generator=generator)
    if config.method in ("cd", "tq-direct"):
        return MeanRolloutValue(spec)
    spec = replace(spec, baseline_reward=roles.baseline_reward,
                   implicit_reference=roles.reference if roles.implicit else None)
    if config.method == "soft":
        return SoftTransferValue(spec)
    if roles.baseline_reward is None and not roles.implicit:
        raise ConfigError("tq-indirect needs the reward the baseline was aligned to. Pass --baseline-reward "
                          "SPEC (e.g. sentiment) or --baseline-reward implicit for a DPO baseline.")
    return IndirectValue(spec, normalise=not config.compat)


def generate(prompts: str | Sequence[str], config: DecodeConfig | None = None,
             roles: RolesConfig | Roles | None = None, **options) -> list[GenerationResult]:
    """Decode responses in one call. ``options`` are ``DecodeConfig`` or ``RolesConfig`` field names.

    >>> generate("How do I boil an egg?", method="tq-direct", top_k=5)[0].text  # doctest: +SKIP
    """
    from .config import split_options

    decode_options, role_options = split_options(options)
    if config is None:
        config = decode_options
    else:  # explicit options override the given config
        config = replace(config, **{k: v for k, v in options.items() if hasattr(config, k)})
    if not isinstance(roles, Roles):
        roles = Roles.load(roles or role_options)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    return build_decoder(config, roles).generate(prompts)
