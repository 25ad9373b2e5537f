"""Policy specs, as given to ``simeval run --policy``: ``scripted`` (simeval's worlds), ``scripted-libero``
(LIBERO's), ``random``, a checkpoint dir, or
the address of a policy server (``ws://HOST:PORT``, ``wss://...``) speaking openpi's protocol."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from policies.base import Policy
from policies.integrity import read_json, short

BUILTIN = ("scripted", "scripted-libero", "random")
# The loader of each checkpoint type (the ``policy_type`` in a checkpoint's config.json), as a
# "module:function" entry point, imported only when a checkpoint of that type is loaded: torch is
# imported then, not before, and the loaders' packages need not know about this module.
CHECKPOINT_ENTRY_POINTS: dict[str, str] = {
    "simeval_vla": "policies.vla.policy:load_vla_policy",
    "simeval_adapted": "policies.adapters.io:load_adapted_policy",
}


def resolve_loader(policy_type: str) -> Callable[[Path], Policy]:
    """The loader function of ``policy_type``'s entry point (imports its module); ``KeyError`` if unknown."""
    module, _, name = CHECKPOINT_ENTRY_POINTS[policy_type].partition(":")
    return getattr(importlib.import_module(module), name)


def is_remote(spec: str) -> bool:
    return spec.startswith(("ws://", "wss://"))


def load_policy(spec: str, remote: dict[str, Any] | None = None) -> Policy:
    """The policy named by ``spec``; a one-line ``ValueError`` naming the valid choices otherwise.

    ``remote`` holds a server's options (:class:`policies.remote.client.RemoteConfig` fields but the
    address: ``io``, ``replan``, ``timeout``, ``api_key``); they apply to ``ws://`` specs only."""
    if is_remote(spec):
        from policies.remote.client import RemoteConfig, RemotePolicy

        return RemotePolicy(RemoteConfig(url=spec, **(remote or {})))
    if remote:
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in remote)} apply to a policy server "
                         f"(--policy ws://HOST:PORT), not to {short(spec)}")
    if spec == "scripted":
        from policies.scripted import ScriptedPolicy

        return ScriptedPolicy()
    if spec == "scripted-libero":
        from policies.libero_expert import LiberoExpertPolicy

        return LiberoExpertPolicy()
    if spec == "random":
        from policies.random_policy import RandomPolicy

        return RandomPolicy()
    path = Path(spec)
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        is_dir = False
    if not is_dir:
        raise ValueError(f"unknown policy {short(spec)}: give {', '.join(BUILTIN)}, a checkpoint directory, or "
                         f"ws://HOST:PORT for a policy server")
    config = path / "config.json"
    if not config.exists():
        raise ValueError(f"policy directory {spec!r} has no config.json: not a checkpoint")
    policy_type = read_json(config).get("policy_type")  # one line on a non-object, non-UTF-8, a directory ...
    if not isinstance(policy_type, str):
        raise ValueError(f"{config}: field policy_type={short(policy_type)} is not a string naming a checkpoint type")
    if policy_type not in CHECKPOINT_ENTRY_POINTS:
        known = ", ".join(CHECKPOINT_ENTRY_POINTS)
        raise ValueError(f"{config}: unknown policy_type {short(policy_type)}; known checkpoint types: {known}")
    return resolve_loader(policy_type)(path)
