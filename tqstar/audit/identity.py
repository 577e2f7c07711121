"""Who answered: the identities and versions of the roles' models and rewards, as an audit record names them.

A model's name is its spec (a hub id, a path, an adapter name); two runs of one name can still differ (a
retrained adapter in the same folder, a new hub revision), so each local model also carries a fingerprint of
its weights: sha256 over every parameter's name, shape and first 64 values. It is computed once, at start.
"""

from __future__ import annotations

import hashlib
from importlib import metadata

from ..decoding.roles import IMPLICIT, Roles
from ..rewards.protocol import reward_name

PACKAGES = ("tqstar", "torch", "transformers", "peft")
SAMPLED_VALUES = 64


def roles_identity(roles: Roles) -> dict:
    """The reference, baseline, reward and baseline reward by name and version, and the software versions."""
    return {
        "reference": model_identity(roles.reference),
        "baseline": model_identity(roles.baseline) if roles.baseline is not roles.reference else "reference",
        "reward": reward_name(roles.reward),
        "baseline_reward": (IMPLICIT if roles.implicit else
                            reward_name(roles.baseline_reward) if roles.baseline_reward is not None else None),
        "versions": {name: _version(name) for name in PACKAGES},
    }


def model_identity(model) -> dict:
    """A model's name, hub revision when it has one, and a fingerprint of its weights (local models)."""
    identity = {"name": model.name}
    # a transformers module behind HFLanguageModel (an int8 copy's fp32 source); remote models have none
    network = getattr(model, "source_network", None) or getattr(model, "model", None)
    if network is None:
        return identity
    revision = getattr(getattr(network, "config", None), "_commit_hash", None)
    if revision:
        identity["revision"] = revision
    identity["fingerprint"] = weights_fingerprint(network)
    return identity


def weights_fingerprint(network) -> str:
    digest = hashlib.sha256()
    for name, parameter in network.named_parameters():
        sample = parameter.detach().flatten()[:SAMPLED_VALUES].float().cpu().numpy()
        digest.update(f"{name}{tuple(parameter.shape)}".encode())
        digest.update(sample.tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
