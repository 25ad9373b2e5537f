"""The env pool: worker processes that own environments; images come back through shared memory.

Each worker owns a few *slots*; a slot runs one episode at a time in an env it keeps per
(task, robot). The main process sends each worker one list of commands per round, ``(slot,
Reset(...))`` or ``(slot, Chunk(actions))``, and gets back one list of small replies (state,
instruction, flags, privileged state when asked). A chunk is a policy's whole open-loop action
chunk: the worker steps through it, checks success and the step limit after every step, stops early
when the episode ends, and renders only after the chunk's last step, which is the observation the
policy acts on next. Camera images are written into shared-memory arrays that the main process
reads in place, so no image is pickled per step; only an episode that records a video ships its
agentview frames, one per step, in the reply. A worker that dies is replaced; the runner re-runs its
episodes from scratch.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from multiprocessing import connection as mp_connection
from multiprocessing import shared_memory
from typing import Any, Iterator

import numpy as np

from simeval.suites import EpisodeSpec

ENVS_PER_SLOT = 4  # envs a slot keeps alive (one per task x robot), least recently used closed first
MAX_FAILED_STARTS = 3  # workers that die before answering once: then something is broken, not unlucky
# The thread policy. A worker uses one core: BLAS (OpenBLAS, MKL, OpenMP) and Mesa's llvmpipe would
# otherwise start a thread per core in every worker, and the workers would fight over the cores
# instead of using one each. The main process runs the policy with torch on the cores the workers
# leave (at least one): more threads than that spin-wait on cores the workers need (measured on 2
# cores with 2 workers: 1 torch thread instead of 2 halves the main process's CPU per env step).
WORKER_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "LP_NUM_THREADS": "1"}


def main_threads(workers: int) -> int:
    """Torch threads for the main process while ``workers`` env workers run."""
    return max(1, (os.cpu_count() or 1) - workers)


@contextlib.contextmanager
def policy_threads(workers: int) -> Iterator[None]:
    """Torch's intra-op threads set to :func:`main_threads` for the duration (only if torch is in use:
    a policy without torch does not import it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(main_threads(workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class PoolConfig:
    """``cameras`` at ``image_size`` are rendered at every decision point (nothing else is);
    ``per_step`` renders them after every step instead, as the engine before action chunks did (kept
    for benchmarks and comparisons: the outcomes are the same)."""

    workers: int
    slots_per_worker: int = 1
    image_size: int = 128
    cameras: tuple[str, ...] = ("agentview", "wrist")
    privileged: bool = False
    per_step: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1 or self.slots_per_worker < 1:
            raise ValueError(f"the pool needs >= 1 worker and >= 1 slot per worker, got {self.workers}, "
                             f"{self.slots_per_worker}")


@dataclass
class Reset:
    """Start ``spec`` in a slot; ``frames``: ship an agentview frame of every step (a video)."""

    spec: EpisodeSpec
    frames: bool = False


@dataclass
class Chunk:
    """Step a slot through ``actions`` (H, 7), open-loop, until they run out or the episode ends."""

    actions: np.ndarray


@dataclass
class Reply:
    """What a worker says about one slot after a command."""

    slot: int
    state: np.ndarray | None = None
    instruction: str = ""
    steps: int = 0  # env steps this command executed
    success: bool = False
    truncated: bool = False  # the step limit was reached
    info: dict[str, Any] | None = None  # reset only: perturbation and layout
    privileged: dict[str, Any] | None = None
    first_moved: str | None = None
    error: str | None = None
    frames: list[np.ndarray] = field(default_factory=list)  # agentview per step, for a video

    @property
    def ended(self) -> bool:
        return self.success or self.truncated


def _image_shape(config: PoolConfig) -> tuple[int, int, int]:
    return (config.image_size, config.image_size, 3)


def _views(blocks: dict[tuple[int, str], shared_memory.SharedMemory], config: PoolConfig,
           slots: list[int]) -> dict[int, dict[str, np.ndarray]]:
    shape = _image_shape(config)
    return {s: {c: np.ndarray(shape, np.uint8, buffer=blocks[(s, c)].buf) for c in config.cameras} for s in slots}


@dataclass
class _Running:
    """A worker's view of a slot's episode."""

    env: Any
    spec: EpisodeSpec
    frames: bool
    steps: int = 0


def _worker(conn, config: PoolConfig, slots: list[int], names: dict[tuple[int, str], str]) -> None:
    """Serve commands until told to stop; never raises for a bad episode (it replies an error)."""
    import envs  # noqa: F401  (sets the GL backend)
    from envs.env import TabletopEnv

    blocks = {key: shared_memory.SharedMemory(name=name) for key, name in names.items()}
    views = _views(blocks, config, slots)
    cache: dict[int, OrderedDict] = {s: OrderedDict() for s in slots}
    running: dict[int, _Running] = {}

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

    def observe(slot: int, run: _Running, render: bool, **extra) -> Reply:
        obs = run.env.observe(config.cameras if render else ())
        for cam in config.cameras if render else ():
            views[slot][cam][...] = obs[cam]
        privileged = run.env.privileged_state() if config.privileged and render else None
        return Reply(slot, obs["state"], obs["instruction"], privileged=privileged, **extra)

    def reset(slot: int, command: Reset) -> Reply:
        env = env_for(slot, command.spec)
        run = running[slot] = _Running(env, command.spec, command.frames)
        _, info = env.reset(seed=command.spec.seed, options={"perturbation": command.spec.variant})
        frames = [env.frame("agentview")] if run.frames else []  # each render is a new array: no copy
        return observe(slot, run, True, info={"perturbation": info["perturbation"], "layout": info["layout"]},
                       frames=frames)

    def chunk(slot: int, command: Chunk) -> Reply:
        run = running[slot]
        frames, steps, success = [], 0, False
        for action in command.actions:
            success, _ = run.env.advance(action)
            steps, run.steps = steps + 1, run.steps + 1
            if run.frames:
                frames.append(run.env.frame("agentview"))
            if success or run.steps >= run.spec.max_steps:
                break
        truncated = not success and run.steps >= run.spec.max_steps
        render = config.per_step or not (success or truncated)  # an ended episode is not observed again
        return observe(slot, run, render, steps=steps, success=success, truncated=truncated, frames=frames,
                       first_moved=run.env.first_moved)

    try:
        while True:
            commands = conn.recv()
            if commands is None:
                break
            for slot, command in commands:  # each reply goes at once: the policy acts on it while this
                try:                          # worker runs its next slot
                    reply = reset(slot, command) if isinstance(command, Reset) else chunk(slot, command)
                except Exception as err:  # one episode's failure, not the worker's
                    reply = Reply(slot, error=f"{type(err).__name__}: {err}".splitlines()[0])
                    if not isinstance(err, ValueError):
                        traceback.print_exc()
                conn.send(reply)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        for envs_of_slot in cache.values():
            for env in envs_of_slot.values():
                env.close()
        for block in blocks.values():
            block.close()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set while a worker is spawned (it copies the environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class EnvPool:
    """``workers`` processes x ``slots_per_worker`` slots. The runner ``submit``s commands and
    ``collect``s replies as they come, one per slot, so a worker runs one slot's chunk while the
    policy acts on another's observation."""

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
        self.busy: set[int] = set()  # slots with a command not answered yet
        self._dead: set[int] = set()  # workers found dead, to be replaced at the next collect
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
        with _environment(WORKER_THREADS):
            proc.start()
        child.close()
        self._procs[worker], self._conns[worker], self._answered[worker] = proc, parent, False

    def submit(self, commands: list[tuple[int, Reset | Chunk]]) -> None:
        """Send each worker its commands (one message per worker); it answers each as it is done."""
        by_worker: dict[int, list] = {}
        for command in commands:
            assert command[0] not in self.busy, f"slot {command[0]} already has a command"
            by_worker.setdefault(self.worker_of(command[0]), []).append(command)
        for worker, batch in by_worker.items():
            self.busy.update(slot for slot, _ in batch)
            try:
                self._conns[worker].send(batch)
            except (BrokenPipeError, OSError):
                self._dead.add(worker)

    def collect(self) -> tuple[list[Reply], list[int]]:
        """Wait until some slot's command is answered; every reply that has arrived, and the workers
        that died (replaced already: the caller re-runs their episodes)."""
        waiting = {self._conns[w]: w for w in range(self.config.workers)
                   if any(s in self.busy for s in self.slots_of(w)) and w not in self._dead}
        if waiting and not self._dead:
            mp_connection.wait(list(waiting))
        replies: list[Reply] = []
        for conn, worker in waiting.items():
            try:
                while conn.poll():
                    reply = conn.recv()
                    self.busy.discard(reply.slot)
                    replies.append(reply)
                    self._answered[worker] = True
            except (EOFError, ConnectionResetError, OSError):
                self._dead.add(worker)
        dead = sorted(self._dead)
        self._dead.clear()
        for worker in dead:
            self.busy.difference_update(self.slots_of(worker))
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
