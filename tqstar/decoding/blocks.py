"""Blockwise mode of the value-guided decoder, after the blockwise controlled decoding of Mudgal et al. 2024
("Controlled Decoding from Language Models"): each step values k candidate *blocks* of B tokens and commits
the chosen block whole, so a response of T tokens takes about T/B steps of rollouts and reward calls, not T.

At the state ``s_t = [x, y_<t]`` candidate block j is, with ``block_candidates='top-k'``, the proposal's j-th
most likely next token continued greedily by the proposal for B − 1 more tokens; with ``'sampled'``, the j-th of
k blocks of B tokens sampled from the proposal. Either ends early at EOS or at the response budget. Its prior
is ``log π_prior(block | s_t)``, the sum of the prior's token log-probs, and

    π_alg(block | s_t) ∝ π_prior(block | s_t) · exp(α · Q̂(s_t, block)).

Sampled blocks stand for the proposal's whole distribution over blocks, so π_alg over them is its
self-normalised importance estimate: a block drawn c times from the proposal q gets weight
``c · π_prior/q · exp(α·Q̂)`` on its first draw and none on the others (as k grows this tends to π_alg over
every block; the oracle test checks it). Identical blocks are valued once.

The value estimators stay as they are: block j is asked of them as the state ``[x, y_<t, block_j[:-1]]``
with the single candidate token ``block_j[-1]`` (a ``ValueQuery`` with one candidate per row), so ARGS scores
``[y_<t, block]`` and the rollout estimators roll out after the block. ``build_decoder`` shortens their
horizon to H − B + 1, so that the look-ahead from ``s_t`` (block plus rollout) is the token decoder's (z plus
H); at B = 1 everything here reduces to the token decoder, which ``build_decoder`` uses then.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from .decoder import StepDistribution, ValueGuidedDecoder, _require_usable
from .protocol import BLOCKS_SAMPLED, BLOCKS_TOP_K, GenerationResult, StepTrace, ValueEstimate, ValueQuery
from .values import SoftTransferValue


@dataclass
class BlockDistribution(StepDistribution):
    """π_alg over k candidate blocks of each of A states; ``candidates`` holds the blocks' first tokens."""

    blocks: list[list[tuple[int, ...]]] = field(default_factory=list)  # [a][j]: block j of state a


def after_block(horizon: int | None, block_size: int) -> int | None:
    """Rollout tokens after a block of B tokens that keep the token decoder's look-ahead of 1 + H tokens."""
    return None if horizon is None else max(0, horizon - block_size + 1)


