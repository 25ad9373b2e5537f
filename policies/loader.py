"""Policy specs, as given to ``simeval run --policy``: ``scripted``, ``random`` or a checkpoint dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from policies.base import Policy

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
    if not path.is_dir():
        raise ValueError(f"unknown policy {spec!r}: give {' or '.join(BUILTIN)}, or a checkpoint directory")
    config = path / "config.json"
    if not config.is_file():
        raise ValueError(f"policy directory {spec!r} has no config.json: not a checkpoint")
    try:
        policy_type = json.loads(config.read_text()).get("policy_type")
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{config}: unreadable checkpoint config ({err})") from None
    if policy_type == "simeval_vla":
        from policies import vla  # noqa: F401  (registers its loader; imports torch only here)
    if policy_type == "simeval_adapted":
        from policies import adapters  # noqa: F401  (registers its loader)
    if policy_type not in CHECKPOINT_LOADERS:
        known = ", ".join(CHECKPOINT_LOADERS) or "none registered yet"
        raise ValueError(f"{config}: unknown policy_type {policy_type!r}; known checkpoint types: {known}")
    return CHECKPOINT_LOADERS[policy_type](path)
