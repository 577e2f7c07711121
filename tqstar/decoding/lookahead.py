"""Lookahead: the token decoder, with the next step's values computed one step early where a guess allows.

At one prompt a step's cost is its 1 + H sequential forward passes of k rollout rows, and a pass of 2k rows
costs less than two passes of k (a small batch reads all the weights for few rows). So at the state
``s_t`` the decoder also values the state ``[s_t, g]`` after its guess ``g`` of the next token, the proposal's
most likely one, in the same estimator call. π_alg at ``s_t`` picks ``z_t`` as always; when ``z_t = g`` (the
prior's favourite usually wins) π_alg at ``[s_t, g]`` is already there and picks ``z_{t+1}`` without a step of
its own; otherwise that half is discarded. The candidates, values and π_alg of every token are those the
token decoder computes at the same state, so with greedy selection and greedy rollouts the responses are the
token decoder's; with sampling, each token is still drawn from π_alg at its state (from other random draws).
"""

from __future__ import annotations

from .decoder import ValueGuidedDecoder
from .protocol import GenerationResult


class LookaheadDecoder(ValueGuidedDecoder):
    """``ValueGuidedDecoder`` that values the state after the proposal's favourite token in the same batch
    (module docstring) while at most ``max_prompts`` prompts are active: beyond a few, their rollout rows fill
    the hardware and twice the rows cost about twice the time. ``build_decoder`` builds one for
    ``lookahead`` > 0."""

    def __init__(self, *, max_prompts: int = 1, **options):
        super().__init__(**options)
        self.max_prompts = max_prompts

    def _next_blocks(self, prompts, prior_prompts, proposal_prompts, responses, traces, budgets) -> list[list[int]]:
        """One or two tokens for each active state: the second where the guess was chosen."""
        guesses = self._guesses(proposal_prompts, responses, budgets)
        ahead = list(guesses)  # the states guessed at, in order; their look-ahead rows follow the A states
        A = len(prompts)
        step = self.step_distribution([*prompts, *(prompts[a] for a in ahead)],
                                      [*responses, *([*responses[a], guesses[a]] for a in ahead)],
                                      [*prior_prompts, *(prior_prompts[a] for a in ahead)],
                                      [*proposal_prompts, *(proposal_prompts[a] for a in ahead)],
                                      [*budgets, *(budgets[a] for a in ahead)])
        probabilities = step.chosen_from(self.settings.selection, self.settings.selection_temperature)
        chosen = step.candidates.gather(1, self._select(probabilities)[:, None]).squeeze(1).tolist()
        blocks = []
        for a, trace in enumerate(traces):
            rows = [a] + ([A + ahead.index(a)] if guesses.get(a) == chosen[a] else [])
            for offset, row in enumerate(rows):
                trace.append(self._trace(len(responses[a]) + offset, step.candidates[row], step.prior[row],
                                         step.values[row], probabilities[row], chosen[row], step.estimate, row))
            blocks.append([chosen[row] for row in rows])
        return blocks

    def _guesses(self, proposal_prompts, responses, budgets) -> dict[int, int]:
        """State a's guess of its next token, the proposal's most likely one, where two more tokens fit its
        budget and the guess does not end the response; none while more than ``max_prompts`` are active."""
        if len(responses) > self.max_prompts:
            return {}
        logprobs = self.proposal.next_token_logprobs([list(p) + list(r) for p, r in zip(proposal_prompts, responses)])
        favourites = logprobs.argmax(-1).tolist()
        return {a: g for a, (g, r, n) in enumerate(zip(favourites, responses, budgets))
                if len(r) + 2 <= n and g not in self.proposal.eos_token_ids}

    def _generate_batch(self, prompts, budgets, on_token=None, offset: int = 0) -> list[GenerationResult]:
        results = super()._generate_batch(prompts, budgets, on_token, offset)
        for result in results:  # a stream that ended after a guessed token never emitted the one after it
            del result.trace[len(result.token_ids):]
        return results
