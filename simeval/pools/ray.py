"""The Ray env pool: ``workers`` env actors, on this machine or spread over a Ray cluster.

Each actor (``num_cpus=1``) owns its slots and their envs exactly as a local worker process does
(:class:`SlotRunner`). A command is a Ray task on the slot's actor; an actor runs its tasks one at
a time, in the order they were sent, so a slot's commands never overtake each other. Its reply and
the camera images come back through Ray's object store: numpy arrays, read zero-copy when the actor
is on the driver's node. The policy runs in the driver, where the runner is.

A worker's slots take commands once its actor has started (it answers ``node``). An actor that
dies (``ray.kill``, its process killed, its node lost) is replaced, and the runner re-runs the
episodes it was running from scratch, as with the local pool, on the workers that are up: a
replacement that no node has a CPU for waits, and its slots take nothing meanwhile. Nothing is
waited for unboundedly: with no reply for ``CHECK_S`` the pool asks the cluster which nodes are
alive (:mod:`simeval.pools.ray_cluster`); a worker on a dead node is lost, and a cluster with no
node left for env actors (or none started within ``START_S``) stops the run with
:class:`ClusterLost`. Ray itself is the optional extra ``simeval[ray]``, imported only when this
pool is made.
"""

from __future__ import annotations

import os
import pickle
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from simeval.pools import threads
from simeval.pools.commands import Chunk, PoolConfig, Reply, Reset, SlotRunner
from simeval.pools.ray_cluster import (ClusterLost, Cluster, RayPoolError, check_address, connect,  # noqa: F401
                                       import_ray)

MAX_FAILED_STARTS = 3  # actors that die before answering once: then something is broken, not unlucky
CHECK_S = 5.0  # with no reply for this long, ask the cluster which nodes are alive
START_S = 120.0  # with no worker up, how long to wait for one to start (the cluster's CPUs all taken)


