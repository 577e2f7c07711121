"""Assemble a decoder from configs: the one place where method names meet classes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .config import DecodeConfig, RolesConfig
from .decoder import DecodingSettings, GenerationResult, SamplingDecoder, ValueGuidedDecoder
from .errors import ConfigError
from .lm import LanguageModel
from .models import load_language_model
from .rewards import Reward, load_reward
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

    @classmethod
    def load(cls, config: RolesConfig) -> "Roles":
        reference = load_language_model(config.reference, config.device, config.dtype)
        baseline = reference if config.baseline in (None, "") else load_language_model(
            config.baseline, config.device, config.dtype)
        reward = load_reward(config.reward, device=config.device)
        implicit = config.baseline_reward == IMPLICIT
        baseline_reward = None if config.baseline_reward in (None, "", IMPLICIT) else load_reward(
            config.baseline_reward, device=config.device)
        return cls(reference, baseline, reward, baseline_reward, implicit)


def build_decoder(config: DecodeConfig, roles: Roles, progress: bool = False):
    """The decoder ``config.method`` names, wired to the loaded roles."""
    generator = torch.Generator().manual_seed(config.seed)
    model_of = {"reference": roles.reference, "baseline": roles.baseline}
    if config.method in ("greedy", "sample", "best-of-n"):
        return SamplingDecoder(
            roles.reference,
            temperature=0.0 if config.method == "greedy" else config.selection_temperature,
            max_new_tokens=config.max_new_tokens, method=config.method, reward=roles.reward,
            best_of=config.best_of if config.method == "best-of-n" else 1,
            batch_size=config.batch_size, generator=generator)
    proposal, prior, alpha = model_of[config.proposal], model_of[config.prior], config.alpha
    if config.method == "soft":
        prior, alpha = roles.baseline, 1.0 / config.beta  # the exact rule: ρ_BL · E[exp((r − r_BL)/β)]
    settings = DecodingSettings(config.top_k, alpha, config.selection, config.selection_temperature,
                                config.max_new_tokens, config.batch_size)
    estimator = _estimator(config, roles, proposal, generator)
    return ValueGuidedDecoder(proposal, prior, estimator, settings, config.method, roles.reward, generator, progress)


def _estimator(config: DecodeConfig, roles: Roles, proposal: LanguageModel, generator: torch.Generator):
    if config.method == "args":
        return PartialReward(proposal, roles.reward)
    spec = RolloutSpec(
        model=roles.reference if config.method == "cd" else roles.baseline,
        text_model=proposal, reward=roles.reward, num_rollouts=config.num_rollouts, horizon=config.horizon,
        temperature=config.rollout_temperature, beta=config.beta, generator=generator)
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
