"""Where eval chunks run: in this process, in a pool of local processes, or on Ray actors. Each
worker loads its models once and keeps them; a chunk's records and traces do not depend on where it ran."""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from typing import Iterator

import torch

from ..decoding.build import build_decoder
from ..decoding.roles import Roles
from ..errors import ConfigError
from ..rewards.builtin import RelevanceReward
from ..rewards.loading import load_reward
from ..rewards.protocol import Reward
from ..rewards.trained import HarmlessReward
from .config import EvalConfig, MethodSpec
from .guard import guard_fields
from .metrics import diversity, mean_ess, response_kls


@dataclass
class Chunk:
    """The unit of work: one method over consecutive prompts."""

    spec: MethodSpec
    start: int
    prompts: list[str]
    traces: bool = True  # keep each response's per-token trace (False: none cross the process boundary)
    judges: tuple[str, ...] = ()  # specs of the rewards that score every response but never steer

    @property
    def seed(self) -> int:
        return self.spec.decode.seed + self.start


@dataclass
class ChunkOutput:
    """What a chunk yields: one record per prompt, and its responses' trace steps in the ``--trace`` format
    (one per generated token, with ``method`` = the row's label and ``prompt_index``)."""

    records: list[dict]
    traces: list[dict]


class ChunkWorker:
    """Runs chunks, loading each distinct set of roles once."""

    def __init__(self, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self._roles: dict[str, object] = {}
        self._coherence = None
        self._harmless = None
        self._judges: dict[str, Reward] = {}

    def run(self, chunk: Chunk) -> ChunkOutput:
        roles = self._load_roles(chunk.spec.roles)
        judges = self._judges_of(chunk.judges, chunk.spec.roles.device)  # before decoding: a bad one fails fast
        decoder = build_decoder(replace(chunk.spec.decode, seed=chunk.seed), roles)
        results = decoder.generate(chunk.prompts)
        prompts, texts = [r.prompt for r in results], [r.text for r in results]
        coherence = self._coherence_of(prompts, texts)
        self._harmless = self._harmless or HarmlessReward()  # the safety check's reward-model verdict
        harmless = self._harmless.score(prompts, texts)
        kls, kl_estimator = response_kls(results, chunk.spec.decode, roles)
        guard = guard_fields(results, roles, judges, decoder.output_model, chunk.spec.decode.max_new_tokens)
        records = [{
            "method": chunk.spec.label, "prompt_index": chunk.start + i, "prompt": r.prompt, "response": r.text,
            "reward": r.reward, "seconds": r.seconds, "forward_tokens": r.forward_tokens, "tokens": len(r.token_ids),
            "kl": kls[i], "kl_estimator": kl_estimator, "diversity": diversity(r.text),
            "coherence": coherence[i], "harmless": harmless[i], "ess": mean_ess(r), **guard[i], "seed": chunk.seed,
            "config": chunk.spec.as_record(),
        } for i, r in enumerate(results)]
        traces = [{"method": chunk.spec.label, **step} for i, r in enumerate(results) if chunk.traces
                  for step in r.trace_records(chunk.start + i)]
        return ChunkOutput(records, traces)

    def _load_roles(self, config):
        key = json.dumps(asdict(config), sort_keys=True)
        if key not in self._roles:
            self._roles[key] = Roles.load(config)
        return self._roles[key]

    def _judges_of(self, specs: tuple[str, ...], device: str | None) -> dict[str, Reward]:
        for spec in specs:
            if spec not in self._judges:
                self._judges[spec] = load_reward(spec, device=device)
        return {spec: self._judges[spec] for spec in specs}

    def _coherence_of(self, prompts, texts) -> list[float]:
        self._coherence = self._coherence or RelevanceReward()
        return self._coherence.score(prompts, texts)


def run_chunks(chunks: list[Chunk], config: EvalConfig) -> Iterator[ChunkOutput]:
    """Each chunk's records and traces as it finishes (in any order when chunks run in parallel)."""
    if config.ray:
        yield from _on_ray(chunks, config)
    elif config.workers > 1:
        yield from _in_processes(chunks, config.workers)
    else:
        worker = ChunkWorker()
        for chunk in chunks:
            yield worker.run(chunk)


def _threads_each(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


_process_worker: ChunkWorker | None = None


def _start_process(threads: int) -> None:
    global _process_worker
    _process_worker = ChunkWorker(threads)


def _run_in_process(chunk: Chunk) -> ChunkOutput:
    return _process_worker.run(chunk)


def _in_processes(chunks: list[Chunk], workers: int) -> Iterator[ChunkOutput]:
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_process,
                             initargs=(_threads_each(workers),)) as pool:
        futures = [pool.submit(_run_in_process, chunk) for chunk in chunks]
        for future in as_completed(futures):
            yield future.result()


def _on_ray(chunks: list[Chunk], config: EvalConfig) -> Iterator[ChunkOutput]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise ConfigError("--ray needs Ray. Install it: pip install 'tqstar[ray]'") from exc
    address = None if config.ray == "local" else config.ray
    try:
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                 **({"num_cpus": max(config.workers, 1)} if address is None else {}))
    except ConnectionError as exc:
        raise ConfigError(f"Could not reach the Ray cluster at {config.ray!r}: {exc}. Start it with "
                          "'ray start --head', or use --ray local.") from exc
    actors = [ray.remote(ChunkWorker).remote(_threads_each(config.workers) if address is None else None)
              for _ in range(config.workers)]
    yield from ActorPool(actors).map_unordered(lambda actor, chunk: actor.run.remote(chunk), chunks)
