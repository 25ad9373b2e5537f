"""The env pool: worker processes that own environments; images come back through shared memory.

Each worker owns a few *slots*; a slot runs one episode at a time in an env it keeps per
(task, robot). The main process sends each worker one list of commands per round (reset a slot
onto an episode, or step it with an action) and gets back one list of small replies (state,
instruction, flags, privileged state when asked); camera images are written by the worker into
shared-memory arrays that the main process reads in place, so no image is pickled per step.
A worker that dies is replaced; the runner re-runs its episodes from scratch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from simeval.suites import EpisodeSpec

ENVS_PER_SLOT = 4  # envs a slot keeps alive (one per task x robot), least recently used closed first
MAX_FAILED_STARTS = 3  # workers that die before answering once: then something is broken, not unlucky


@dataclass(frozen=True)
class PoolConfig:
    workers: int
    slots_per_worker: int = 1
    image_size: int = 128
    cameras: tuple[str, ...] = ("agentview", "wrist")
    privileged: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1 or self.slots_per_worker < 1:
            raise ValueError(f"the pool needs >= 1 worker and >= 1 slot per worker, got {self.workers}, "
                             f"{self.slots_per_worker}")


@dataclass
class Reply:
    """What a worker says about one slot after a command."""

    slot: int
    state: np.ndarray | None = None
    instruction: str = ""
    terminated: bool = False
    success: bool = False
    info: dict[str, Any] | None = None  # reset only: perturbation and layout
    privileged: dict[str, Any] | None = None
    first_moved: str | None = None
    error: str | None = None


def _image_shape(config: PoolConfig) -> tuple[int, int, int]:
    return (config.image_size, config.image_size, 3)


def _views(blocks: dict[tuple[int, str], shared_memory.SharedMemory], config: PoolConfig,
           slots: list[int]) -> dict[int, dict[str, np.ndarray]]:
    shape = _image_shape(config)
    return {s: {c: np.ndarray(shape, np.uint8, buffer=blocks[(s, c)].buf) for c in config.cameras} for s in slots}


def _worker(conn, config: PoolConfig, slots: list[int], names: dict[tuple[int, str], str]) -> None:
    """Serve commands until told to stop; never raises for a bad episode (it replies an error)."""
    # One worker per core: Mesa's llvmpipe would otherwise start a render thread per core in every
    # worker, and the workers would fight over the cores instead of using one each.
    os.environ.setdefault("LP_NUM_THREADS", "1")
    import envs  # noqa: F401  (sets the GL backend)
    from envs.env import TabletopEnv

    blocks = {key: shared_memory.SharedMemory(name=name) for key, name in names.items()}
    views = _views(blocks, config, slots)
    cache: dict[int, OrderedDict] = {s: OrderedDict() for s in slots}
    current: dict[int, TabletopEnv] = {}

    def env_for(slot: int, spec: EpisodeSpec) -> TabletopEnv:
        key = (spec.task, spec.robot)
        envs_of_slot = cache[slot]
        if key not in envs_of_slot:
            envs_of_slot[key] = TabletopEnv(spec.task, spec.robot, image_size=config.image_size,
                                            cameras=config.cameras)
            while len(envs_of_slot) > ENVS_PER_SLOT:
                envs_of_slot.popitem(last=False)[1].close()
        envs_of_slot.move_to_end(key)
        return envs_of_slot[key]

    def reply(slot: int, env: TabletopEnv, obs: dict, **extra) -> Reply:
        for cam in config.cameras:
            views[slot][cam][...] = obs[cam]
        privileged = env.privileged_state() if config.privileged else None
        return Reply(slot, obs["state"], obs["instruction"], privileged=privileged, **extra)

    try:
        while True:
            commands = conn.recv()
            if commands is None:
                break
            out = []
            for kind, slot, payload in commands:
                try:
                    if kind == "reset":
                        env = current[slot] = env_for(slot, payload)
                        obs, info = env.reset(seed=payload.seed, options={"perturbation": payload.variant})
                        out.append(reply(slot, env, obs, info={"perturbation": info["perturbation"],
                                                               "layout": info["layout"]}))
                    else:
                        env = current[slot]
                        obs, _, terminated, _, info = env.step(payload)
                        out.append(reply(slot, env, obs, terminated=terminated, success=info["success"],
                                         first_moved=info["first_moved"]))
                except Exception as err:  # one episode's failure, not the worker's
                    out.append(Reply(slot, error=f"{type(err).__name__}: {err}".splitlines()[0]))
                    if not isinstance(err, ValueError):
                        traceback.print_exc()
            conn.send(out)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        for envs_of_slot in cache.values():
            for env in envs_of_slot.values():
                env.close()
        for block in blocks.values():
            block.close()


class EnvPool:
    """``workers`` processes x ``slots_per_worker`` slots, driven in rounds by the runner."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.n_slots = config.workers * config.slots_per_worker
        size = int(np.prod(_image_shape(config)))
        self._blocks = {(s, c): shared_memory.SharedMemory(create=True, size=size)
                        for s in range(self.n_slots) for c in config.cameras}
        self.images = _views(self._blocks, config, list(range(self.n_slots)))
        self._ctx = mp.get_context("spawn")  # no inherited GL or thread state
        self._procs: list[Any] = [None] * config.workers
        self._conns: list[Any] = [None] * config.workers
        self._answered = [False] * config.workers
        self.restarts, self._failed_starts = 0, 0
        for w in range(config.workers):
            self._start(w)

    def worker_of(self, slot: int) -> int:
        return slot // self.config.slots_per_worker

    def slots_of(self, worker: int) -> list[int]:
        k = self.config.slots_per_worker
        return list(range(worker * k, (worker + 1) * k))

    def _start(self, worker: int) -> None:
        parent, child = self._ctx.Pipe()
        names = {key: block.name for key, block in self._blocks.items() if self.worker_of(key[0]) == worker}
        proc = self._ctx.Process(target=_worker, args=(child, self.config, self.slots_of(worker), names), daemon=True)
        proc.start()
        child.close()
        self._procs[worker], self._conns[worker], self._answered[worker] = proc, parent, False

    def run(self, commands: list[tuple[str, int, Any]]) -> tuple[list[Reply], list[int]]:
        """Send one round of commands (all workers at once); the replies, and the workers that died
        (replaced already: the caller re-runs their slots' episodes)."""
        by_worker: dict[int, list] = {}
        for command in commands:
            by_worker.setdefault(self.worker_of(command[1]), []).append(command)
        dead = []
        for worker, batch in by_worker.items():
            try:
                self._conns[worker].send(batch)
            except (BrokenPipeError, OSError):
                dead.append(worker)
        replies: list[Reply] = []
        for worker in by_worker:
            if worker in dead:
                continue
            try:
                replies.extend(self._conns[worker].recv())
                self._answered[worker] = True
            except (EOFError, ConnectionResetError, OSError):
                dead.append(worker)
        for worker in dead:
            self._replace(worker)
        return replies, dead

    def _replace(self, worker: int) -> None:
        if not self._answered[worker]:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                raise RuntimeError(f"env pool workers died {self._failed_starts} times before answering once: the "
                                   f"worker process cannot start (see its traceback above)")
        proc = self._procs[worker]
        if proc is not None and proc.is_alive():
            proc.kill()
        if proc is not None:
            proc.join(timeout=5)
        self._conns[worker].close()
        self.restarts += 1
        self._start(worker)

    def pid(self, worker: int) -> int:
        return self._procs[worker].pid

    def close(self) -> None:
        for conn, proc in zip(self._conns, self._procs):
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        for block in self._blocks.values():
            block.close()
            block.unlink()

    def __enter__(self) -> "EnvPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
