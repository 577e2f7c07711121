"""Blockwise mode of the value-guided decoder, after the blockwise controlled decoding of Mudgal et al. 2024
("Controlled Decoding from Language Models"): each step values k candidate *blocks* of B tokens and commits
the chosen block whole, so a response of T tokens takes about T/B steps of rollouts and reward calls, not T.

At the state ``s_t = [x, y_<t]`` candidate block j is the proposal's j-th most likely next token continued
greedily by the proposal for B − 1 more tokens, ending early at EOS or at the response budget. Its prior is
``log π_prior(block | s_t)``, the sum of the prior's token log-probs, and

    π_alg(block | s_t) ∝ π_prior(block | s_t) · exp(α · Q̂(s_t, block)).

The value estimators stay as they are: block j is asked of them as the state ``[x, y_<t, block_j[:-1]]``
with the single candidate token ``block_j[-1]`` (a ``ValueQuery`` with one candidate per row), so ARGS scores
``[y_<t, block]`` and the rollout estimators roll out after the block. ``build_decoder`` shortens their
horizon to H − B + 1, so that the look-ahead from ``s_t`` (block plus rollout) is the token decoder's (z plus
H); at B = 1 everything here reduces to the token decoder, which ``build_decoder`` uses then.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from .decoder import StepDistribution, ValueGuidedDecoder, _require_usable
from .protocol import GenerationResult, StepTrace, ValueEstimate, ValueQuery
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

    def __init__(self, *, block_size: int, **options):
        super().__init__(**options)
        self.block_size = block_size

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
        first, blocks, logprobs = self._greedy_blocks(prefixes, [n - len(r) for n, r in zip(limits, responses)])
        if self.prior is self.proposal:  # the greedy continuations carry log ρ(block | s_t) already
            prior = torch.tensor(logprobs, dtype=torch.float64)
        else:
            prior = torch.tensor(self.prior.continuation_logprobs(
                [list(p) + list(r) for p, r in zip(prior_prompts, responses)], blocks), dtype=torch.float64)
        estimate, values = self._block_values(prompts, responses, blocks, limits)
        logits = prior + self.settings.alpha * values  # (A, k) log π_alg up to a constant
        _require_usable(logits, self.settings.alpha)
        return BlockDistribution(first, prior, values, logits, estimate, blocks)

    def _greedy_blocks(self, prefixes, room: list[int]):
        """The proposal's top-k first tokens (A, k), each continued greedily to at most min(B, room) tokens
        (``sample_continuations`` stops at EOS), with log ρ_proposal of each block."""
        logprobs = self.proposal.next_token_logprobs(prefixes)  # (A, V)
        first = logprobs.topk(min(self.settings.top_k, logprobs.shape[-1]), dim=-1).indices  # (A, k)
        more = [max(1, min(self.block_size, n)) - 1 for n in room]
        out = self.proposal.sample_continuations(prefixes, first.tolist(), 1, more, 0.0)
        return (first, [[branch[0].tokens for branch in row] for row in out],
                [[branch[0].logprob for branch in row] for row in out])

    def _block_values(self, prompts, responses, blocks, limits) -> tuple[ValueEstimate | None, torch.Tensor]:
        """Q̂(s_t, block) for every block: one estimator call over the A·k states ``[y_<t, block[:-1]]``, each
        with its one candidate ``block[-1]`` and the budget left after the block."""
        A, k = len(blocks), len(blocks[0])
        if self.estimator is None:
            return None, torch.zeros(A, k, dtype=torch.float64)
        shift = self._implicit_block_shift(prompts, responses, blocks)  # before the rollouts: cache order
        query = ValueQuery([p for p in prompts for _ in range(k)],
                           [[*r, *b[:-1]] for r, row in zip(responses, blocks) for b in row],
                           torch.tensor([[b[-1]] for row in blocks for b in row]),  # (A·k, 1)
                           [n - len(r) - len(b) for n, r, row in zip(limits, responses, blocks) for b in row])
        estimate = _per_state(self.estimator.estimate(query), A, k)
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


def _per_state(estimate: ValueEstimate, A: int, k: int) -> ValueEstimate:
    """An estimate of A·k one-candidate rows, (A·k, 1, …), as A states of k candidate blocks, (A, k, …)."""
    def shaped(t):
        return None if t is None else t.reshape(A, k, *t.shape[2:])
    return ValueEstimate(shaped(estimate.values), shaped(estimate.weights), shaped(estimate.ess),
                         shaped(estimate.raw_weights))
