"""Aligned baselines shipped with the package (LoRA adapters on the embedded model)."""

from __future__ import annotations

from pathlib import Path

ADAPTER_DIR = Path(__file__).parent / "adapters"


def shipped_adapters() -> list[str]:
    """Names of the adapters that ship with tqstar."""
    if not ADAPTER_DIR.is_dir():
        return []
    return sorted(p.name for p in ADAPTER_DIR.iterdir() if (p / "adapter_config.json").is_file())


def shipped_adapter_path(name: str) -> Path | None:
    """The directory of a shipped adapter, or None when ``name`` is not one."""
    path = ADAPTER_DIR / name
    return path if "/" not in name and (path / "adapter_config.json").is_file() else None
