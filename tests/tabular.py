"""A tabular language model and the exact quantities of the paper, enumerated.

Vocabulary: EOS (0) and the letters a, b, c (1..3). A response has at most ``MAX_TOKENS`` tokens
including its EOS, so every quantity (ρ*, Q*, π_alg) is a finite sum over 40 responses.
"""

from __future__ import annotations

import math
from functools import partial
from itertools import product

import torch

from tqstar.lm import Continuation, per_prefix

EOS, LETTERS, MAX_TOKENS = 0, "abc", 4
VOCAB = 1 + len(LETTERS)


def responses(prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every complete response (ending in EOS) that starts with ``prefix``."""
    out = []
    for length in range(MAX_TOKENS):
        for body in product(range(1, VOCAB), repeat=length):
            seq = (*body, EOS)
            if seq[:len(prefix)] == prefix:
                out.append(seq)
    return out


def text(tokens) -> str:
    return "".join(LETTERS[t - 1] for t in tokens if t != EOS)


class TabularLM:
    """A complete ``LanguageModel``: next-token probabilities looked up in a table keyed by prefix."""

    vocabulary = "tabular-abc"
    eos_token_ids = frozenset({EOS})
    max_length = 64

    def __init__(self, table: dict[tuple[int, ...], torch.Tensor]):
        self._logprobs: dict = {}
        self.table = table  # prefix -> (V,) probabilities; prefixes of length MAX_TOKENS - 1 force EOS

    @classmethod
    def random(cls, seed: int) -> "TabularLM":
        g = torch.Generator().manual_seed(seed)
        table = {}
        for length in range(MAX_TOKENS):
            for prefix in product(range(1, VOCAB), repeat=length):
                table[prefix] = torch.softmax(torch.randn(VOCAB, generator=g, dtype=torch.float64) * 1.5, 0)
        return cls(cls._force_eos(table))

    @classmethod
    def from_distribution(cls, dist: dict[tuple[int, ...], float]) -> "TabularLM":
        """Conditionals of a distribution over complete responses, by marginalisation."""
        table = {}
        for length in range(MAX_TOKENS):
            for prefix in product(range(1, VOCAB), repeat=length):
                mass = torch.tensor([sum(dist[y] for y in responses((*prefix, z))) for z in range(VOCAB)],
                                    dtype=torch.float64)
                table[prefix] = mass / mass.sum()
        return cls(cls._force_eos(table))

    @staticmethod
    def _force_eos(table):
        for prefix in table:
            if len(prefix) == MAX_TOKENS - 1:
                table[prefix] = torch.nn.functional.one_hot(torch.tensor(EOS), VOCAB).double()
        return table

    def encode_prompt(self, prompt: str) -> list[int]:
        return []

    def encode(self, s: str) -> list[int]:
        return [LETTERS.index(ch) + 1 for ch in s]

    def decode(self, token_ids) -> str:
        return text(token_ids)

    def next_token_logprobs(self, prefixes) -> torch.Tensor:
        return torch.stack([self.table[tuple(p)] for p in prefixes]).log()

    def logprob(self, prefix, continuation) -> float:
        seq = (*prefix, *continuation)
        if (len(prefix), seq) not in self._logprobs:
            self._logprobs[len(prefix), seq] = self._logprob(len(prefix), seq)
        return self._logprobs[len(prefix), seq]

    def _logprob(self, start: int, seq) -> float:
        # An impossible token gets a finite floor, so that log-ratios of two models stay defined.
        return sum(math.log(max(float(self.table[seq[:i]][seq[i]]), 1e-300)) for i in range(start, len(seq)))

    def continuation_logprobs(self, prefixes, continuations):
        return [[self.logprob(p, c) for c in group] for p, group in zip(prefixes, continuations)]

    def sample_continuations(self, prefixes, branches, num_samples, max_new_tokens, temperature, generator=None):
        limits = per_prefix(max_new_tokens, len(prefixes))
        draw = self._sample if temperature == 1.0 else partial(self._sample_tempered, temperature=temperature)
        out = []
        for b, prefix in enumerate(prefixes):
            starts = [(z,) for z in branches[b]] if branches is not None else [()]
            out.append([draw(tuple(prefix), start, num_samples, limits[b], generator) for start in starts])
        return out

    def _sample(self, prefix, start, n, max_new_tokens, generator):
        """Whole completions drawn from their enumerated probabilities, then cut to the horizon."""
        full = (*prefix, *start)
        completions = (responses(full) if full[-1:] != (EOS,) else []) or [full]  # [full]: finished or impossible
        probs = torch.tensor([math.exp(self.logprob(full, y[len(full):])) for y in completions])
        picks = [0] * n if len(completions) == 1 else torch.multinomial(
            probs, n, replacement=True, generator=generator).tolist()
        keep = len(full) - len(prefix) + max_new_tokens
        drawn = {i: completions[i][len(prefix):][:keep] for i in set(picks)}
        scored = {i: Continuation(row, self.logprob(prefix, row)) for i, row in drawn.items()}
        return [scored[i] for i in picks]

    def _sample_tempered(self, prefix, start, n, max_new_tokens, generator, temperature):
        """Token by token from softmax(log ρ / T) (argmax at T = 0), recording log q_T of the drawn tokens."""
        limit = len(start) + max_new_tokens + (0 if start else 1)  # without a branch the first token is drawn too
        out = []
        for _ in range(n):
            row, sampled = list(start), 0.0
            while (not row or row[-1] != EOS) and len(row) < limit and len(prefix) + len(row) < MAX_TOKENS:
                logits = self.table[(*prefix, *row)].clamp_min(1e-300).log()
                if temperature == 0:
                    token = int(logits.argmax())
                else:
                    q = torch.softmax(logits / temperature, 0)
                    token = int(torch.multinomial(q, 1, generator=generator))
                    sampled += math.log(q[token])
                row.append(token)
            tokens = tuple(row)
            out.append(Continuation(tokens, self.logprob(prefix, tokens),
                                    sampled + (self.logprob(prefix, start) if start else 0.0)))
        return out


def aligned(reference: TabularLM, reward, beta: float) -> dict[tuple[int, ...], float]:
    """ρ*_r(y) = ρ_ref(y) · exp(r(y)/β) / Z, enumerated."""
    weights = {y: math.exp(reference.logprob((), y) + reward(text(y)) / beta) for y in responses()}
    total = sum(weights.values())
    return {y: w / total for y, w in weights.items()}


def expectation(dist: dict[tuple[int, ...], float], prefix, fn) -> float:
    """E_{y ~ dist(· | y starts with prefix)} fn(y)."""
    ys = responses(tuple(prefix))
    mass = sum(dist[y] for y in ys)
    return sum(dist[y] * fn(y) for y in ys) / mass


def distribution_of(model: TabularLM) -> dict[tuple[int, ...], float]:
    return {y: math.exp(model.logprob((), y)) for y in responses()}
