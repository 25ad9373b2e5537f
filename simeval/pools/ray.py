"""The Ray env pool: ``workers`` env actors, on this machine or spread over a Ray cluster.

Each actor (``num_cpus=1``) owns its slots and their envs exactly as a local worker process does
(:class:`SlotRunner`). A command is a Ray task on the slot's actor; an actor runs its tasks one at
a time, in the order they were sent, so a slot's commands never overtake each other. Its reply and
the camera images come back through Ray's object store: numpy arrays, read zero-copy when the actor
is on the driver's node. The policy runs in the driver, where the runner is.

An actor that dies (``ray.kill``, its process killed, its node lost) is replaced, and the runner
re-runs the episodes it was running from scratch, as with the local pool. Ray itself is the
optional extra ``simeval[ray]``, imported only when this pool is made.
"""

from __future__ import annotations

import os
import pickle
import socket
from typing import Any

import numpy as np

from simeval.pools import threads
from simeval.pools.commands import Chunk, PoolConfig, Reply, Reset, SlotRunner

EXTRA = 'pip install -e ".[ray]"'
CONNECT_TIMEOUT_S = 5.0
MAX_FAILED_STARTS = 3  # actors that die before answering once: then something is broken, not unlucky


class RayPoolError(ValueError):
    """Ray missing or the cluster unreachable: a user's setting, one line, exit code 2."""


class EnvActor:
    """One worker: its slots, their envs, one command at a time (a Ray actor class)."""

    def __init__(self, config: PoolConfig, slots: list[int]) -> None:
        os.environ.update(threads.WORKER_THREADS)  # before the envs' GL contexts start their threads
        self._runner = SlotRunner(config, slots)

    def run(self, slot: int, command: Reset | Chunk) -> tuple[Reply, dict[str, np.ndarray]]:
        return self._runner.run(slot, command)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self._runner.close()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayPoolError(f"--backend ray needs Ray, an optional extra: {EXTRA}") from None
    return ray


def connect(address: str | None, cpus: int) -> bool:
    """Join ``address`` ("auto", "HOST:PORT" or "ray://HOST:PORT"), or start Ray on this machine
    with ``cpus`` CPUs when it is None; True when this call started Ray (and must stop it)."""
    ray = import_ray()
    check_address(address)
    if ray.is_initialized():
        return False
    try:
        if address is None:
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=True)
        else:
            ray.init(address=address, logging_level="ERROR", log_to_driver=True)
    except ConnectionError as err:
        reason = str(err).splitlines()[0].split(". ")[0]
        raise RayPoolError(f"cannot join the Ray cluster at {address}: {reason}") from None
    return True


def check_address(address: str | None) -> None:
    """A one-line error within seconds for an address nothing listens on (Ray itself retries for a
    minute or more before it gives up). None and "auto" need no address."""
    if address in (None, "auto"):
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayPoolError(f"--ray-address {address!r}: give auto, HOST:PORT (a cluster's head, e.g. head:6379) "
                           f"or ray://HOST:PORT (Ray Client, e.g. head:10001)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise RayPoolError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


class RayPool:
    """``workers`` env actors x ``slots_per_worker`` slots, behind the same interface as the local pool."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.n_slots = config.n_slots
        self._ray = import_ray()
        self._started_ray = connect(config.ray_address, config.workers)
        self._actor_class = self._ray.remote(num_cpus=1)(EnvActor)
        self.images: dict[int, dict[str, np.ndarray]] = {s: {} for s in range(self.n_slots)}
        self.busy: set[int] = set()
        self.restarts = 0
        self.measure = False  # benchmarks set it: count the bytes that cross the object store (pickles each)
        self.bytes_returned = 0  # replies and images
        self.bytes_sent = 0  # commands
        self.replies = 0
        self._pending: dict[Any, tuple[int, int]] = {}  # object ref -> (worker, slot)
        self._answered = [False] * config.workers
        self._failed_starts = 0
        self._actors: list[Any] = [self._start(w) for w in range(config.workers)]

    def _start(self, worker: int) -> Any:
        return self._actor_class.remote(self.config, self.config.slots_of(worker))

    def pid(self, worker: int) -> int:
        return self._ray.get(self._actors[worker].pid.remote())

    def actor(self, worker: int) -> Any:
        return self._actors[worker]

    def submit(self, commands: list[tuple[int, Reset | Chunk]]) -> None:
        for slot, command in commands:
            assert slot not in self.busy, f"slot {slot} already has a command"
            worker = self.config.worker_of(slot)
            self._pending[self._actors[worker].run.remote(slot, command)] = (worker, slot)
            if self.measure:
                self.bytes_sent += len(pickle.dumps(command))
            self.busy.add(slot)

    def collect(self) -> tuple[list[Reply], list[int]]:
        """Wait until some command is answered; every answered one, and the workers that died
        (replaced already: the caller re-runs their episodes)."""
        ray = self._ray
        refs = list(self._pending)
        if not refs:
            return [], []
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # what has come in already
        if not ready:
            ray.wait(refs, num_returns=1)
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        replies, dead = [], set()
        for ref, answer in zip(ready, self._get(ready)):
            worker, slot = self._pending.pop(ref)
            if answer is None:
                dead.add(worker)
                continue
            reply, images = answer
            self.busy.discard(slot)
            self._answered[worker] = True
            if images:
                self.images[slot] = images
            self.replies += 1
            if self.measure:
                self.bytes_returned += sum(a.nbytes for a in images.values()) + len(pickle.dumps(reply))
            replies.append(reply)
        for worker in sorted(dead):
            self._replace(worker)
        return replies, sorted(dead)

    def _get(self, refs: list) -> list:
        """The answers of ``refs`` (one call for all); None for those whose actor died."""
        ray = self._ray
        lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
        try:
            return ray.get(refs)
        except lost:
            answers = []
            for ref in refs:
                try:
                    answers.append(ray.get(ref))
                except lost:
                    answers.append(None)
            return answers

    def _replace(self, worker: int) -> None:
        if not self._answered[worker]:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                raise RuntimeError(f"Ray env actors died {self._failed_starts} times before answering once: the "
                                   f"actor cannot start (see its traceback above)")
        self._answered[worker] = False
        for ref, (w, slot) in list(self._pending.items()):
            if w == worker:
                del self._pending[ref]
        self.busy.difference_update(self.config.slots_of(worker))
        try:
            self._ray.kill(self._actors[worker], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.restarts += 1
        self._actors[worker] = self._start(worker)

    def close(self) -> None:
        ray = self._ray
        closing = [actor.close.remote() for actor in self._actors]
        try:
            ray.wait(closing, num_returns=len(closing), timeout=10)
        finally:
            for actor in self._actors:
                ray.kill(actor, no_restart=True)
            if self._started_ray:
                ray.shutdown()

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
