"""A tabular language model and the exact quantities of the paper, enumerated.

Vocabulary: EOS (0) and the letters a, b, c (1..3). A response has at most ``MAX_TOKENS`` tokens
including its EOS, so every quantity (ρ*, Q*, π_alg) is a finite sum over 40 responses.
"""

from __future__ import annotations

import math
from itertools import product

import torch

from tqstar.models import Continuation, per_prefix
from tqstar.rewards import CallableReward

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

    name = "tabular-abc"
    vocabulary = "tabular-abc"
    forward_tokens = 0
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

    def logprob(self, prefix, continuation, temperature: float = 1.0) -> float:
        """log of the probability of ``continuation`` after ``prefix`` under softmax(log ρ / T) (T = 0: argmax)."""
        seq = (*prefix, *continuation)
        key = (len(prefix), seq, temperature)
        if key not in self._logprobs:
            self._logprobs[key] = sum(self._token_logprob(seq[:i], seq[i], temperature)
                                      for i in range(len(prefix), len(seq)))
        return self._logprobs[key]

    def _token_logprob(self, state, token, temperature) -> float:
        # An impossible token gets a finite floor, so that log-ratios of two models stay defined.
        log_p = self.table[state].clamp_min(1e-300).log()
        if temperature == 0:
            return 0.0 if token == int(log_p.argmax()) else math.log(1e-300)
        return max(float(torch.log_softmax(log_p / temperature, 0)[token]), math.log(1e-300))

    def continuation_logprobs(self, prefixes, continuations):
        return [[self.logprob(p, c) for c in group] for p, group in zip(prefixes, continuations)]

    def sample_continuations(self, prefixes, branches, num_samples, max_new_tokens, temperature, generator=None):
        limits = per_prefix(max_new_tokens, len(prefixes))
        out = []
        for b, prefix in enumerate(prefixes):
            starts = [(z,) for z in branches[b]] if branches is not None else [()]
            out.append([self._sample(tuple(prefix), start, num_samples, limits[b], temperature, generator)
                        for start in starts])
        return out

    def _sample(self, prefix, start, n, max_new_tokens, temperature, generator):
        """Whole completions drawn from their enumerated probabilities under the tempered conditionals,
        then cut to the horizon; ``sampled_logprob`` is log q_T of what was kept (the forced start under ρ)."""
        full = (*prefix, *start)
        completions = (responses(full) if full[-1:] != (EOS,) else []) or [full]  # [full]: finished or impossible
        probs = torch.tensor([math.exp(self.logprob(full, y[len(full):], temperature)) for y in completions])
        picks = [0] * n if len(completions) == 1 else torch.multinomial(
            probs, n, replacement=True, generator=generator).tolist()
        keep = len(full) - len(prefix) + max_new_tokens + (0 if start else 1)  # unforced: the first is drawn too
        scored = {}
        for i in set(picks):
            row = completions[i][len(prefix):][:keep]
            sampled = None if temperature == 1 else (
                self.logprob(prefix, row[:len(start)]) + self.logprob((*prefix, *start), row[len(start):], temperature))
            scored[i] = Continuation(row, self.logprob(prefix, row), sampled)
        return [scored[i] for i in picks]


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


# The rewards the oracle tests align to: a target r and the baseline's r_BL, functions of the text.
def target_reward(s: str) -> float:
    return 0.9 * s.count("a") - 0.6 * s.count("c") + 0.5 * s.endswith("b") + 0.2 * len(s)


def baseline_reward(s: str) -> float:
    return 0.7 * s.count("b") - 0.4 * s.count("a") + 0.3 * s.startswith("c")


def as_reward(fn, name):
    return CallableReward(lambda prompts, texts: [fn(t) for t in texts], name)


R, R_BL = as_reward(target_reward, "target"), as_reward(baseline_reward, "baseline")
