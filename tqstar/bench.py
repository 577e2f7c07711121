"""``tqstar bench``: our decoder against a faithful re-implementation of the authors' per-step
approach, and against the model's raw batched decoding, in one process on the same model object.

The authors' approach (docs/algorithm.md, "What --compat reproduces"): one prompt at
a time; at every step a full forward pass over the prefix for the top-k, then one ``generate`` call
that re-encodes the prefix for each of the k candidates and decodes H greedy tokens, then the texts
are decoded and re-tokenised by the reward; score = α·reward + logit, argmax.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .decoding.build import build_decoder
from .decoding.config import SIZE_BOUNDS, SIZE_WHY, DecodeConfig, RolesConfig
from .decoding.roles import Roles
from .options import at_least, between, check_field_types, option
from .errors import ConfigError

BENCH_PROMPTS = (
    "How can I get better sleep when I work night shifts?",
    "Explain what a hash table is to a beginner.",
    "Write a short thank-you note to a neighbour who watered my plants.",
    "What are some healthy snacks I can take to work?",
    "How do I reverse a list in Python?",
    "Give me three tips for a job interview.",
    "Why is the sky blue?",
    "How should I start learning to play the guitar?",
)


@dataclass
class BenchConfig:
    """What ``tqstar bench`` times (the models come from the role options)."""

    top_k: int = option(10, "k candidates per step.")
    horizon: int = option(20, "H rollout tokens after each candidate (the paper's 20).")
    new_tokens: int = option(12, "Tokens generated per response.")
    batch: int = option(8, f"Prompts in the throughput run (at most {len(BENCH_PROMPTS)}).")
    threads: int | None = option(None, "torch threads (default: torch's choice).")

    def __post_init__(self):
        check_field_types(self)
        for name, bound in (("top_k", "top_k"), ("horizon", "horizon"), ("new_tokens", "max_new_tokens")):
            between(name, getattr(self, name), 1, SIZE_BOUNDS[bound], SIZE_WHY)
        at_least("batch", self.batch, 1)
        if self.batch > len(BENCH_PROMPTS):
            raise ConfigError(f"batch must be ≤ {len(BENCH_PROMPTS)} (the benchmark's prompts), got {self.batch}.")
        if self.threads is not None:
            at_least("threads", self.threads, 1)


def run_bench(bench: BenchConfig, roles_config: RolesConfig) -> int:
    """Time our decoder and the authors' approach on the same rollout model, at 1 and ``batch`` prompts."""
    if bench.threads:
        torch.set_num_threads(bench.threads)
    roles = Roles.load(roles_config)
    rollout_model = roles.baseline  # tq-direct rolls out the baseline; the authors' code runs one model
    config = DecodeConfig(method="tq-direct", top_k=bench.top_k, num_rollouts=1, horizon=bench.horizon,
                          fixed_horizon=True, rollout_temperature=0.0, max_new_tokens=bench.new_tokens,
                          batch_size=bench.batch)
    ours = build_decoder(config, roles)
    authors = AuthorsPerStep(rollout_model, roles.reward, bench.top_k, bench.horizon, bench.new_tokens)
    ours.generate(BENCH_PROMPTS[:1])  # warm-up: first-call allocations and reward model loading
    print(f"rollout model {rollout_model.name}, dtype {next(rollout_model.model.parameters()).dtype}, torch threads "
          f"{torch.get_num_threads()}, k={bench.top_k}, N=1, H={bench.horizon}, {bench.new_tokens} new tokens "
          "per response\n")
    print("| run | prompts | ours s/token | authors s/token | speed-up | ours rollout tok/s "
          "| raw decode tok/s (batch) | rollout / raw |")
    print("|---|---|---|---|---|---|---|---|")
    for label, prompts in (("latency", BENCH_PROMPTS[:1]), ("throughput", BENCH_PROMPTS[:bench.batch])):
        ours_spt, rollout_tps = _time_ours(ours, rollout_model, list(prompts))
        authors_spt = authors.seconds_per_token(list(prompts))
        rows = len(prompts) * bench.top_k
        raw_tps = raw_decode_throughput(rollout_model, rows, bench.horizon)
        print(f"| {label} | {len(prompts)} | {ours_spt:.3f} | {authors_spt:.3f} | {authors_spt / ours_spt:.2f}× "
              f"| {rollout_tps:.0f} | {raw_tps:.0f} ({rows}) | {rollout_tps / raw_tps:.0%} |", flush=True)
    return 0


def _time_ours(decoder, rollout_model, prompts: list[str]) -> tuple[float, float]:
    """Seconds per generated token, and the rollout model's rollout tokens per second."""
    tokens0, seconds0 = rollout_model.rollout_tokens, rollout_model.rollout_seconds
    started = time.perf_counter()
    results = decoder.generate(prompts)
    elapsed = time.perf_counter() - started
    generated = sum(len(r.token_ids) for r in results)
    rollout_seconds = rollout_model.rollout_seconds - seconds0
    if rollout_seconds <= 0:
        raise ConfigError(f"The rollout model {rollout_model.name!r} ran no rollouts; the benchmark times tq-direct, "
                          "which rolls out the baseline. Check --baseline.")
    return elapsed / generated, (rollout_model.rollout_tokens - tokens0) / rollout_seconds


class AuthorsPerStep:
    """The authors' per-step loop, re-implemented faithfully for timing (one prompt at a time)."""

    def __init__(self, lm, reward, top_k: int, horizon: int, new_tokens: int, alpha: float = 1.0):
        self.model, self.tokenizer, self.lm, self.reward = lm.model, lm.tokenizer, lm, reward
        self.top_k, self.horizon, self.new_tokens, self.alpha = top_k, horizon, new_tokens, alpha

    @torch.inference_mode()
    def generate_one(self, prompt: str) -> list[int]:
        ids = torch.tensor([self.lm.encode_prompt(prompt)])
        start = ids.shape[1]
        for _ in range(self.new_tokens):
            logits = self.model(ids).logits[0, -1]  # the whole prefix, no cache
            top = logits.topk(self.top_k)
            candidates = torch.cat([ids.repeat(self.top_k, 1), top.indices[:, None]], dim=1)
            rollouts = self.model.generate(candidates, attention_mask=torch.ones_like(candidates),
                                           max_new_tokens=self.horizon, do_sample=False,
                                           pad_token_id=self.lm.pad_token_id)
            texts = self.tokenizer.batch_decode(rollouts[:, start:], skip_special_tokens=True)
            rewards = torch.tensor(self.reward.score([prompt] * self.top_k, texts))
            choice = top.indices[(self.alpha * rewards + top.values.float()).argmax()]
            ids = torch.cat([ids, choice.view(1, 1)], dim=1)
            if int(choice) in self.lm.eos_token_ids:
                break
        return ids[0, start:].tolist()

    def seconds_per_token(self, prompts: list[str]) -> float:
        started = time.perf_counter()
        generated = sum(len(self.generate_one(p)) for p in prompts)
        return (time.perf_counter() - started) / generated


@torch.inference_mode()
def raw_decode_throughput(lm, rows: int, new_tokens: int) -> float:
    """Greedy decode tokens/s of ``generate`` at batch ``rows``, prefill time subtracted."""
    ids = torch.tensor([lm.encode_prompt(BENCH_PROMPTS[0])] * rows)

    def timed(n: int) -> float:
        started = time.perf_counter()
        lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, pad_token_id=lm.pad_token_id)
        return time.perf_counter() - started

    timed(2)  # warm-up
    return rows * (new_tokens - 1) / (timed(new_tokens) - timed(1))
