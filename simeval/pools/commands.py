"""The command protocol every env pool speaks, and the one place that carries commands out.

The runner sends a slot ``Reset(episode)`` or ``Chunk(actions)`` and gets one small :class:`Reply`
per command, plus the images the policy reads. :class:`SlotRunner` is what a worker (a local
process, a Ray actor) does with a command: it owns the worker's slots and their envs, so every
pool implementation runs episodes the same way and gives the same outcomes.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simeval.suites import EpisodeSpec

BACKENDS = ("local", "ray")
RENDER_THREADS = "SIMEVAL_LIBERO_RENDER_THREADS"  # overrides a LIBERO worker's share of the cores (benchmarks)
ENVS_PER_SLOT = 4  # envs a slot keeps alive (one per task x robot), least recently used closed first


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
    backend: str = "local"  # or "ray" (simeval.pools.ray)
    ray_address: str | None = None  # None: a local Ray with `workers` CPUs; "auto" or an address: a cluster

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; valid backends: {', '.join(BACKENDS)}")
        if self.workers < 1 or self.slots_per_worker < 1:
            raise ValueError(f"the pool needs >= 1 worker and >= 1 slot per worker, got {self.workers}, "
                             f"{self.slots_per_worker}")

    @property
    def n_slots(self) -> int:
        return self.workers * self.slots_per_worker

    def worker_of(self, slot: int) -> int:
        """The worker that holds ``slot``: each holds ``slots_per_worker`` consecutive slots (every backend)."""
        return slot // self.slots_per_worker

    def slots_of(self, worker: int) -> list[int]:
        return list(range(worker * self.slots_per_worker, (worker + 1) * self.slots_per_worker))


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
    native: dict[str, np.ndarray] | None = None  # a LIBERO world's own proprioception (its I/O profile sends it)

    @property
    def ended(self) -> bool:
        return self.success or self.truncated


@dataclass
class _Running:
    """A worker's view of a slot's episode."""

    env: Any
    spec: EpisodeSpec
    frames: bool
    steps: int = 0


class SlotRunner:
    """A worker's slots, their envs (one per (task, robot) per slot, compiled once) and their running
    episodes. ``run`` carries out one command and never raises for a bad episode: it replies an
    error. What a pool does with the images (shared memory, Ray's object store) is its own affair."""

    def __init__(self, config: PoolConfig, slots: list[int]) -> None:
        import envs  # noqa: F401  (sets the GL backend before MuJoCo loads)

        self.config = config
        self._cache: dict[int, OrderedDict] = {s: OrderedDict() for s in slots}
        self._running: dict[int, _Running] = {}
        self._libero = None  # the worker's LIBERO side process (simeval.libero.world), started on first use
        self._in_libero: set[int] = set()  # slots whose episode runs in a LIBERO world

    def run(self, slot: int, command: "Reset | Chunk") -> tuple[Reply, dict[str, np.ndarray]]:
        """The reply to ``command`` in ``slot`` and the policy's camera images, when rendered."""
        if isinstance(command, Reset):
            self._in_libero.discard(slot)
            from simeval.worlds import is_libero

            if is_libero(command.spec.world):
                self._in_libero.add(slot)
        if slot in self._in_libero:
            return self._run_libero(slot, command)
        try:
            return self._reset(slot, command) if isinstance(command, Reset) else self._chunk(slot, command)
        except Exception as err:  # one episode's failure, not the worker's
            if not isinstance(err, ValueError):
                import traceback

                traceback.print_exc()
            return Reply(slot, error=f"{type(err).__name__}: {err}".splitlines()[0]), {}

    def _run_libero(self, slot: int, command: "Reset | Chunk") -> tuple[Reply, dict[str, np.ndarray]]:
        """A LIBERO slot's command, carried out by the worker's side process; a dead side process
        ends the worker (the pool replaces it and the runner re-runs its episodes)."""
        from simeval.libero.world import LiberoWorlds, WorldLost, lost

        if self._libero is None:  # LIBERO renders the most: its llvmpipe gets this worker's share of the cores
            share = max(1, (os.cpu_count() or 1) // self.config.workers)
            render_threads = int(os.environ.get(RENDER_THREADS) or 0) or share
            self._libero = LiberoWorlds(self.config.image_size, self.config.cameras, self.config.per_step,
                                        render_threads, privileged=self.config.privileged)
        try:
            return self._libero.run(slot, command)
        except WorldLost as err:
            lost(err)
            raise
        except Exception as err:  # one episode's failure (the side process answers its own as errors)
            return Reply(slot, error=f"{type(err).__name__}: {err}".splitlines()[0]), {}

    def _env(self, slot: int, spec: EpisodeSpec):
        from envs.env import TabletopEnv

        key, envs_of_slot = (spec.task, spec.robot), self._cache[slot]
        if key not in envs_of_slot:
            envs_of_slot[key] = TabletopEnv(spec.task, spec.robot, image_size=self.config.image_size,
                                            cameras=self.config.cameras)
            while len(envs_of_slot) > ENVS_PER_SLOT:
                envs_of_slot.popitem(last=False)[1].close()
        envs_of_slot.move_to_end(key)
        return envs_of_slot[key]

    def _observe(self, slot: int, run: _Running, render: bool, **extra) -> tuple[Reply, dict[str, np.ndarray]]:
        cameras = self.config.cameras if render else ()
        obs = run.env.observe(cameras)
        privileged = run.env.privileged_state() if self.config.privileged and render else None
        reply = Reply(slot, obs["state"], obs["instruction"], privileged=privileged, **extra)
        return reply, {cam: obs[cam] for cam in cameras}

    def _reset(self, slot: int, command: Reset) -> tuple[Reply, dict[str, np.ndarray]]:
        env = self._env(slot, command.spec)
        run = self._running[slot] = _Running(env, command.spec, command.frames)
        _, info = env.reset(seed=command.spec.seed, options={"perturbation": command.spec.variant})
        frames = [env.frame("agentview")] if run.frames else []  # each render is a new array: no copy
        return self._observe(slot, run, True, info={"perturbation": info["perturbation"], "layout": info["layout"]},
                             frames=frames)

    def _chunk(self, slot: int, command: Chunk) -> tuple[Reply, dict[str, np.ndarray]]:
        run = self._running[slot]
        frames, steps, success = [], 0, False
        for action in command.actions:
            success, _ = run.env.advance(action)
            steps, run.steps = steps + 1, run.steps + 1
            if run.frames:
                frames.append(run.env.frame("agentview"))
            if success or run.steps >= run.spec.max_steps:
                break
        truncated = not success and run.steps >= run.spec.max_steps
        render = self.config.per_step or not (success or truncated)  # an ended episode is not observed again
        return self._observe(slot, run, render, steps=steps, success=success, truncated=truncated, frames=frames,
                             first_moved=run.env.first_moved)

    def close(self) -> None:
        if self._libero is not None:
            self._libero.close()
        for envs_of_slot in self._cache.values():
            for env in envs_of_slot.values():
                env.close()
        self._cache.clear()
