"""The language-model role: the token-level protocol every decoder builds on.

A backend implements three batched model calls (``next_token_logprobs``, ``sample_continuations``,
``continuation_logprobs``) and three tokenizer calls. Caching and batching live behind them: the
decoders never see a KV cache. ``tqstar.models.HFLanguageModel`` is the transformers backend; the tabular
model in ``tests/tabular.py`` is a complete implementation to copy from. This module is the bottom of the
models wing and imports no torch at run time, so the protocol stays cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

from ..errors import PromptError, VocabularyMismatchError
from ..prompts import unicode_problem

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Continuation:
    """One sampled continuation of a prefix.

    ``tokens`` starts with the branch token when one was given and ends with an EOS token if the
    model stopped; ``logprob`` is ``log ρ(tokens | prefix)`` under the model at temperature 1.
    ``sampled_logprob`` is ``log q(tokens | prefix)`` under the distribution the tokens were actually
    drawn from (the tempered ``q_T``; a forced branch token counts as under ρ, since it was not drawn),
    so ``logprob − sampled_logprob`` is the importance correction from the sampler to ρ. ``None``
    means the tokens were drawn from ρ itself (temperature 1) or the backend cannot tell.
    """

    tokens: tuple[int, ...]
    logprob: float
    sampled_logprob: float | None = None

    @property
    def log_correction(self) -> float:
        """``log ρ(tokens) − log q(tokens)``: 0 when drawn from ρ at temperature 1."""
        return 0.0 if self.sampled_logprob is None else self.logprob - self.sampled_logprob


@runtime_checkable
class LanguageModel(Protocol):
    """A causal language model, batch-first: lists in, lists of the same length out.

    Optional: ``max_candidates: int``, the most next tokens the model can rank (a remote model returns only
    its top log-probs); read it with ``max_candidates(model)``.
    """

    #: A readable name, used in messages and traces.
    name: str
    #: Identifies the token ids: two models with equal ``vocabulary`` share ids and may exchange them.
    vocabulary: str
    #: Token ids that end a response.
    eos_token_ids: frozenset[int]
    #: Longest prefix plus continuation the model accepts, in tokens.
    max_length: int
    #: Tokens run through the model so far (the decoders' compute counter); a model may keep it at 0.
    forward_tokens: int

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a user prompt ready for the response to follow (chat template applied)."""

    def encode(self, text: str) -> list[int]:
        """Token ids of a piece of response text, without special tokens."""

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of response token ids, special tokens (EOS) dropped."""

    def next_token_logprobs(self, prefixes: Sequence[Sequence[int]]) -> torch.Tensor:
        """``log π(z | prefix)`` for every token ``z``: a float tensor of shape (B, V).

        Example: ``lm.next_token_logprobs([[1, 5, 9]]).shape == (1, V)``.
        """

    def sample_continuations(
        self,
        prefixes: Sequence[Sequence[int]],
        branches: Sequence[Sequence[int]] | None,
        num_samples: int,
        max_new_tokens: int | Sequence[int],
        temperature: float,
        generator: torch.Generator | None = None,
    ) -> list[list[list[Continuation]]]:
        """Sample ``num_samples`` continuations of each prefix, for each of its branch tokens.

        ``branches[b]`` lists the tokens forced first after ``prefixes[b]`` (the candidates ``z``);
        ``None`` means one unforced branch per prefix. After the branch token at most
        ``max_new_tokens`` tokens are generated (one number for every prefix, or ``max_new_tokens[b]``
        for prefix ``b``), stopping at EOS; ``temperature == 0`` is greedy. When ``temperature`` is not
        1, each continuation's ``sampled_logprob`` should hold ``log q_T`` (the weighted estimators
        refuse tempered rollouts without it). Returns ``out[b][j][n]``: prefix ``b``, branch ``j``,
        sample ``n``.
        """

    def continuation_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[Sequence[int]]],
    ) -> list[list[float]]:
        """``log ρ(c | prefix)`` for every continuation ``c`` in ``continuations[b]`` of ``prefixes[b]``."""


def max_candidates(model: LanguageModel) -> int | None:
    """The most next tokens ``model`` can rank, or None when it ranks its whole vocabulary."""
    return getattr(model, "max_candidates", None)


def forward_tokens(model: LanguageModel) -> int:
    """The model's forward-token counter (0 for a model that does not count)."""
    return getattr(model, "forward_tokens", 0)


def require_shared_vocabulary(first: LanguageModel, second: LanguageModel, why: str) -> None:
    """Refuse a combination of models that must exchange token ids but do not share them."""
    if first.vocabulary != second.vocabulary:
        raise VocabularyMismatchError(
            f"{why} needs both models to share one vocabulary, but they differ "
            f"({first.vocabulary!r} vs {second.vocabulary!r}). Use models with the same tokenizer, "
            "or a mode that works on text (direct or indirect transfer with an explicit baseline reward)."
        )


def per_prefix(max_new_tokens: int | Sequence[int], count: int) -> list[int]:
    """``max_new_tokens`` of ``sample_continuations`` as one limit per prefix."""
    if isinstance(max_new_tokens, int):
        return [max_new_tokens] * count
    limits = [int(n) for n in max_new_tokens]
    if len(limits) != count:
        raise ValueError(f"{len(limits)} token limits for {count} prefixes")
    return limits


def check_prompt(model: LanguageModel, prompt: str, max_new_tokens: int) -> list[int]:
    """Encode a prompt, refusing an empty one or one that leaves no room for the response."""
    if not prompt or not prompt.strip():
        raise PromptError("The prompt is empty. Pass the text you want a response to.")
    problem = unicode_problem(prompt)
    if problem:
        raise PromptError(f"The prompt {problem}.")
    ids = model.encode_prompt(prompt)
    if len(ids) + max_new_tokens > model.max_length:
        raise PromptError(
            f"The prompt is {len(ids)} tokens; with max_new_tokens={max_new_tokens} it exceeds the "
            f"model context of {model.max_length} tokens. Shorten the prompt or lower max_new_tokens."
        )
    return ids
