"""The decoder role's contract, at the bottom of the decoding wing: the one ``Decoder`` protocol, what a
decoder returns (``GenerationResult`` with its per-step ``StepTrace``), and the question a value
estimator answers (``ValueQuery`` → ``ValueEstimate``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence

import torch

from ..models.protocol import LanguageModel

#: How a value-guided decoder picks from π_alg: its argmax, or a sample.
SELECT_GREEDY, SELECT_SAMPLE = "greedy", "sample"
SELECTIONS = (SELECT_GREEDY, SELECT_SAMPLE)
#: How a blockwise decoder draws its k candidate blocks (tqstar.decoding.blocks)
BLOCKS_TOP_K, BLOCKS_SAMPLED = "top-k", "sampled"
BLOCK_CANDIDATES = (BLOCKS_TOP_K, BLOCKS_SAMPLED)

#: ``on_token(index, token)`` sees each token emitted for ``prompts[index]``; True ends that response there.
OnToken = Callable[[int, int], bool]


@dataclass
class StepTrace:
    """The evidence for one step: what was considered, how it was valued, what was chosen. A step emits one
    token; in blockwise mode (``block_size`` > 1) a block, and then ``candidates`` and ``chosen`` are the
    blocks' first tokens, the texts and log-probs are the whole blocks', and ``blocks`` holds their tokens."""

    position: int
    candidates: list[int]
    candidate_texts: list[str]
    prior_logprobs: list[float]  # log π_prior(z | s_t)
    values: list[float]  # Q̂(s_t, z)
    probabilities: list[float]  # the distribution the token was chosen from: π_alg, tempered when sampled
    chosen: int
    chosen_text: str
    weights: list[list[float]] | None = None  # normalised importance weights per candidate and rollout
    ess: list[float] | None = None  # effective sample size per candidate
    raw_weights: list[list[float]] | None = None  # --compat's unnormalised exp((r − r_BL)/β)
    blocks: list[list[int]] | None = None  # blockwise: each candidate block's token ids
    chosen_block: list[int] | None = None  # blockwise: the tokens committed (cut short if streaming ended there)


@dataclass
class GenerationResult:
    """One response with its reward, cost and trace."""

    prompt: str
    text: str
    token_ids: list[int]
    method: str
    reward: float | None = None
    seconds: float = 0.0
    forward_tokens: int = 0
    trace: list[StepTrace] = field(default_factory=list)

    def trace_records(self, prompt_index: int = 0) -> list[dict]:
        """The trace as JSON-ready dicts, one per step (a token, or a block)."""
        return [{"prompt_index": prompt_index, **asdict(step)} for step in self.trace]


class Decoder(Protocol):
    """Decodes one response per prompt. Build one with ``tqstar.build_decoder``; construct directly with keywords."""

    method: str  # the label of its results
    models: tuple[LanguageModel, ...]  # every model it runs, the output model first, each once
    output_model: LanguageModel  # the model whose token ids and text it emits

    def generate(self, prompts: Sequence[str], *, on_token: OnToken | None = None,
                 max_new_tokens: int | Sequence[int] | None = None) -> list[GenerationResult]:
        """One result per prompt, in order. ``max_new_tokens``: one budget for every prompt, or one per
        prompt; None keeps the decoder's own. ``on_token`` streams and may end responses early."""


@dataclass
class ValueQuery:
    """The decoder's question at one step, for a batch of B states ``s_t = [x, y_<t]``."""

    prompts: Sequence[str]  # x, raw user prompts
    responses: Sequence[Sequence[int]]  # y_<t, token ids in the candidate vocabulary
    candidates: torch.Tensor  # (B, k) candidate token ids z
    budgets: Sequence[int] | None = None  # tokens state b may still emit after z; None: no response budget
    active: torch.Tensor | None = None  # (B, k) bool: the candidates to value; None: all (the rest get NaN)

    def rows(self, indices: Sequence[int]) -> "ValueQuery":
        """The question for the states ``indices`` alone, in that order."""
        pick = list(indices)
        return ValueQuery([self.prompts[b] for b in pick], [self.responses[b] for b in pick], self.candidates[pick],
                          None if self.budgets is None else [self.budgets[b] for b in pick],
                          None if self.active is None else self.active[pick])


@dataclass
class ValueEstimate:
    """``values[b, j] = Q̂(s_t^b, z_j)``, with the importance-sampling evidence where it exists."""

    values: torch.Tensor  # (B, k)
    weights: torch.Tensor | None = None  # (B, k, N) normalised importance weights, Σ_i w_i = 1
    ess: torch.Tensor | None = None  # (B, k) effective sample size (Σw)² / Σw²
    raw_weights: torch.Tensor | None = None  # (B, k, N) unnormalised exp((r − r_BL)/β) of --compat


class ValueEstimator(Protocol):
    """Estimates Q̂ for a batch of states. Should also carry ``models``: every ``LanguageModel`` it runs
    (their forward tokens count as the decoder's compute), and may carry ``value_bounds = (lo, hi)``, a
    range every Q̂ it returns lies in (a mean of bounded rewards), which lets a greedy decoder skip
    candidates that cannot win (``ValueQuery.active``)."""

    def estimate(self, query: ValueQuery) -> ValueEstimate:
        """Estimate ``Q̂`` for every candidate of every state in the batch."""
