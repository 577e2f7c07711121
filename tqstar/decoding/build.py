"""Assemble a decoder from configs: the method table (``tqstar.decoding.methods``) says what each method
needs and which estimator it runs; this module wires those to the loaded roles."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch

from ..errors import ConfigError
from .blocks import BlockwiseDecoder, after_block
from .config import AUTHORS_BETA, DecodeConfig, RolesConfig, split_options
from .decoder import DecodingSettings, SamplingDecoder, ValueGuidedDecoder
from .lookahead import LookaheadDecoder
from .methods import Method, Need, method_of
from .protocol import Decoder, GenerationResult
from .roles import Roles


def build_decoder(config: DecodeConfig, roles: Roles, progress: bool = False) -> Decoder:
    """The decoder ``config.method`` names, wired to the loaded roles; ``ConfigError`` when the roles lack
    what the method needs."""
    method = method_of(config.method)
    config = replace(config, beta=_beta(config, roles, method))
    generator = torch.Generator().manual_seed(config.seed)
    proposal_role, prior_role = method.roles(config)
    proposal = roles.model(proposal_role)
    if method.estimator is None:
        return SamplingDecoder(model=proposal, temperature=config.selection_temperature if method.samples else 0.0,
                               max_new_tokens=config.max_new_tokens, method=method.name, reward=roles.reward,
                               best_of=config.best_of if method.best_of else 1, batch_size=config.batch_size,
                               generator=generator)
    if Need.BASELINE_REWARD in method.needs and roles.baseline_reward is None and not roles.implicit:
        raise ConfigError(f"{method.name} needs the reward the baseline was aligned to. Pass --baseline-reward "
                          "SPEC (e.g. sentiment) or --baseline-reward implicit for a DPO baseline.")
    # soft: the exact rule ρ_BL · E[exp((r − r_BL)/β)] over the baseline's own top-k, so α = 1/β
    alpha = 1.0 / config.beta if method.alpha_from_beta else config.alpha
    settings = DecodingSettings(top_k=config.top_k, alpha=alpha, selection=config.selection,
                                selection_temperature=config.selection_temperature,
                                max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                                prune=config.prune)
    options = dict(proposal=proposal, prior=roles.model(prior_role), settings=settings, method=method.name,
                   reward=roles.reward, generator=generator, progress=progress)
    if config.block_size == 1:
        estimator = method.estimator(config, roles, proposal, generator)
        if config.lookahead:
            return LookaheadDecoder(max_prompts=config.lookahead, estimator=estimator, **options)
        return ValueGuidedDecoder(estimator=estimator, **options)
    # rollouts after a block of B tokens run H − B + 1 tokens: the token decoder's look-ahead from s_t
    config = replace(config, horizon=after_block(config.horizon, config.block_size))
    estimator = method.estimator(config, roles, proposal, generator)
    return BlockwiseDecoder(block_size=config.block_size, block_candidates=config.block_candidates,
                            estimator=estimator, **options)


def _beta(config: DecodeConfig, roles: Roles, method: Method) -> float:
    """β as given, else the implicit baseline's own DPO β (the paper's indirect transfer shares one β), else
    the authors' 2 under --compat, else 1."""
    if config.beta is not None:
        return config.beta
    if not roles.implicit:
        return AUTHORS_BETA if config.compat else 1.0
    if roles.baseline_beta is None and Need.DPO_BETA in method.needs:
        raise ConfigError("--baseline-reward implicit needs the β the baseline was DPO-trained with, and the "
                          "baseline has no tqstar metadata.json saying it. Pass --beta (e.g. --beta 0.1).")
    return roles.baseline_beta or 1.0


def generate(prompts: str | Sequence[str], config: DecodeConfig | None = None,
             roles: RolesConfig | Roles | None = None, **options) -> list[GenerationResult]:
    """Decode responses in one call. ``options`` are ``DecodeConfig`` or ``RolesConfig`` field names.

    >>> generate("How do I boil an egg?", method="tq-direct", top_k=5)[0].text  # doctest: +SKIP
    """
    decode_options, role_options = split_options(options)
    if config is None:
        config = decode_options
    else:  # explicit options override the given config
        config = replace(config, **{k: v for k, v in options.items() if hasattr(config, k)})
    if not isinstance(roles, Roles):
        roles = Roles.load(roles or role_options)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    return build_decoder(config, roles).generate(prompts)
