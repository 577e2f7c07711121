"""Aligned baselines shipped with the package (LoRA adapters on the embedded model) and their metadata."""

from __future__ import annotations

import json
from pathlib import Path

ADAPTER_DIR = Path(__file__).resolve().parents[1] / "adapters"  # package data beside the wings
DEFAULT_BASELINE = "bl-helpful-harmless"  # the embedded reference's baseline for the default target reward


def shipped_adapters() -> list[str]:
    """Names of the adapters that ship with tqstar."""
    if not ADAPTER_DIR.is_dir():
        return []
    return sorted(p.name for p in ADAPTER_DIR.iterdir() if (p / "adapter_config.json").is_file())


def shipped_adapter_path(name: str) -> Path | None:
    """The directory of a shipped adapter, or None when ``name`` is not one."""
    path = ADAPTER_DIR / name
    return path if "/" not in name and (path / "adapter_config.json").is_file() else None


def adapter_dir(spec: str | None) -> Path | None:
    """The adapter directory a baseline spec names (shipped name or path), or None for other specs."""
    if not spec:
        return None
    path = shipped_adapter_path(spec) or Path(spec).expanduser()
    return path if (path / "adapter_config.json").is_file() else None


def adapter_base(path: Path) -> str | None:
    """The reference an adapter was trained on: ``tqstar align``'s metadata, else PEFT's base model."""
    metadata = adapter_metadata(path)
    if metadata.get("reference"):
        return str(metadata["reference"])
    return json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")


def adapter_metadata(path: Path) -> dict:
    """``metadata.json`` written by ``tqstar align`` (reference, reward, DPO beta, ...), or {}."""
    file = path / "metadata.json"
    return json.loads(file.read_text()) if file.is_file() else {}