class BlockwiseDecoder(ValueGuidedDecoder):
    """Algorithm 1 over blocks of ``block_size`` tokens (module docstring). Build one with ``build_decoder``
    and ``block_size`` > 1, or construct it like ``ValueGuidedDecoder`` plus ``block_size``."""

    def __init__(self, *, block_size: int, block_candidates: str = BLOCKS_TOP_K, **options):
        super().__init__(**options)
        self.block_size, self.block_candidates = block_size, block_candidates

    def block_distribution(self, prompts: Sequence[str], responses: Sequence[Sequence[int]], prior_prompts=None,
                           proposal_prompts=None, max_new_tokens: Sequence[int] | None = None) -> BlockDistribution:
        """π_alg over the candidate blocks at the states ``[x, y_<t]``: the blocks, their prior log-probs, Q̂
        and probabilities. ``max_new_tokens[a]`` is state a's response budget (default: the settings')."""
        prior_prompts = prior_prompts or [self.prior.encode_prompt(p) for p in prompts]
        if self.proposal is self.prior:
            proposal_prompts = prior_prompts
        proposal_prompts = proposal_prompts or [self.proposal.encode_prompt(p) for p in prompts]
        limits = list(max_new_tokens or [self.settings.max_new_tokens] * len(responses))
        prefixes = [list(p) + list(r) for p, r in zip(proposal_prompts, responses)]
        # tokens after a block's first: B − 1, fewer where the budget ends sooner
        more = [max(1, min(self.block_size, n - len(r))) - 1 for n, r in zip(limits, responses)]
        sampled = self.block_candidates == BLOCKS_SAMPLED
        blocks, proposal_logprobs = (self._sampled_blocks if sampled else self._greedy_blocks)(prefixes, more)
        proposal_logprobs = torch.tensor(proposal_logprobs, dtype=torch.float64)
        if self.prior is self.proposal:  # the continuations carry log ρ(block | s_t) already
            prior = proposal_logprobs
        else:
            prior = torch.tensor(self.prior.continuation_logprobs(
                [list(p) + list(r) for p, r in zip(prior_prompts, responses)], blocks), dtype=torch.float64)
        estimate, values = self._block_values(prompts, responses, blocks, limits)
        logits = prior + self.settings.alpha * values  # (A, k) log π_alg up to a constant
        if sampled:
            logits = logits - proposal_logprobs + _log_draws(blocks)
        _require_usable(logits, self.settings.alpha)
        first = torch.tensor([[b[0] for b in row] for row in blocks])
        return BlockDistribution(first, prior, values, logits, estimate, blocks)

    def _greedy_blocks(self, prefixes, more: list[int]):
        """The proposal's top-k first tokens, each continued greedily by ``more`` tokens (``sample_continuations``
        stops at EOS), with log ρ_proposal of each block."""
        logprobs = self.proposal.next_token_logprobs(prefixes)  # (A, V)
        first = logprobs.topk(min(self.settings.top_k, logprobs.shape[-1]), dim=-1).indices  # (A, k)
        out = self.proposal.sample_continuations(prefixes, first.tolist(), 1, more, 0.0)
        return ([[branch[0].tokens for branch in row] for row in out],
                [[branch[0].logprob for branch in row] for row in out])

    def _sampled_blocks(self, prefixes, more: list[int]):
        """k blocks of 1 + ``more`` tokens drawn from the proposal at temperature 1, with log ρ_proposal of each."""
        out = self.proposal.sample_continuations(prefixes, None, self.settings.top_k, more, 1.0, self.generator)
        return [[c.tokens for c in row[0]] for row in out], [[c.logprob for c in row[0]] for row in out]

    def _block_values(self, prompts, responses, blocks, limits) -> tuple[ValueEstimate | None, torch.Tensor]:
        """Q̂(s_t, block) for every block: one estimator call over the A·k states ``[y_<t, block[:-1]]``, each
        with its one candidate ``block[-1]`` and the budget left after the block."""
        A, k = len(blocks), len(blocks[0])
        if self.estimator is None:
            return None, torch.zeros(A, k, dtype=torch.float64)
        shift = self._implicit_block_shift(prompts, responses, blocks)  # before the rollouts: cache order
        rows, slots = _distinct(blocks)  # rows: the distinct (state, block) pairs; slots: each slot's row
        query = ValueQuery([prompts[a] for a, _ in rows], [[*responses[a], *b[:-1]] for a, b in rows],
                           torch.tensor([[b[-1]] for _, b in rows]),  # (rows, 1)
                           [limits[a] - len(responses[a]) - len(b) for a, b in rows])
        estimate = _per_state(self.estimator.estimate(query), slots, A, k)
        return estimate, estimate.values.double() + shift

    def _implicit_block_shift(self, prompts, responses, blocks) -> torch.Tensor | float:
        """Soft transfer with DPO's implicit r_BL = β·log(ρ_BL/ρ_ref) + const: the estimator's state ends before
        the block's last token, so its log-ratios lack the block's own earlier tokens. That term differs
        between blocks and soft's log-mean-exp keeps it, so add it: −β·(log ρ_BL − log ρ_ref)(block[:-1] | s_t).
        (tq-indirect's self-normalised weights cancel any per-candidate factor; explicit rewards see the text.)"""
        if not isinstance(self.estimator, SoftTransferValue) or self.estimator.spec.implicit_reference is None:
            return 0.0
        spec, heads = self.estimator.spec, [[b[:-1] for b in row] for row in blocks]
        baseline, reference = spec.model, spec.implicit_reference
        log_bl = baseline.continuation_logprobs([baseline.encode_prompt(p) + list(r)
                                                 for p, r in zip(prompts, responses)], heads)
        log_ref = reference.continuation_logprobs([reference.encode_prompt(p) + list(r)
                                                   for p, r in zip(prompts, responses)], heads)
        return -spec.beta * (torch.tensor(log_bl, dtype=torch.float64) - torch.tensor(log_ref, dtype=torch.float64))

    def _next_blocks(self, prompts, prior_prompts, proposal_prompts, responses, traces, budgets) -> list[list[int]]:
        """One block for each active state: candidates, values, π_alg, choice, trace."""
        step = self.block_distribution(prompts, responses, prior_prompts, proposal_prompts, budgets)
        probabilities = step.chosen_from(self.settings.selection, self.settings.selection_temperature)
        picks = self._select(probabilities).tolist()
        chosen = [list(step.blocks[a][j]) for a, j in enumerate(picks)]
        for a, trace in enumerate(traces):
            trace.append(self._block_trace(len(responses[a]), step, probabilities, a, chosen[a]))
        return chosen

    def _block_trace(self, position, step: BlockDistribution, probabilities, a: int, chosen: list[int]) -> StepTrace:
        trace = self._trace(position, step.candidates[a], step.prior[a], step.values[a], probabilities[a],
                            chosen[0], step.estimate, a)
        return replace(trace, candidate_texts=[self.proposal.decode(b) for b in step.blocks[a]],
                       chosen_text=self.proposal.decode(chosen), blocks=[list(b) for b in step.blocks[a]],
                       chosen_block=chosen)

    def _generate_batch(self, prompts, budgets, on_token=None, offset: int = 0) -> list[GenerationResult]:
        results = super()._generate_batch(prompts, budgets, on_token, offset)
        for result in results:  # a stream that ended mid-block committed only the block's head
            last = result.trace[-1] if result.trace else None
            if last is not None and len(result.token_ids) - last.position < len(last.chosen_block):
                last.chosen_block = list(result.token_ids[last.position:])
                last.chosen_text = self.proposal.decode(last.chosen_block)
        return results


