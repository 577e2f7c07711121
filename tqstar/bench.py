"""``tqstar bench``: TQ* direct against a faithful re-implementation of the authors' per-step approach and
against the model's raw batched decoding, in one process on the same model object.

Rows, at each number of prompts asked for: greedy decoding (the floor), our exact token-level decoder
(the paper's settings: greedy rollouts, fixed horizon), the same with ``prune``, with ``--int8`` the same
with an int8 baseline, and blockwise decoding at each block size. Each row reports seconds per generated token, the speed-up over the authors' loop,
rollout tokens/s against raw ``generate`` at the same number of rows, how many of its tokens agree with
the exact decoder's, its mean reward and the process's peak memory so far. ``--bf16`` adds the exact decoder
with the baseline in bfloat16 (``--baseline-dtype bfloat16``).

The authors' approach (docs/algorithm.md, "What --compat reproduces"): one prompt at a time; at every
step a full forward pass over the prefix for the top-k, then one ``generate`` call that re-encodes the
prefix for each of the k candidates and decodes H greedy tokens, then the texts are decoded and
re-tokenised by the reward; score = α·reward + logit, argmax. Since it decodes one prompt at a time, its
seconds per token do not depend on how many prompts there are: it is timed once, on ``authors_prompts``.
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass, replace

import torch

from .decoding.build import build_decoder
from .decoding.config import SIZE_BOUNDS, SIZE_WHY, DecodeConfig, RolesConfig
from .decoding.roles import Roles, load_baseline
from .errors import ConfigError
from .models.quantize import int8_copy
from .options import at_least, between, check_field_types, option

BENCH_PROMPTS = (
    "How can I get better sleep when I work night shifts?",
    "Explain what a hash table is to a beginner.",
    "Write a short thank-you note to a neighbour who watered my plants.",
    "What are some healthy snacks I can take to work?",
    "How do I reverse a list in Python?",
    "Give me three tips for a job interview.",
    "Why is the sky blue?",
    "How should I start learning to play the guitar?",
    "What is the difference between weather and climate?",
    "How do I make a simple budget for the month?",
    "Write a haiku about autumn rain.",
    "How can I keep my houseplants alive in winter?",
    "Explain recursion with a short example.",
    "What should I pack for a weekend camping trip?",
    "How do vaccines train the immune system?",
    "Suggest a name for a bakery that sells sourdough bread.",
    "How do I politely decline a meeting invitation?",
    "What causes the seasons on Earth?",
    "How can I improve my handwriting?",
    "Write a two-sentence story about a lost umbrella.",
    "What is a good way to learn new vocabulary in a foreign language?",
    "How does a bicycle stay upright when it moves?",
    "Give me a quick recipe for tomato soup.",
    "How do I remove a coffee stain from a shirt?",
    "Explain what an API is in simple terms.",
    "How can I stay focused while studying at home?",
    "What are the benefits of walking every day?",
    "How do I write a good subject line for an email?",
    "Why do cats purr?",
    "How can I start saving for retirement in my twenties?",
    "Describe a sunrise over the sea in three sentences.",
    "How do I sort a dictionary by its values in Python?",
)


@dataclass
class BenchConfig:
    """What ``tqstar bench`` times (the models come from the role options)."""

    top_k: int = option(10, "k candidates per step.")
    horizon: int = option(20, "H rollout tokens after each candidate (the paper's 20).")
    alpha: float = option(1.0, "α of every value-guided row and of the authors' score (the paper's 1).")
    new_tokens: int = option(64, "Tokens generated per response (the paper uses 128).")
    prompts: list[str] = option(["1", "8"], f"Numbers of prompts decoded together, one set of rows each "
                                            f"(each at most {len(BENCH_PROMPTS)}).")
    blocks: list[str] = option(["4", "8"], "Block sizes B of the blockwise rows.")
    sampled_blocks: bool = option(False, "Add blockwise rows whose candidate blocks are sampled "
                                         "(--block-candidates sampled).")
    authors_prompts: int = option(2, "Prompts the authors' one-prompt-at-a-time loop is timed on.")
    int8: bool = option(False, "Add rows with the baseline quantised to int8 (--int8-baseline).")
    bf16: bool = option(False, "Add rows with the baseline in bfloat16 (--baseline-dtype bfloat16).")
    threads: int | None = option(None, "torch threads (default: torch's choice).")
    only: list[str] = option([], "Time only these rows, named as the table names them ('exact', 'block 4 sampled', "
                                 "...; repeatable); default: every row the other flags ask for.")

    def __post_init__(self):
        check_field_types(self)
        for name, bound in (("top_k", "top_k"), ("horizon", "horizon"), ("new_tokens", "max_new_tokens")):
            between(name, getattr(self, name), 1, SIZE_BOUNDS[bound], SIZE_WHY)
        between("alpha", self.alpha, 0, 1e4, "α·Q̂ overflows beyond it")
        at_least("horizon", self.horizon, 2)  # raw decoding's rate is timed from the tokens after the first
        between("authors_prompts", self.authors_prompts, 1, len(BENCH_PROMPTS), "the benchmark's prompts")
        self.prompt_counts = _whole_numbers("prompts", self.prompts, len(BENCH_PROMPTS))
        self.block_sizes = _whole_numbers("blocks", self.blocks, 64)
        if self.threads is not None:
            at_least("threads", self.threads, 1)
        unknown = [label for label in self.only if label not in self.row_labels()]
        if unknown:
            raise ConfigError(f"--only {unknown[0]!r} names no row of this benchmark; its rows are "
                              f"{', '.join(map(repr, self.row_labels()))} (--int8, --bf16, --blocks and "
                              "--sampled-blocks add rows).")

    def row_labels(self) -> list[str]:
        """The decoders timed at each number of prompts, in the table's order."""
        labels = ["greedy", "exact", "exact + prune", "exact + lookahead"]
        labels += ["exact + int8 baseline", "exact + prune + int8 baseline"] if self.int8 else []
        labels += ["exact + bf16 baseline"] if self.bf16 else []
        labels += [f"block {b}" for b in self.block_sizes]
        labels += [f"block {b} sampled" for b in self.block_sizes] if self.sampled_blocks else []
        return labels

    def times(self, label: str) -> bool:
        return not self.only or label in self.only

    def times_any(self, suffix: str) -> bool:
        """Whether a timed row's label ends with ``suffix`` (so its model is worth loading)."""
        return any(label.endswith(suffix) for label in filter(self.times, self.row_labels()))


