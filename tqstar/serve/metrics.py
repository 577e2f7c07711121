"""``GET /metrics``: the server's counters and distributions in the Prometheus text format, through
``prometheus_client`` on a registry of the app's own (two apps in one process never share counters).

Labelled by method (``tq-direct``, …; ``raw`` for the raw models' completions; ``invalid`` for a request
refused before its model name was read): requests, errors by status, 429s, latency, time to the first
token, tokens per second and, per answer, the target reward and the mean effective sample size of the
importance weights, so a drift of alignment quality shows on a dashboard. Requests refused by the API key
or Host check (401, 403) never reach a route and are not counted.
"""

from __future__ import annotations

import math

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TOKENS_PER_SECOND = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
#: Target rewards: the shipped helpful_harmless spans −1.5…5.5, sentiment −1…1.
REWARDS = (-4, -3, -2, -1.5, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6)
#: ESS of N importance weights lies in 1…N; N is capped at 64.
ESS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class ServeMetrics:
    """The server's Prometheus metrics; ``queue`` and ``running`` read the engine when scraped."""

    def __init__(self, queue, running):
        self.registry = registry = CollectorRegistry()
        by_method = ["method"]
        self.requests = Counter("tqstar_requests", "Requests answered, whatever their status.", by_method,
                                registry=registry)
        self.errors = Counter("tqstar_request_errors", "Requests answered with an error, by HTTP status (an error "
                              "event that ends a stream counts with its status).", ["method", "status"],
                              registry=registry)
        self.queue_full = Counter("tqstar_queue_full", "Requests refused with 429 because the queue was full.",
                                  by_method, registry=registry)
        self.tokens = Counter("tqstar_generated_tokens", "Tokens of the answers sent (rate() of it: tokens/s).",
                              by_method, registry=registry)
        self.latency = Histogram("tqstar_request_seconds", "Seconds from a request's arrival to its whole answer.",
                                 by_method, buckets=SECONDS, registry=registry)
        self.first_token = Histogram("tqstar_time_to_first_token_seconds", "Seconds from a request's arrival to "
                                     "its first decoded token.", by_method, buckets=SECONDS, registry=registry)
        self.speed = Histogram("tqstar_tokens_per_second", "Each answer's tokens over its latency.", by_method,
                               buckets=TOKENS_PER_SECOND, registry=registry)
        self.reward = Histogram("tqstar_reward", "Each answer's target reward.", by_method, buckets=REWARDS,
                                registry=registry)
        self.ess = Histogram("tqstar_ess", "Each answer's mean effective sample size of its importance weights "
                             "(over steps and candidates; tq-indirect and soft).", by_method, buckets=ESS,
                             registry=registry)
        Gauge("tqstar_queue_length", "Requests waiting for a batch.", registry=registry).set_function(queue)
        Gauge("tqstar_running_requests", "Requests decoding now.", registry=registry).set_function(running)

    def exposition(self) -> tuple[bytes, str]:
        """The text to serve at /metrics and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def answered(self, method: str, seconds: float, tokens: int, reward: float | None, ess: float | None) -> None:
        self.requests.labels(method).inc()
        self.tokens.labels(method).inc(tokens)
        self.latency.labels(method).observe(seconds)
        self.speed.labels(method).observe(tokens / seconds if seconds > 0 else 0.0)
        if reward is not None:
            self.reward.labels(method).observe(reward)
        if ess is not None:
            self.ess.labels(method).observe(ess)

    def failed(self, method: str, status: int) -> None:
        self.requests.labels(method).inc()
        self.errors.labels(method, str(status)).inc()
        if status == 429:
            self.queue_full.labels(method).inc()


def mean_ess(trace: list[dict] | None) -> float | None:
    """The mean ESS over an answer's steps and candidates, or None when its estimator has no weights.
    Candidates --prune left unvalued have no ESS (NaN, or null once written) and are skipped."""
    values = [e for step in trace or () for e in step.get("ess") or () if e is not None and math.isfinite(e)]
    return sum(values) / len(values) if values else None