class EnvActor:
    """One worker: its slots, their envs, one command at a time (a Ray actor class)."""

    def __init__(self, config: PoolConfig, slots: list[int]) -> None:
        os.environ.update(threads.WORKER_THREADS)  # before the envs' GL contexts start their threads
        self._runner = SlotRunner(config, slots)

    def run(self, slot: int, command: Reset | Chunk) -> tuple[Reply, dict[str, np.ndarray]]:
        return self._runner.run(slot, command)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """The id of the node it runs on; its answer says the actor is up."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def close(self) -> None:
        self._runner.close()


@dataclass
class _Worker:
    """One env actor as the pool sees it."""

    actor: Any
    starting: Any  # the reference of its node() call until that is answered, then None
    deaths: int  # the dead nodes known when it was started (more by the time it dies: a node loss)
    node: str | None = None
    answered: bool = False  # a command of it was answered


class RayPool:
    """``workers`` env actors x ``slots_per_worker`` slots, behind the same interface as the local pool."""

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        self.n_slots = config.n_slots
        self._ray = import_ray()
        self._started_ray = connect(config.ray_address, config.workers)
        self._cluster = Cluster(self._ray, config.ray_address)
        self._actor_class = self._ray.remote(num_cpus=1)(EnvActor)
        self.images: dict[int, dict[str, np.ndarray]] = {s: {} for s in range(self.n_slots)}
        self.busy: set[int] = set()
        self.live: set[int] = set()  # slots whose actor is up: the only ones that take commands
        self.restarts = 0
        self.measure = False  # benchmarks set it: count the bytes that cross the object store (pickles each)
        self.bytes_returned = 0  # replies and images
        self.bytes_sent = 0  # commands
        self.replies = 0
        self._pending: dict[Any, tuple[int, int]] = {}  # object ref -> (worker, slot)
        self._failed_starts = 0
        self._heard = time.monotonic()  # when a worker last answered (or was up at a check)
        self._workers: list[_Worker] = [self._start(w) for w in range(config.workers)]

    def _start(self, worker: int) -> _Worker:
        actor = self._actor_class.remote(self.config, self.config.slots_of(worker))
        return _Worker(actor, actor.node.remote(), self._cluster.deaths)

    def pid(self, worker: int) -> int:
        return self._ray.get(self._workers[worker].actor.pid.remote())

    def actor(self, worker: int) -> Any:
        return self._workers[worker].actor

    @property
    def waiting(self) -> bool:
        """``collect`` has something to wait for: a command's reply, or a worker starting."""
        return bool(self._pending) or any(w.starting is not None for w in self._workers)

    def submit(self, commands: list[tuple[int, Reset | Chunk]]) -> None:
        for slot, command in commands:
            assert slot not in self.busy and slot in self.live, f"slot {slot} is busy or its actor is not up"
            worker = self.config.worker_of(slot)
            self._pending[self._workers[worker].actor.run.remote(slot, command)] = (worker, slot)
            if self.measure:
                self.bytes_sent += len(pickle.dumps(command))
            self.busy.add(slot)

    def collect(self) -> tuple[list[Reply], list[int]]:
        """Wait until some command is answered or some worker is up; every answer that has come in,
        and the workers that died (replaced already: the caller re-runs their episodes). With no
        answer for ``CHECK_S``, the cluster is checked (:meth:`_check`) and waited on again."""
        ray = self._ray
        while True:
            starting = {w.starting: i for i, w in enumerate(self._workers) if w.starting is not None}
            refs = [*self._pending, *starting]
            if not refs:
                return [], []
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # what has come in already
            if not ready and ray.wait(refs, num_returns=1, timeout=CHECK_S)[0]:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            if ready:
                self._heard = time.monotonic()
                return self._take(ready, starting)
            dead = self._check()
            if dead:
                return [], self._replace_all(dead)

    def _take(self, ready: list, starting: dict[Any, int]) -> tuple[list[Reply], list[int]]:
        replies, dead = [], set()
        for ref, answer in zip(ready, self._get(ready)):
            if ref in starting:
                worker = self._workers[starting[ref]]
                if answer is None:
                    dead.add(starting[ref])
                else:
                    worker.starting, worker.node = None, answer
                    self.live.update(self.config.slots_of(starting[ref]))
                continue
            worker, slot = self._pending.pop(ref)
            if answer is None:
                dead.add(worker)
                continue
            reply, images = answer
            self.busy.discard(slot)
            self._workers[worker].answered = True
            if images:
                self.images[slot] = images
            self.replies += 1
            if self.measure:
                self.bytes_returned += sum(a.nbytes for a in images.values()) + len(pickle.dumps(reply))
            replies.append(reply)
        return replies, self._replace_all(sorted(dead))

    def _get(self, refs: list) -> list:
        """The answers of ``refs`` (one call for all); None for those whose actor died."""
        ray = self._ray
        lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError,
                ray.exceptions.NodeDiedError)
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

    def _check(self) -> list[int]:
        """No answer for ``CHECK_S``: the workers up on nodes that died since (lost), after the
        cluster's own check (:meth:`Cluster.check`: no node left is :class:`ClusterLost`). With no
        worker up for ``START_S``, the CPUs the actors wait for are taken: ClusterLost too."""
        up = [w for w in self._workers if w.starting is None]
        nodes = self._cluster.check()
        dead = [i for i, w in enumerate(self._workers) if w.node is not None and w.node not in nodes.alive]
        if up and len(dead) < len(up):
            self._heard = time.monotonic()
        elif time.monotonic() - self._heard > START_S:
            raise self._cluster.lose(f"no env actor has been up for {START_S:g} s: the {nodes.cpus:g} CPU(s) of its "
                                     f"alive nodes are taken")
        return dead

    def _replace_all(self, dead: list[int]) -> list[int]:
        if dead:
            self._cluster.check()  # a node that died meanwhile is known before the deaths are judged
        for worker in dead:
            self._replace(worker)
        return dead

    def _replace(self, worker: int) -> None:
        old = self._workers[worker]
        if not old.answered and self._cluster.deaths == old.deaths:  # no node died meanwhile: the actor's fault
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                raise RuntimeError(f"Ray env actors died {self._failed_starts} times before answering once: the "
                                   f"actor cannot start (see its traceback above)")
        for ref, (w, _) in list(self._pending.items()):
            if w == worker:
                del self._pending[ref]
        slots = self.config.slots_of(worker)
        self.busy.difference_update(slots)
        self.live.difference_update(slots)
        try:
            self._ray.kill(old.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.restarts += 1
        self._workers[worker] = self._start(worker)

    def close(self) -> None:
        ray = self._ray
        up = [w.actor for w in self._workers if w.starting is None]
        closing = [] if self._cluster.lost else [actor.close.remote() for actor in up]
        try:
            if closing:
                ray.wait(closing, num_returns=len(closing), timeout=10)
        finally:
            for worker in self._workers:
                try:
                    ray.kill(worker.actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone with its node
                    pass
            if self._started_ray:
                ray.shutdown()

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