def _whole_numbers(name: str, texts: list[str], most: int) -> list[int]:
    try:
        numbers = [int(t) for t in texts]
    except ValueError:
        raise ConfigError(f"{name} takes whole numbers (repeat the flag for each), got {texts!r}.") from None
    if any(not 1 <= n <= most for n in numbers):
        raise ConfigError(f"{name} must each be between 1 and {most}, got {numbers}.")
    return numbers


@dataclass
class Row:
    label: str
    seconds_per_token: float
    rollout_tps: float | None
    tokens: list[list[int]]
    reward: float


def run_bench(bench: BenchConfig, roles_config: RolesConfig) -> int:
    """Time greedy, our exact decoder (plain, pruned, with lookahead) and blockwise decoding at each number of
    prompts, against the authors' approach and raw decoding on the same rollout model."""
    if bench.threads:
        torch.set_num_threads(bench.threads)
    roles = Roles.load(roles_config)
    rollout_model = roles.baseline  # tq-direct rolls out the baseline; the authors' code runs one model
    exact = DecodeConfig(method="tq-direct", top_k=bench.top_k, alpha=bench.alpha, num_rollouts=1,
                         horizon=bench.horizon, fixed_horizon=True, rollout_temperature=0.0,
                         max_new_tokens=bench.new_tokens, lookahead=0)
    int8_roles = None
    if bench.int8 and not roles_config.int8_baseline and bench.times_any("int8 baseline"):
        int8_roles = replace(roles, baseline=int8_copy(rollout_model))
    bf16_roles = None
    if bench.bf16 and bench.times_any("bf16 baseline"):
        bf16_config = replace(roles_config, baseline_dtype="bfloat16", int8_baseline=False)
        bf16_roles = replace(roles, baseline=load_baseline(bf16_config, roles.reference))
    authors = AuthorsPerStep(rollout_model, roles.reward, bench.top_k, bench.horizon, bench.new_tokens, bench.alpha)
    build_decoder(replace(exact, max_new_tokens=2), roles).generate(BENCH_PROMPTS[:1])  # warm-up: loads, allocations
    print(f"rollout model {rollout_model.name}, dtype {next(rollout_model.model.parameters()).dtype}, torch threads "
          f"{torch.get_num_threads()}, k={bench.top_k}, N=1, H={bench.horizon}, α={bench.alpha:g}, "
          f"{bench.new_tokens} new tokens per response", flush=True)
    authors_spt = authors.seconds_per_token(list(BENCH_PROMPTS[:bench.authors_prompts]))
    print(f"authors' per-step approach: {authors_spt:.3f} s/token (timed on {bench.authors_prompts} prompt(s), "
          "one at a time)\n")
    print("| prompts | decoder | s/token | speed-up vs authors | rollout tok/s | raw decode tok/s (rows) "
          "| rollout / raw | tokens as exact | mean reward | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for count in bench.prompt_counts:
        prompts = list(BENCH_PROMPTS[:count])
        raw_tps = raw_decode_throughput(rollout_model, count * bench.top_k, bench.horizon)
        variants = {"greedy": (replace(exact, method="greedy"), roles), "exact": (exact, roles),
                    "exact + prune": (replace(exact, prune=True), roles),
                    "exact + lookahead": (replace(exact, lookahead=count), roles),
                    "exact + int8 baseline": (exact, int8_roles),
                    "exact + prune + int8 baseline": (replace(exact, prune=True), int8_roles),
                    "exact + bf16 baseline": (exact, bf16_roles)}
        for b in bench.block_sizes:
            variants[f"block {b}"] = (replace(exact, block_size=b), roles)
            variants[f"block {b} sampled"] = (replace(exact, block_size=b, block_candidates="sampled"), roles)
        reference = None
        for label in filter(bench.times, bench.row_labels()):  # the flags decide which rows exist
            config, used = variants[label]
            if used is None:  # int8 rows when --int8-baseline already quantises every row
                continue
            row = _time(label, build_decoder(replace(config, batch_size=count), used), used.baseline, prompts)
            reference = row.tokens if label == "exact" else reference
            print(_format(row, count, authors_spt, raw_tps, count * bench.top_k, reference), flush=True)
    return 0


def _time(label: str, decoder, rollout_model, prompts: list[str]) -> Row:
    tokens0, seconds0 = rollout_model.rollout_tokens, rollout_model.rollout_seconds
    started = time.perf_counter()
    results = decoder.generate(prompts)
    elapsed = time.perf_counter() - started
    rollout_seconds = rollout_model.rollout_seconds - seconds0
    rollout_tps = None  # a decoder without an estimator (greedy) runs no rollouts, even on the rollout model
    if rollout_seconds > 0 and getattr(decoder, "estimator", None) is not None:
        rollout_tps = (rollout_model.rollout_tokens - tokens0) / rollout_seconds
    return Row(label, elapsed / sum(len(r.token_ids) for r in results), rollout_tps,
               [r.token_ids for r in results], statistics.fmean(r.reward for r in results))


def _format(row: Row, count: int, authors_spt: float, raw_tps: float, rows: int, exact_tokens) -> str:
    rollout = "–" if row.rollout_tps is None else f"{row.rollout_tps:.0f}"
    ratio = "–" if row.rollout_tps is None else f"{row.rollout_tps / raw_tps:.0%}"
    agree = "–" if exact_tokens is None else f"{_agreement(row.tokens, exact_tokens):.0%}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
    return (f"| {count} | {row.label} | {row.seconds_per_token:.3f} | {authors_spt / row.seconds_per_token:.2f}× "
            f"| {rollout} | {raw_tps:.0f} ({rows}) | {ratio} | {agree} | {row.reward:.3f} | {peak:.2f} |")


def _agreement(tokens: list[list[int]], exact: list[list[int]]) -> float:
    """Share of the exact decoder's tokens that this row wrote at the same position of the same answer."""
    same = sum(a == b for mine, theirs in zip(tokens, exact) for a, b in zip(mine, theirs))
    return same / max(1, sum(len(t) for t in exact))


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
