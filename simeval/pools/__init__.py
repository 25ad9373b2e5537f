"""Env pools: one interface, two implementations.

The runner drives a pool with one command protocol (:mod:`simeval.pools.commands`): ``submit`` a
list of ``(slot, Reset | Chunk)`` commands, ``collect`` the replies as they come (and the workers
that died, whose episodes the runner re-runs), read a slot's latest camera images in
``images[slot]``. Only ``live`` slots take commands (a Ray worker whose actor is not up yet, or
waits for a node, has none); ``collect`` waits, within a bound, while the pool is ``waiting``.
Both implementations carry commands out with the same :class:`SlotRunner`, so they give the same
outcomes:

- :class:`~simeval.pools.local.LocalPool` (``backend="local"``, the default): worker processes on
  this machine, images through shared memory;
- :class:`~simeval.pools.ray.RayPool` (``backend="ray"``): Ray actors, on one machine or a
  cluster, images through Ray's object store. Ray is an optional extra, imported only here.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from simeval.pools.commands import Chunk, PoolConfig, Reply, Reset, SlotRunner
from simeval.pools.threads import WORKER_THREADS, main_threads, policy_threads

__all__ = ["Chunk", "Pool", "PoolConfig", "Reply", "Reset", "SlotRunner", "WORKER_THREADS", "main_threads",
           "make_pool", "policy_threads"]


class Pool(Protocol):
    """What the runner needs of a pool."""

    config: PoolConfig
    n_slots: int
    busy: set[int]  # slots with a command not answered yet
    live: set[int]  # slots that can take a command (their worker is up)
    images: dict[int, dict[str, np.ndarray]]  # slot -> camera -> the latest rendered image
    restarts: int  # workers replaced so far

    @property
    def waiting(self) -> bool: ...  # collect has something to wait for (a reply, a worker starting)

    def submit(self, commands: list[tuple[int, Reset | Chunk]]) -> None: ...
    def collect(self) -> tuple[list[Reply], list[int]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Pool": ...
    def __exit__(self, *exc) -> None: ...


def backend_settings(backend: str, ray_address: str | None, workers: int) -> dict:
    """A run's ``backend`` and ``ray_address`` (RunRequest fields), checked before anything is
    written: a missing Ray, an address nothing listens on or no cluster there is a one-line
    ``ValueError``. Ray starts (or joins its cluster) here, once."""
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown --backend {backend!r}; valid backends: local, ray")
    if backend == "local":
        if ray_address is not None:
            raise ValueError("--ray-address applies to --backend ray")
        return {}
    from simeval.pools.ray_cluster import connect

    connect(ray_address, workers)
    return {"backend": "ray", "ray_address": ray_address}


def make_pool(config: PoolConfig) -> Pool:
    """The pool ``config.backend`` names."""
    if config.backend == "ray":
        from simeval.pools.ray import RayPool

        return RayPool(config)
    from simeval.pools.local import LocalPool

    return LocalPool(config)
