"""Metrics of the paper's comparison: per response (KL to the reference, diversity, coherence, mean token
log-probability) and per method (means with 95% bootstrap intervals, win/tie/lose by the target reward)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..decoding.methods import KL, method_of
from ..decoding.protocol import BLOCKS_SAMPLED, GenerationResult

#: Resamples per interval. With 1,000 and the nearest resample as the percentile, a lower bound over 10
#: prompts with a few large differences moved by 0.3 between seeds; 10,000 interpolated ones hold it still.
BOOTSTRAP_SAMPLES = 10_000
#: Resampled values drawn at once, so that memory stays bounded however many prompts a run has.
BOOTSTRAP_CHUNK = 4_000_000
TIE_TOLERANCE = 1e-6  # rewards closer than this are a tie (identical responses score identically)


# --- per response ---------------------------------------------------------------------------------

def diversity(text: str) -> float:
    """``∏_{n=2..4} (1 − rep_n/100)``, rep_n = 100·(1 − distinct n-grams / n-grams) of the response's words."""
    words = text.split()
    score = 1.0
    for n in (2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if grams:
            score *= len(set(grams)) / len(grams)
    return score


def mean_ess(result: GenerationResult) -> float | None:
    """Mean effective sample size (Σw)²/Σw² of the importance-weighted rollouts, over the response's steps and
    their candidates; None for a decoder whose values are plain means. Near 1 of N rollouts: one rollout
    decides each value, the variance soft and indirect transfer pay for their exactness."""
    per_step = [sum(step.ess) / len(step.ess) for step in result.trace if step.ess]
    return sum(per_step) / len(per_step) if per_step else None


#: How a record's ``kl`` was computed (docs/algorithm.md, "KL to the reference").
KL_STEPWISE = "stepwise-exact"  # Σ_t KL(π_t ‖ ρ_ref,t) over the states the response visits
KL_PATH = "path-log-ratio"  # log π(y) − log ρ_ref(y): one-sample Monte Carlo, where vocabularies differ
KL_BEST_OF_N = "best-of-n-bound"  # log N − (N − 1)/N, the analytic bound
KL_BLOCKWISE = "blockwise-exact"  # Σ_blocks KL(π_alg ‖ ρ_ref) over the blocks a --block-size B decoder chose
#: With sampled candidate blocks the same sum is over the candidates drawn at each block state; the decoder's
#: own distribution there is the mixture over draws, whose KL is at most the draws' mean (convexity)
KL_BLOCKWISE_SAMPLED = "blockwise-sampled-bound"
#: --prune leaves the values of candidates that cannot win unestimated, so π_t is π_alg over the rest
KL_PRUNED = "stepwise-pruned"


def response_kls(results: Sequence[GenerationResult], decode, roles) -> tuple[list[float], str]:
    """``method_kls``, named ``stepwise-pruned`` for a value-guided method run with --prune: π_alg there is
    renormalised over the candidates that could win, a different distribution from the unpruned π_alg."""
    kls, estimator = method_kls(results, decode, roles)
    pruned = decode.prune and method_of(decode.method).estimator is not None
    return kls, KL_PRUNED if pruned and estimator in (KL_STEPWISE, KL_PATH) else estimator


def method_kls(results: Sequence[GenerationResult], decode, roles) -> tuple[list[float], str]:
    """KL(π ‖ ρ_ref) of each response's method, in nats, and the name of the estimator used.

    ``π_t`` is the distribution the method chooses token t from: π_alg (tempered when it samples) for
    value-guided methods, the decoded model at the sampling temperature for greedy (T = 1: its argmax is
    emitted) and sample. Wherever ``π_t`` and ``ρ_ref,t`` share a vocabulary the sum over the visited
    states is exact; Best-of-N gets its analytic bound; a model with another vocabulary the path log-ratio.
    A blockwise decoder (``block_size`` > 1) chooses blocks, not tokens: its sum runs over the visited block
    states, π_alg over the k candidate blocks against ρ_ref's probability of each whole block (by the chain
    rule its expectation is the same response-level KL), named ``blockwise-exact``; with sampled candidate
    blocks, an upper bound of it, named ``blockwise-sampled-bound``.
    """
    method = method_of(decode.method)
    if method.kl is KL.BEST_OF_N:
        return [best_of_n_kl(decode.best_of)] * len(results), KL_BEST_OF_N
    reference = roles.reference
    proposal_role, prior_role = method.roles(decode)
    if method.kl is KL.SAMPLER:
        model = roles.model(proposal_role)
        temperature = decode.selection_temperature if method.samples else 1.0
        if model.vocabulary != reference.vocabulary:
            own = _path_logprobs(model, results, temperature)
            return [lp - _text_logprob(reference, r, model) for lp, r in zip(own, results)], KL_PATH
        return _sampling_kls(model, reference, results, temperature), KL_STEPWISE
    proposal = roles.model(proposal_role)
    if proposal.vocabulary != reference.vocabulary:
        return [path_log_prob(r) - _text_logprob(reference, r, proposal) for r in results], KL_PATH
    if decode.block_size > 1:  # π_alg over whole blocks, against ρ_ref's probability of each block
        kls = [trace_kl(r) for r in results] if prior_role == "reference" else _block_kls_against(reference, results)
        return kls, KL_BLOCKWISE_SAMPLED if decode.block_candidates == BLOCKS_SAMPLED else KL_BLOCKWISE
    if prior_role == "reference":
        return [trace_kl(r) for r in results], KL_STEPWISE  # the trace's prior log-probs are ρ_ref's
    return _trace_kls_against(reference, results), KL_STEPWISE


def trace_kl(result: GenerationResult) -> float:
    """``Σ_t KL(π_t ‖ π_prior,t)`` along the response from the decoder's own per-token distributions
    (π_t is zero outside the top-k candidates, so only their prior log-probs are needed)."""
    return sum(_candidates_kl(step.probabilities, step.prior_logprobs) for step in result.trace)


def _candidates_kl(probabilities, reference_logprobs) -> float:
    return sum(p * (math.log(p) - lr) for p, lr in zip(probabilities, reference_logprobs) if p > 0)


def _trace_kls_against(reference, results) -> list[float]:
    """``Σ_t KL(π_t ‖ ρ_ref,t)`` with ρ_ref evaluated at each step's candidates."""
    totals = [0.0] * len(results)
    for t, rows, logprobs in _walk(reference, results):
        for a, b in enumerate(rows):
            step = results[b].trace[t]
            totals[b] += _candidates_kl(step.probabilities, logprobs[a, step.candidates].tolist())
    return totals


def _block_kls_against(reference, results) -> list[float]:
    """``Σ_b KL(π_b ‖ ρ_ref)`` over each response's blocks, with ρ_ref's log-probs of each candidate block."""
    prompts = [reference.encode_prompt(r.prompt) for r in results]
    totals = [0.0] * len(results)
    for t in range(max((len(r.trace) for r in results), default=0)):
        rows = [b for b, r in enumerate(results) if len(r.trace) > t]
        steps = [results[b].trace[t] for b in rows]
        states = [prompts[b] + list(results[b].token_ids[:step.position]) for b, step in zip(rows, steps)]
        for b, step, logprobs in zip(rows, steps, reference.continuation_logprobs(states, [s.blocks for s in steps])):
            totals[b] += _candidates_kl(step.probabilities, logprobs)
    return totals


def _sampling_kls(model, reference, results, temperature: float) -> list[float]:
    """``Σ_t KL(softmax(log ρ_t / T) ‖ ρ_ref,t)`` for a model sampled at temperature T."""
    if model is reference and temperature == 1:
        return [0.0] * len(results)
    totals = [0.0] * len(results)
    walks = [_walk(reference, results)] + ([] if model is reference else [_walk(model, results)])
    for (t, rows, reference_lp), *own in zip(*walks):
        log_q = torch.log_softmax((own[0][2] if own else reference_lp) / temperature, dim=-1)  # (A, V)
        q = log_q.exp()
        kl = torch.where(q > 0, q * (log_q - reference_lp), torch.zeros_like(q)).sum(-1)
        for a, b in enumerate(rows):
            totals[b] += float(kl[a])
    return totals


def _path_logprobs(model, results, temperature: float) -> list[float]:
    """``log q_T(y | x)`` of each response under its own model's tempered next-token distributions."""
    totals = [0.0] * len(results)
    for t, rows, logprobs in _walk(model, results):
        log_q = torch.log_softmax(logprobs / temperature, dim=-1)
        for a, b in enumerate(rows):
            totals[b] += float(log_q[a, results[b].token_ids[t]])
    return totals


def _walk(model, results):
    """``(t, rows, log ρ(· | x, y_<t))`` at every state the responses visit; rows are the responses
    still running at step t, and the log-probs are (len(rows), V) float64. Each step extends the last
    by one token, so a caching backend encodes each state once."""
    prefixes = [model.encode_prompt(r.prompt) for r in results]
    for t in range(max((len(r.token_ids) for r in results), default=0)):
        rows = [b for b, r in enumerate(results) if len(r.token_ids) > t]
        states = [prefixes[b] + list(results[b].token_ids[:t]) for b in rows]
        yield t, rows, model.next_token_logprobs(states).double()


def _text_tokens(model, result: GenerationResult, decoded_by) -> list[int]:
    """A response's text tokenised by ``model`` itself (``decoded_by`` wrote the token ids in another
    vocabulary), with ``model``'s EOS when the response ended."""
    tokens = model.encode(result.text)
    if result.token_ids and result.token_ids[-1] in decoded_by.eos_token_ids:
        tokens.append(min(model.eos_token_ids))
    return tokens


def _text_logprob(model, result: GenerationResult, decoded_by) -> float:
    """``log ρ(y | x)`` of a response's text, tokenised by ``model`` itself (``_text_tokens``)."""
    tokens = _text_tokens(model, result, decoded_by)
    return model.continuation_logprobs([model.encode_prompt(result.prompt)], [[tokens]])[0][0]


def mean_token_logprobs(model, results: Sequence[GenerationResult], decoded_by) -> list[float | None]:
    """``log ρ(y | x) / |y|`` of each response under ``model``, in nats per token (EOS counted when the
    response ended): over its own token ids where ``model`` shares the vocabulary of ``decoded_by``, the
    model that wrote them, else over its text tokenised by ``model`` (as the path log-ratio does). An empty
    response (no text, at most an EOS) has no fluency to measure: None."""
    same = model.vocabulary == decoded_by.vocabulary
    tokens = [list(r.token_ids) if same else _text_tokens(model, r, decoded_by) for r in results]
    rows = [b for b, r in enumerate(results) if r.text and tokens[b]]
    means: list[float | None] = [None] * len(results)
    if rows:  # one batched call: each response is one continuation of its prompt
        totals = model.continuation_logprobs([model.encode_prompt(results[b].prompt) for b in rows],
                                             [[tokens[b]] for b in rows])
        for b, (total,) in zip(rows, totals):
            means[b] = total / len(tokens[b])
    return means


def path_log_prob(result: GenerationResult) -> float:
    """``log π(y|x)``: the log-probability the value-guided decoder gave its own choices."""
    return sum(math.log(max(step.probabilities[step.candidates.index(step.chosen)], 1e-300))
               for step in result.trace)


def best_of_n_kl(n: int) -> float:
    """The standard analytic bound on the KL of Best-of-N to its sampler: ``log N − (N − 1)/N``."""
    return math.log(n) - (n - 1) / n


# --- per method -----------------------------------------------------------------------------------

@dataclass
class Interval:
    """A mean with its 95% interval over ``n`` values; with no values there is no mean (None, never NaN, so
    summary.json stays JSON and the report shows "–")."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def bootstrap_mean(values: Sequence[float], seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> Interval:
    """Mean with a 95% percentile-bootstrap interval (resampling responses); all None when no value is given."""
    values = np.array([v for v in values if v is not None], dtype=float)
    n = len(values)
    if not n:
        return Interval(None, None, None, 0)
    rng = np.random.default_rng(seed)
    rows = max(1, BOOTSTRAP_CHUNK // n)
    means = np.concatenate([values[rng.integers(0, n, size=(min(rows, samples - start), n))].mean(axis=1)
                            for start in range(0, samples, rows)])
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(values.mean()), float(low), float(high), n)


@dataclass
class Duel:
    """Method A against method B on the prompts both answered, judged by the target reward."""

    win: int
    tie: int
    lose: int
    win_tie: Interval  # (win + tie) / n with a bootstrap interval over prompts
    # Mean of A's reward minus B's, prompt by prompt: far narrower than the two means' intervals when the
    # prompts vary more than the methods do, so it is what says whether A is ahead.
    difference: Interval


def duel(rewards_a: dict[int, float], rewards_b: dict[int, float], seed: int = 0) -> Duel:
    shared = sorted(set(rewards_a) & set(rewards_b))
    outcomes = [_outcome(rewards_a[i], rewards_b[i]) for i in shared]
    win_tie = bootstrap_mean([1.0 if o >= 0 else 0.0 for o in outcomes], seed)
    difference = bootstrap_mean([rewards_a[i] - rewards_b[i] for i in shared], seed)
    return Duel(outcomes.count(1), outcomes.count(0), outcomes.count(-1), win_tie, difference)


def _outcome(a: float, b: float) -> int:
    if abs(a - b) <= TIE_TOLERANCE:
        return 0
    return 1 if a > b else -1


METRICS = ("reward", "kl", "diversity", "coherence", "tokens", "seconds", "forward_tokens", "ess")


def summarise(records: Sequence[dict]) -> dict:
    """Per method: every metric as mean with a 95% interval, and the duels with every other method."""
    by_method: dict[str, list[dict]] = {}
    for record in records:
        by_method.setdefault(record["method"], []).append(record)
    table = {label: {m: bootstrap_mean([r.get(m) for r in rows]).as_dict() for m in METRICS}
             for label, rows in by_method.items()}
    for label, rows in by_method.items():
        table[label]["kl_estimator"] = rows[0].get("kl_estimator", "unnamed")
    rewards = {label: {r["prompt_index"]: r["reward"] for r in rows} for label, rows in by_method.items()}
    duels = {a: {b: vars(duel(rewards[a], rewards[b])) for b in rewards if b != a} for a in rewards}
    for row in duels.values():
        for d in row.values():
            d["win_tie"], d["difference"] = d["win_tie"].as_dict(), d["difference"].as_dict()
    return {"methods": table, "duels": duels}
