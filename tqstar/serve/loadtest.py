"""A bounded load test of ``tqstar serve``: concurrent clients, a fixed number of chat requests.

    python -m tqstar.serve.loadtest --clients 32 --requests 96 --max-tokens 8 -- --reference smollm2 --reward sentiment

Without ``--url`` it starts ``tqstar serve --port 0 SERVE_FLAGS...`` on loopback (flags after ``--``),
waits for it, runs the clients, stops it. It prints latency percentiles, errors and throughput as one
Markdown table row and as JSON. Prompts cycle through the shipped dev set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from ..prompts import load_prompts


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    first_tokens: list[float] = field(default_factory=list)  # seconds to the first streamed token
    completion_tokens: int = 0
    statuses: Counter = field(default_factory=Counter)  # HTTP status, "stream_error" or exception name → count


def main(argv: list[str] | None = None) -> int:
    args, serve_flags = _parser().parse_known_args(argv)
    serve_flags = [f for f in serve_flags if f != "--"]
    prompts = _prompts()
    server = None if args.url else _start_server(serve_flags, args.api_key, args.start_timeout)
    url = args.url or server[1]
    try:
        started = time.perf_counter()
        outcome = asyncio.run(_run(url, args, prompts))
        wall = time.perf_counter() - started
        health = _health(url, args.api_key)
    finally:
        if server:
            server[0].terminate()
            server[0].wait(timeout=30)
    summary = _summary(args, outcome, wall, health)
    print(_markdown(summary))
    print(json.dumps(summary))
    return 0 if not summary["errors"] else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tqstar.serve.loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="Base URL of a running server (…/v1); default: start one.")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent clients.")
    parser.add_argument("--requests", type=int, default=96, help="Requests in all.")
    parser.add_argument("--max-tokens", type=int, default=8, help="max_tokens of each request.")
    parser.add_argument("--model", default="tq-direct", help="Model (method) of each request.")
    parser.add_argument("--stream", action="store_true", help="Stream, and measure time to first token too.")
    parser.add_argument("--api-key", default=os.environ.get("TQSTAR_API_KEY"), help="Bearer key, if required.")
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds before a request counts as failed.")
    parser.add_argument("--start-timeout", type=float, default=900.0,
                        help="Seconds to wait for the started server to load its models and listen.")
    return parser


def _prompts() -> list[str]:
    return load_prompts("tqstar", split="dev")


def _start_server(flags: list[str], api_key: str | None, seconds: float) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "tqstar.cli", "serve", "--port", "0", *flags]
    env = {**os.environ, **({"TQSTAR_API_KEY": api_key} if api_key else {})}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    line = first_line(process, seconds)  # "tqstar serve: listening on URL ..." once the models are loaded
    if "listening on" not in line:
        process.kill()
        process.wait(timeout=30)
        raise SystemExit(f"tqstar serve did not start within {seconds:g} s: {line.strip() or 'no output'}")
    return process, line.split("listening on ")[1].split()[0]


def first_line(process: subprocess.Popen, seconds: float) -> str:
    """The first line ``process`` prints, or "" if none comes within ``seconds`` (a hung start fails, not waits)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=seconds)
    except queue.Empty:
        return ""


async def _run(url: str, args, prompts: list[str]) -> Outcome:
    outcome, next_index = Outcome(), iter(range(args.requests))
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients)
    async with httpx.AsyncClient(base_url=url + "/", headers=headers, limits=limits, timeout=args.timeout) as http:
        async def client():
            for index in next_index:  # the clients share one iterator: each request is sent once
                await _one(http, args, prompts[index % len(prompts)], outcome)

        await asyncio.gather(*(client() for _ in range(args.clients)))
    return outcome


async def _one(http, args, prompt: str, outcome: Outcome) -> None:
    body = {"model": args.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": args.max_tokens,
            "stream": args.stream, **({"stream_options": {"include_usage": True}} if args.stream else {})}
    started = time.perf_counter()
    try:
        if args.stream:
            status, tokens, first = await _streamed(http, body, started)
            if first is not None:
                outcome.first_tokens.append(first)
        else:
            response = await http.post("chat/completions", json=body)
            status = response.status_code
            tokens = response.json()["usage"]["completion_tokens"] if status == 200 else 0
    except Exception as exc:  # a failed request is a data point, not the end of the run
        outcome.statuses[type(exc).__name__] += 1
        return
    outcome.statuses[status] += 1
    if status == 200:
        outcome.latencies.append(time.perf_counter() - started)
        outcome.completion_tokens += tokens


async def _streamed(http, body: dict, started: float) -> tuple[int | str, int, float | None]:
    """Status, completion tokens and time to first token of a streamed request; a request that fails after
    its stream began has status 200 but an error event, and counts as ``"stream_error"``."""
    first, tokens = None, 0
    async with http.stream("POST", "chat/completions", json=body) as response:
        if response.status_code != 200:
            return response.status_code, 0, None
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                return "stream_error", 0, None
            if first is None and event.get("choices") and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    return 200, tokens, first


def _health(url: str, api_key: str | None) -> dict:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        return httpx.get(url.removesuffix("/v1") + "/health", headers=headers, timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return {}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _summary(args, outcome: Outcome, wall: float, health: dict) -> dict:
    ok = len(outcome.latencies)
    summary = {
        "clients": args.clients, "requests": args.requests, "max_tokens": args.max_tokens, "model": args.model,
        "stream": args.stream, "ok": ok, "errors": args.requests - ok,
        "statuses": {str(k): v for k, v in outcome.statuses.items()},
        "wall_seconds": round(wall, 2), "requests_per_second": round(ok / wall, 3),
        "tokens_per_second": round(outcome.completion_tokens / wall, 2),
        **{f"p{q}_seconds": _round(_percentile(outcome.latencies, q)) for q in (50, 90, 99)},
        "batches": health.get("batches"),
    }
    if outcome.first_tokens:
        summary["p50_first_token_seconds"] = _round(_percentile(outcome.first_tokens, 50))
    return summary


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _markdown(s: dict) -> str:
    header = "| clients | requests | max_tokens | ok | errors | p50 s | p90 s | p99 s | req/s | tokens/s | batches |"
    row = (f"| {s['clients']} | {s['requests']} | {s['max_tokens']} | {s['ok']} | {s['errors']} | "
           f"{s['p50_seconds']} | {s['p90_seconds']} | {s['p99_seconds']} | {s['requests_per_second']} | "
           f"{s['tokens_per_second']} | {s['batches']} |")
    return "\n".join([header, "|" + " --- |" * (header.count("|") - 1), row])


if __name__ == "__main__":
    sys.exit(main())