def _distinct(blocks: list[list[tuple[int, ...]]]) -> tuple[list[tuple[int, tuple[int, ...]]], torch.Tensor]:
    """The distinct (state, block) pairs, in order of first appearance, and for each of the A·k slots the index
    of its pair: sampled blocks repeat, and a repeated block needs its rollouts once."""
    index: dict[tuple[int, tuple[int, ...]], int] = {}
    slots = [index.setdefault((a, tuple(b)), len(index)) for a, row in enumerate(blocks) for b in row]
    return list(index), torch.tensor(slots)


def _log_draws(blocks: list[list[tuple[int, ...]]]) -> torch.Tensor:
    """(A, k): log of how often each block was drawn at its first draw, −inf at its repeats."""
    out = torch.full((len(blocks), len(blocks[0])), -math.inf, dtype=torch.float64)
    for a, row in enumerate(blocks):
        draws = Counter(tuple(b) for b in row)
        for j, b in enumerate(row):
            if tuple(b) in draws:
                out[a, j] = math.log(draws.pop(tuple(b)))
    return out


def _per_state(estimate: ValueEstimate, slots: torch.Tensor, A: int, k: int) -> ValueEstimate:
    """An estimate of the distinct one-candidate rows, (rows, 1, …), as A states of k candidate blocks,
    (A, k, …), each slot holding its row's estimate."""
    def shaped(t):
        return None if t is None else t[slots].reshape(A, k, *t.shape[2:])
    return ValueEstimate(shaped(estimate.values), shaped(estimate.weights), shaped(estimate.ess),
                         shaped(estimate.raw_weights))
