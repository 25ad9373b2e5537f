"""Policy specs, as given to ``simeval run --policy``: ``scripted``, ``random`` or a checkpoint dir."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from policies.base import Policy
from policies.integrity import read_json, short

BUILTIN = ("scripted", "random")
# Checkpoint loaders by the ``policy_type`` in a checkpoint's config.json (the reference VLA adds one).
CHECKPOINT_LOADERS: dict[str, Callable[[Path], Policy]] = {}


def load_policy(spec: str) -> Policy:
    """The policy named by ``spec``; a one-line ``ValueError`` naming the valid choices otherwise."""
    if spec == "scripted":
        from policies.scripted import ScriptedPolicy

        return ScriptedPolicy()
    if spec == "random":
        from policies.random_policy import RandomPolicy

        return RandomPolicy()
    path = Path(spec)
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        is_dir = False
    if not is_dir:
        raise ValueError(f"unknown policy {short(spec)}: give {' or '.join(BUILTIN)}, or a checkpoint directory")
    config = path / "config.json"
    if not config.exists():
        raise ValueError(f"policy directory {spec!r} has no config.json: not a checkpoint")
    policy_type = read_json(config).get("policy_type")  # one line on a non-object, non-UTF-8, a directory ...
    if not isinstance(policy_type, str):
        raise ValueError(f"{config}: field policy_type={short(policy_type)} is not a string naming a checkpoint type")
    if policy_type == "simeval_vla":
        from policies import vla  # noqa: F401  (registers its loader; imports torch only here)
    if policy_type == "simeval_adapted":
        from policies import adapters  # noqa: F401  (registers its loader)
    if policy_type not in CHECKPOINT_LOADERS:
        known = ", ".join(CHECKPOINT_LOADERS) or "none registered yet"
        raise ValueError(f"{config}: unknown policy_type {short(policy_type)}; known checkpoint types: {known}")
    return CHECKPOINT_LOADERS[policy_type](path)
