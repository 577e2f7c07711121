"""The reward-hacking guard: per response, each term of the target reward, the judge rewards that never steer,
fluency under the reference and the baseline, and flags of degenerate output; per method, their summaries."""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from ..decoding.protocol import GenerationResult
from ..rewards.protocol import Reward, WeightedSum, checked_scores, reward_name
from .metrics import bootstrap_mean, mean_token_logprobs

#: A response of fewer tokens (its EOS counted) than this share of max_new_tokens ended early: saying little
#: is a cheap way to avoid everything a reward penalises.
EARLY_SHARE = 0.25
#: A response repeats when one run of REPEAT_WORDS words (runs of letters and digits, lower-cased, so
#: punctuation and case do not hide a loop) occurs REPEAT_TIMES times or more, overlaps counted: the loop a
#: decoder falls into when repeating a phrase the reward likes pays more than moving on.
REPEAT_WORDS, REPEAT_TIMES = 4, 3


def reward_terms(reward: Reward) -> dict[str, Reward]:
    """The top-level terms of a ``WeightedSum`` by name, unweighted; {} for any other reward. Two terms of
    one name (``sentiment+2*sentiment``) score alike unweighted, so the one key holds both."""
    if not isinstance(reward, WeightedSum):
        return {}
    return {reward_name(term): term for _, term in reward.terms}


def ended_early(tokens: int, max_new_tokens: int) -> bool:
    return tokens < EARLY_SHARE * max_new_tokens


def repeats(text: str) -> bool:
    words = re.findall(r"\w+", text.lower())
    runs = Counter(tuple(words[i:i + REPEAT_WORDS]) for i in range(len(words) - REPEAT_WORDS + 1))
    return any(count >= REPEAT_TIMES for count in runs.values())


def guard_fields(results: Sequence[GenerationResult], roles, judges: dict[str, Reward], decoded_by,
                 max_new_tokens: int) -> list[dict]:
    """Per response the guard's record fields: ``terms`` (each term of ``roles.reward``), ``judged`` (each of
    ``judges`` by its spec), ``fluency_reference`` and ``fluency_baseline`` (mean token log-probability in
    nats; the baseline's None when it is the reference), ``ended_early`` and ``repeats``. ``decoded_by`` is
    the model whose token ids the results hold (the decoder's ``output_model``)."""
    prompts, texts = [r.prompt for r in results], [r.text for r in results]
    terms = {name: checked_scores(term, prompts, texts) for name, term in reward_terms(roles.reward).items()}
    judged = {spec: checked_scores(reward, prompts, texts, name=spec) for spec, reward in judges.items()}
    reference = mean_token_logprobs(roles.reference, results, decoded_by)
    baseline = ([None] * len(results) if roles.baseline is roles.reference
                else mean_token_logprobs(roles.baseline, results, decoded_by))
    return [{"terms": {name: scores[i] for name, scores in terms.items()},
             "judged": {spec: scores[i] for spec, scores in judged.items()},
             "fluency_reference": reference[i], "fluency_baseline": baseline[i],
             "ended_early": ended_early(len(r.token_ids), max_new_tokens), "repeats": repeats(r.text)}
            for i, r in enumerate(results)]


def guard_summary(records: Sequence[dict]) -> dict:
    """Per method: the mean of each term, each judge reward and both fluencies, and the share of responses
    that ended early or repeat, each with its 95% bootstrap interval (``Interval.as_dict``). Records written
    before the guard existed lack its keys: their methods get no terms nor judges, and null means."""
    by_method: dict[str, list[dict]] = {}
    for record in records:
        by_method.setdefault(record["method"], []).append(record)
    return {label: _method_guard(rows) for label, rows in by_method.items()}


def _method_guard(rows: list[dict]) -> dict:
    def scores(key: str) -> dict:
        found = [r.get(key) or {} for r in rows]
        names = dict.fromkeys(name for scored in found for name in scored)  # first seen first
        return {name: bootstrap_mean([scored.get(name) for scored in found]).as_dict() for name in names}

    def share(key: str) -> dict:
        return bootstrap_mean([None if r.get(key) is None else float(r[key]) for r in rows]).as_dict()

    return {"terms": scores("terms"), "judged": scores("judged"),
            "fluency_reference": bootstrap_mean([r.get("fluency_reference") for r in rows]).as_dict(),
            "fluency_baseline": bootstrap_mean([r.get("fluency_baseline") for r in rows]).as_dict(),
            "ended_early": share("ended_early"), "repeats": share("repeats")}
