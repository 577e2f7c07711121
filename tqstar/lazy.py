"""The packages' lazy faces: each lists its public names and the submodule that holds each, and a name's
submodule is imported on first access, so importing a package loads no torch."""

from __future__ import annotations

from importlib import import_module


def lazy_getattr(package: str, exports: dict[str, str]):
    """A module ``__getattr__`` for ``package`` that imports ``package.exports[name]`` on first use."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
