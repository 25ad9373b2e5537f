"""The local env pool: worker processes on this machine; images come back through shared memory.

Each worker owns a few *slots*; a slot runs one episode at a time in an env it keeps per
(task, robot). The main process sends each worker one list of commands per round, ``(slot,
Reset(...))`` or ``(slot, Chunk(actions))``, and gets back one small reply per command (state,
instruction, flags, privileged state when asked), carried out by :class:`SlotRunner`. A chunk is a
policy's whole open-loop action chunk: the worker steps through it, checks success and the step
limit after every step, stops early when the episode ends, and renders only after the chunk's last
step, which is the observation the policy acts on next. Camera images are written into
shared-memory arrays that the main process reads in place, so no image is pickled per step; only an
episode that records a video ships its agentview frames, one per step, in the reply. A worker that
dies is replaced; the runner re-runs its episodes from scratch.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from multiprocessing import connection as mp_connection
from multiprocessing import shared_memory
from typing import Any, Iterator

import numpy as np

from simeval.pools import threads
from simeval.pools.commands import Chunk, PoolConfig, Reply, Reset, SlotRunner

MAX_FAILED_STARTS = 3  # workers that die before answering once: then something is broken, not unlucky


def _image_shape(config: PoolConfig) -> tuple[int, int, int]:
    return (config.image_size, config.image_size, 3)


def _views(blocks: dict[tuple[int, str], shared_memory.SharedMemory], config: PoolConfig,
           slots: list[int]) -> dict[int, dict[str, np.ndarray]]:
    shape = _image_shape(config)
    return {s: {c: np.ndarray(shape, np.uint8, buffer=blocks[(s, c)].buf) for c in config.cameras} for s in slots}


def _worker(conn, config: PoolConfig, slots: list[int], names: dict[tuple[int, str], str]) -> None:
    """Serve commands until told to stop; never raises for a bad episode (it replies an error)."""
    blocks = {key: shared_memory.SharedMemory(name=name) for key, name in names.items()}
    views = _views(blocks, config, slots)
    runner = SlotRunner(config, slots)
    try:
        while True:
            commands = conn.recv()
            if commands is None:
                break
            for slot, command in commands:  # each reply goes at once: the policy acts on it while this
                reply, images = runner.run(slot, command)  # worker runs its next slot
                for cam, image in images.items():
                    views[slot][cam][...] = image
                conn.send(reply)
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # the main process is gone (ended, interrupted or killed): nobody is left to answer
    finally:
        runner.close()
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


class LocalPool:
    """``workers`` processes x ``slots_per_worker`` slots. The runner ``submit``s commands and
    ``collect``s replies as they come, one per slot, so a worker runs one slot's chunk while the
    policy acts on another's observation."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.n_slots = config.n_slots
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
        self.live: set[int] = set(range(self.n_slots))  # a dead worker is replaced at once: every slot, always
        self._dead: set[int] = set()  # workers found dead, to be replaced at the next collect
        for w in range(config.workers):
            self._start(w)

    def _start(self, worker: int) -> None:
        parent, child = self._ctx.Pipe()
        slots = self.config.slots_of(worker)
        names = {key: block.name for key, block in self._blocks.items() if key[0] in slots}
        proc = self._ctx.Process(target=_worker, args=(child, self.config, slots, names), daemon=True)
        with _environment(threads.WORKER_THREADS):
            proc.start()
        child.close()
        self._procs[worker], self._conns[worker], self._answered[worker] = proc, parent, False

    @property
    def waiting(self) -> bool:
        """``collect`` has a reply to wait for."""
        return bool(self.busy)

    def submit(self, commands: list[tuple[int, Reset | Chunk]]) -> None:
        """Send each worker its commands (one message per worker); it answers each as it is done."""
        by_worker: dict[int, list] = {}
        for command in commands:
            assert command[0] not in self.busy, f"slot {command[0]} already has a command"
            by_worker.setdefault(self.config.worker_of(command[0]), []).append(command)
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
                   if any(s in self.busy for s in self.config.slots_of(w)) and w not in self._dead}
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
            self.busy.difference_update(self.config.slots_of(worker))
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

    def __enter__(self) -> "LocalPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
