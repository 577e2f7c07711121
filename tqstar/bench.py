"""``tqstar bench``: our decoder against a faithful re-implementation of the authors' per-step
approach, and against the model's raw batched decoding, in one process on the same model object.

The authors' approach (PAPER.md, "What the authors' released code does differently"): one prompt at
a time; at every step a full forward pass over the prefix for the top-k, then one ``generate`` call
that re-encodes the prefix for each of the k candidates and decodes H greedy tokens, then the texts
are decoded and re-tokenised by the reward; score = α·reward + logit, argmax.
"""

from __future__ import annotations

import argparse
import time

import torch

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


def add_bench_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top-k", type=int, default=10, help="k candidates per step (default 10).")
    parser.add_argument("--horizon", type=int, default=20, help="H rollout tokens (default 20).")
    parser.add_argument("--new-tokens", type=int, default=12, help="Tokens generated per response (default 12).")
    parser.add_argument("--batch", type=int, default=8, help="Prompts in the throughput run (default 8).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")


def run_bench(args) -> int:
    from .api import Roles, build_decoder
    from .config import DecodeConfig, RolesConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    roles = Roles.load(RolesConfig())
    lm = roles.reference
    config = DecodeConfig(method="tq-direct", top_k=args.top_k, num_rollouts=1, horizon=args.horizon,
                          rollout_temperature=0.0, max_new_tokens=args.new_tokens, batch_size=args.batch)
    ours = build_decoder(config, roles)
    authors = AuthorsPerStep(lm, roles.reward, args.top_k, args.horizon, args.new_tokens)
    ours.generate(BENCH_PROMPTS[:1])  # warm-up: first-call allocations and reward model loading
    print(f"model {lm.name}, dtype {next(lm.model.parameters()).dtype}, torch threads {torch.get_num_threads()}, "
          f"k={args.top_k}, N=1, H={args.horizon}, {args.new_tokens} new tokens per response\n")
    print("| run | prompts | ours s/token | authors s/token | speed-up | ours rollout tok/s "
          "| raw decode tok/s (batch) | rollout / raw |")
    print("|---|---|---|---|---|---|---|---|")
    for label, prompts in (("latency", BENCH_PROMPTS[:1]), ("throughput", BENCH_PROMPTS[:args.batch])):
        ours_spt, rollout_tps = _time_ours(ours, lm, list(prompts))
        authors_spt = authors.seconds_per_token(list(prompts))
        rows = len(prompts) * args.top_k
        raw_tps = raw_decode_throughput(lm, rows, args.horizon)
        print(f"| {label} | {len(prompts)} | {ours_spt:.3f} | {authors_spt:.3f} | {authors_spt / ours_spt:.2f}× "
              f"| {rollout_tps:.0f} | {raw_tps:.0f} ({rows}) | {rollout_tps / raw_tps:.0%} |", flush=True)
    return 0


def _time_ours(decoder, lm, prompts: list[str]) -> tuple[float, float]:
    tokens0, seconds0 = lm.rollout_tokens, lm.rollout_seconds
    started = time.perf_counter()
    results = decoder.generate(prompts)
    elapsed = time.perf_counter() - started
    generated = sum(len(r.token_ids) for r in results)
    return elapsed / generated, (lm.rollout_tokens - tokens0) / (lm.rollout_seconds - seconds0)


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
