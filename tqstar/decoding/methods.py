"""The method table: one frozen record per decoding method, read by the configs, ``build_decoder``, the
server, the eval metrics and the judge. It is the one place that knows methods by name; everything else
asks a ``Method`` what it does."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError
from .rollouts import RolloutSpec
from .values import (ROLLOUT_BEST, BestRolloutValue, FirstStepsValue, IndirectValue, MeanRolloutValue, PartialReward,
                     SoftTransferValue)

if TYPE_CHECKING:
    import torch

    from ..models.protocol import LanguageModel
    from .protocol import ValueEstimator

#: N and T of the weighted estimators when the user sets neither (one weight, or greedy rollouts, cannot transfer).
WEIGHTED_ROLLOUTS, WEIGHTED_TEMPERATURE = 4, 1.0


class KL(Enum):
    """The KL to the reference that the eval metrics report for a method."""

    SAMPLER = "sampler"  # the decoded model at its sampling temperature against ρ_ref
    BEST_OF_N = "best-of-n"  # the analytic bound log N − (N − 1)/N
    PI_ALG = "pi-alg"  # π_alg along the response against ρ_ref


class Need(Enum):
    """What ``build_decoder`` checks the roles for before building."""

    BASELINE_REWARD = "baseline_reward"  # r_BL: --baseline-reward SPEC, or implicit
    DPO_BETA = "dpo_beta"  # with an implicit r_BL: the β the baseline was DPO-trained with


#: (config, roles, proposal model, generator) -> estimator. DecodeConfig and Roles sit above this table
#: (both read it), so it never imports them.
EstimatorFactory = Callable[[object, object, "LanguageModel", "torch.Generator"], "ValueEstimator"]


@dataclass(frozen=True)
class Method:
    """What a decoding method does. ``estimator`` None: the model is decoded directly (no Q̂)."""

    name: str
    estimator: EstimatorFactory | None = None
    rolls_out: bool = False
    samples: bool = False  # draws from the model at selection_temperature (stochastic)
    kl: KL = KL.PI_ALG
    needs: frozenset = frozenset()
    best_of: bool = False
    weighted: bool = False  # importance-weighted sampled rollouts: N ≥ 2, T > 0
    proposal: str | None = None  # a fixed proposal role, else DecodeConfig.proposal
    prior: str | None = None  # a fixed prior role, else DecodeConfig.prior
    alpha_from_beta: bool = False  # α = 1/β
    authors_horizon: int | None = None  # --compat's fixed H; None: --compat refused
    greedy_twin: str | None = None  # serve: temperature 0 turns this method into that one
    transfer: bool = False  # rolls out the aligned baseline (Transfer Q* and soft transfer): the LLM judge's
    # default side, and the family the eval's frontier and paired-difference tables put against the others
    compare: bool = False  # run by `tqstar generate --compare`

    @property
    def default_rollouts(self) -> int:
        return WEIGHTED_ROLLOUTS if self.weighted else 1

    @property
    def default_rollout_temperature(self) -> float:
        return WEIGHTED_TEMPERATURE if self.weighted else 0.0

    @property
    def knobs(self) -> tuple[str, ...]:
        """The DecodeConfig options that change what this method does (the playground's per-method inputs):
        N of Best-of-N; k and α (β for soft, whose α is 1/β); H for rollouts; N for the weighted estimators."""
        if self.best_of:
            return ("best_of",)
        if self.estimator is None:
            return ()
        knobs = ("top_k", "beta" if self.alpha_from_beta else "alpha")
        return knobs + ("horizon",) * self.rolls_out + ("num_rollouts",) * self.weighted

    def roles(self, config) -> tuple[str, str]:
        """The (proposal, prior) roles this method decodes with under ``config`` (a DecodeConfig)."""
        return self.proposal or config.proposal, self.prior or config.prior


# Estimator factories: module-level functions, so a Method pickles by reference.
def _rollout_spec(config, roles, proposal, generator, model) -> RolloutSpec:
    return RolloutSpec(model=model, text_model=proposal, reward=roles.reward, num_rollouts=config.rollouts,
                       horizon=config.horizon, fixed_horizon=config.fixed_horizon, temperature=config.rollout_temp,
                       beta=config.beta, generator=generator)


def _weighted_spec(config, roles, proposal, generator) -> RolloutSpec:
    spec = _rollout_spec(config, roles, proposal, generator, roles.baseline)
    return replace(spec, baseline_reward=roles.baseline_reward,
                   implicit_reference=roles.reference if roles.implicit else None)


def _partial_reward(config, roles, proposal, generator):
    return PartialReward(proposal, roles.reward)


def _plain_rollouts(config, spec: RolloutSpec):
    estimator = (BestRolloutValue if config.rollout_value == ROLLOUT_BEST else MeanRolloutValue)(spec)
    if config.sampled_steps is None:
        return estimator
    return FirstStepsValue(estimator, MeanRolloutValue(replace(spec, num_rollouts=1, temperature=0.0)),
                           config.sampled_steps)


def _reference_rollouts(config, roles, proposal, generator):
    return _plain_rollouts(config, _rollout_spec(config, roles, proposal, generator, roles.reference))


def _baseline_rollouts(config, roles, proposal, generator):
    return _plain_rollouts(config, _rollout_spec(config, roles, proposal, generator, roles.baseline))


def _indirect(config, roles, proposal, generator):
    return IndirectValue(_weighted_spec(config, roles, proposal, generator), normalise=not config.compat)


def _soft(config, roles, proposal, generator):
    return SoftTransferValue(_weighted_spec(config, roles, proposal, generator))


#: The methods of the paper's comparison, in the order the paper's table lists them.
METHOD_TABLE: tuple[Method, ...] = (
    Method("greedy", kl=KL.SAMPLER, compare=True),
    Method("sample", samples=True, kl=KL.SAMPLER, greedy_twin="greedy"),
    Method("best-of-n", samples=True, best_of=True, kl=KL.BEST_OF_N),
    Method("args", estimator=_partial_reward, compare=True),
    Method("cd", estimator=_reference_rollouts, rolls_out=True, compare=True),
    Method("tq-direct", estimator=_baseline_rollouts, rolls_out=True, authors_horizon=20, transfer=True,
           compare=True),
    Method("tq-indirect", estimator=_indirect, rolls_out=True, weighted=True, authors_horizon=5, transfer=True,
           needs=frozenset({Need.BASELINE_REWARD, Need.DPO_BETA})),
    Method("soft", estimator=_soft, rolls_out=True, weighted=True, proposal="baseline", prior="baseline",
           alpha_from_beta=True, transfer=True, needs=frozenset({Need.DPO_BETA})),
)
METHODS = tuple(m.name for m in METHOD_TABLE)
_BY_NAME = {m.name: m for m in METHOD_TABLE}


def find_method(name) -> Method | None:
    """The method called ``name``, or None."""
    return _BY_NAME.get(name) if isinstance(name, str) else None


def method_of(name) -> Method:
    """The method called ``name``, or ``ConfigError`` listing the methods."""
    method = find_method(name)
    if method is None:
        raise ConfigError(f"Unknown method {name!r}. Use one of: {', '.join(METHODS)}.")
    return method
