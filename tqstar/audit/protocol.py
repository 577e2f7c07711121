"""The audit wing's contract, at its bottom: one answer with the evidence for each of its tokens (what the
token inspector shows), the fields of an audit-log record, and the digest that stands for a trace.

A trace step is a ``StepTrace`` as JSON (``tqstar.decoding.protocol``): ``position``, ``candidates``,
``candidate_texts``, ``prior_logprobs`` (log π_prior(z | s_t)), ``values`` (Q̂(s_t, z)), ``probabilities``
(π_alg), ``chosen``, ``chosen_text`` and, for the weighted estimators, ``weights`` (k × N) and ``ess`` (k).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from ..jsonl import finite

#: The file an audit log appends to; rotated files are ``audit-NNNNN.jsonl`` beside it.
AUDIT_FILE = "audit.jsonl"
#: What every audit record holds, besides ``trace`` (or ``trace_digest`` and ``trace_steps``).
AUDIT_FIELDS = ("time", "id", "endpoint", "model", "method", "options", "roles", "prompt", "answer", "reward",
                "finish_reason", "seconds", "forward_tokens", "usage")
#: How an audit record keeps the trace: whole, or only its digest and length.
TRACE_FULL, TRACE_DIGEST = "full", "digest"
TRACE_KEEPS = (TRACE_FULL, TRACE_DIGEST)


@dataclass
class Answer:
    """One response and its per-token trace, from a ``--trace`` file, an audit record or an API answer."""

    method: str
    steps: list[dict] = field(default_factory=list)  # trace records, one per generated token
    text: str | None = None  # None: the chosen tokens' texts are the response
    prompt: str | None = None
    reward: float | None = None
    seconds: float | None = None
    forward_tokens: int | None = None
    options: dict | None = None
    id: str | None = None
    time: str | None = None
    source: str = ""  # where it was read from, e.g. 'trace.jsonl, prompt 0'


def trace_digest(trace: list[dict]) -> str:
    """sha256 of the trace as canonical JSON (sorted keys, no spaces, UTF-8): what the API's ``trace`` of the
    same answer hashes to, so a digest-only audit record can be checked against a trace kept elsewhere."""
    text = json.dumps(finite(trace), ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
