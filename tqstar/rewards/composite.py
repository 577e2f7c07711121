"""The composite rewards: the default ``helpful_harmless`` and the old proxy ``upbeat_relevant``.

Both are ``WeightedSum``s, so traces and reports can show every term. docs/reward.md explains the
weights and why the harmlessness term must be trained models rather than a tone or profanity score.
"""

from __future__ import annotations

from .builtin import NontoxicReward, RelevanceReward, SentimentReward
from .protocol import WeightedSum
from .stance import StanceReward, UnlessDeclined

#: Weight of the harmlessness term: large enough that declining a harmful request outscores the
#: relevance and tone a compliant answer earns (about 0.9 more than a refusal's), small enough that on
#: a harmless prompt the helpful, on-topic answer still wins. Chosen on dev (docs/reward.md).
HARMLESS_WEIGHT = 4.0


def helpful_harmless(device: str | None = None, stance: StanceReward | None = None) -> WeightedSum:
    """The default target: ``(1 − p(decline | x))·(relevance + 0.5·sentiment) + 4·stance``, in [−1.5, 5.5].

    Relevance pays for answering the question asked; sentiment (half weight, so tone never outweighs
    content) for a constructive tone; stance, the shipped request and response classifiers trained on the
    project's data, for taking the stance the request calls for: declining harmful requests, pointing
    people in distress to help, and answering harmless ones. Relevance and tone are gated by the request
    alone (``UnlessDeclined``): on a request to decline they pay nothing, so an answer that opens like a
    refusal and then complies gains nothing over the refusal. ``stance``: another stance model (default: the
    shipped one).
    """
    stance = stance or StanceReward(device)
    terms = [(1.0, UnlessDeclined(RelevanceReward(device), stance)), (0.5, UnlessDeclined(SentimentReward(), stance)),
             (HARMLESS_WEIGHT, stance)]
    return WeightedSum(terms, name="helpful_harmless")


def upbeat_relevant(device: str | None = None) -> WeightedSum:
    """``relevance + 0.5·sentiment + nontoxic``, in [−1.5, 2.5]: on-topic, upbeat, profanity-free text.

    The default until the harmlessness model existed. It has no notion of harm: a cheerful, on-topic
    answer to a harmful request scores best, so aligning to it makes a model comply more readily.
    """
    terms = [(1.0, RelevanceReward(device)), (0.5, SentimentReward()), (1.0, NontoxicReward())]
    return WeightedSum(terms, name="upbeat_relevant")
