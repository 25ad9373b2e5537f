"""The rollout loop: episodes from a queue, an env pool, one batched policy call per decision.

Slots take the next pending episode as soon as theirs ends (auto-reset), so no worker idles while
episodes remain. Slots are driven independently: whenever some answer, the policy acts in one
batched call for those that have an observation, each is sent its whole action chunk (which its
worker runs open-loop), and the free ones reset onto the next pending episodes; meanwhile the
workers keep stepping their other slots. An episode's outcome depends only on its spec and the
policy, never on which episodes share a batch, so any number of workers gives the same per-episode
results.

Everything else a run does is an :class:`Observer`: the records log, the progress bar, the video
recorder, ``simeval collect``'s demonstration recorder, a test's kill hook.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from policies.base import Batch, EpisodeStart, Policy, SlotError, per_slot
from simeval.pools import Chunk, Pool, PoolConfig, Reply, Reset, make_pool, policy_threads
from simeval import worlds
from simeval.records import EpisodeRecord, variant_cell
from simeval.suites import EpisodeSpec

MAX_LOSSES = 3  # per episode (worker deaths, lost policy connections): then it is recorded as failed


@dataclass
class Active:
    """A slot's running episode. An observer sets ``frames`` to a list in ``started`` to get the
    episode's agentview frames, one per step (they are rendered only for such episodes)."""

    spec: EpisodeSpec
    started: float
    steps: int = 0
    ready: bool = False  # has an observation to act on
    queue: np.ndarray | None = None  # the rest of a chunk, on the per-step path only
    frames: list[np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    last: Reply | None = None


class Observer:
    """Sees a rollout's episodes start and end, the policy's chunks, and every batch of commands;
    each hook is optional. ``finished`` may fill fields of the record (``video``, ``demo``) before the records log,
    the last observer, writes it."""

    def started(self, slot: int, episode: Active) -> None:
        """An episode starts in ``slot`` (before its reset is sent)."""

    def acted(self, slot: int, episode: Active, images: dict[str, np.ndarray], chunk: np.ndarray) -> None:
        """The policy chose ``chunk`` (H, 7) for ``slot`` on the observation ``images``/``episode.last``."""

    def finished(self, slot: int, episode: Active, record: EpisodeRecord) -> None:
        """An episode ended (or failed): its record, before it is written."""

    def round(self, pool: Pool, index: int) -> None:
        """A batch of commands is about to be sent; ``index`` counts the batches from 0."""

    def close(self) -> None:
        """The rollout is over (or interrupted)."""


@dataclass
class RunOutcome:
    records: list[dict]
    wall_s: float
    env_steps: int
    worker_restarts: int


def rollout(specs: Sequence[EpisodeSpec], policy: Policy, pool_config: PoolConfig,
            observers: Sequence[Observer] = ()) -> RunOutcome:
    """Run ``specs`` to the end, starting them in the order given (``simeval.harness.start_order``);
    every finished episode goes to the observers as it ends."""
    pending = deque(specs)
    active: dict[int, Active] = {}
    losses: dict[str, int] = {}  # episode id -> times it was lost (see lose)
    records: list[dict] = []
    start, env_steps = time.perf_counter(), 0

    def finish(slot: int, success: bool, error: str | None = None) -> None:
        episode = active.pop(slot)
        spec, last = episode.spec, episode.last
        named = worlds.named_object(spec.world, spec.task)
        dimension, level = variant_cell(spec.variant)
        moved = last.first_moved if last else None
        record = EpisodeRecord(
            id=spec.id, task=spec.task, robot=spec.robot, family=worlds.family(spec.world, spec.task),
            perturbation=spec.variant,
            dimension=dimension, level=level, params=episode.info.get("perturbation", {}).get("params", {}),
            seed=spec.seed, success=bool(success and error is None), steps=episode.steps, error=error,
            instruction=last.instruction if last and last.instruction else "",
            wall_s=round(time.perf_counter() - episode.started, 3), named_object=named,
            first_moved=moved, grounded=None if named is None or moved is None else moved == named)
        for observer in observers:
            observer.finished(slot, episode, record)
        records.append(record.to_dict())

    def absorb(reply: Reply) -> None:
        nonlocal env_steps
        episode = active.get(reply.slot)
        if episode is None:
            return
        if reply.error is not None:
            finish(reply.slot, False, reply.error)
            return
        episode.last, episode.ready = reply, True
        if episode.frames is not None:
            episode.frames.extend(reply.frames)
        if reply.info is not None:  # a reset's reply
            episode.info = reply.info
            spec = episode.spec
            policy.reset([reply.slot], [EpisodeStart(spec.id, spec.task, spec.robot, spec.seed)])
            return
        episode.steps += reply.steps
        env_steps += reply.steps
        if reply.ended:
            finish(reply.slot, reply.success)

    def lose(slot: int, reason: str) -> None:
        """The episode in ``slot`` cannot go on through no fault of the policy (its worker died, the
        policy server could not be reached): re-run from scratch, or failed after MAX_LOSSES."""
        spec = active[slot].spec
        losses[spec.id] = losses.get(spec.id, 0) + 1
        if losses[spec.id] >= MAX_LOSSES:
            finish(slot, False, f"{reason} {losses[spec.id]} times running this episode")
        else:
            del active[slot]
            pending.appendleft(spec)  # from scratch, never counted twice

    def bury(dead: list[int]) -> None:
        for worker in dead:
            lost = [s for s in pool.config.slots_of(worker) if s in active]
            sys.stderr.write(f"\nsimeval: warning: env worker {worker} died and was replaced ({pool.restarts} "
                             f"replaced so far); {len(lost)} unfinished episode(s) re-run from scratch\n")
            for slot in lost:
                lose(slot, "worker process died")

    try:
        with policy_threads(pool_config.workers), make_pool(pool_config) as pool:
            batches = 0
            while pending or active:
                # the slots that are not busy get their next command: a chunk from one policy call for
                # those with an observation, a reset onto the next pending episode for the free ones
                idle = [s for s in range(pool.n_slots) if s in pool.live and s not in pool.busy]
                commands: list[tuple[int, Reset | Chunk]] = []
                for slot, chunk in _act(policy, pool, active, idle, finish, lose, observers):
                    episode = active[slot]
                    if pool_config.per_step:  # one step per command, as before chunks ran in the workers
                        episode.queue, chunk = chunk[1:], chunk[:1]
                    episode.ready = False
                    commands.append((slot, Chunk(chunk)))
                for slot in idle:
                    if slot not in active and pending:
                        episode = active[slot] = Active(pending.popleft(), started=time.perf_counter())
                        for observer in observers:
                            observer.started(slot, episode)
                        commands.append((slot, Reset(episode.spec, frames=episode.frames is not None)))
                if commands:
                    for observer in observers:
                        observer.round(pool, batches)
                    batches += 1
                    pool.submit(commands)
                if not pool.waiting:
                    continue
                replies, dead = pool.collect()
                for reply in replies:
                    absorb(reply)
                bury(dead)
            restarts = pool.restarts
    finally:
        for observer in observers:
            observer.close()
    return RunOutcome(records, time.perf_counter() - start, env_steps, restarts)


def _act(policy: Policy, pool: Pool, active: dict[int, Active], slots: list[int], finish, lose,
         observers: Sequence[Observer]) -> list[tuple[int, np.ndarray]]:
    """The chunk to run for each of ``slots`` that has an observation: the rest of a queued chunk, or
    one batched policy call for the slots whose chunk ran out."""
    out, need = [], []
    for slot in slots:
        episode = active.get(slot)
        if episode is None or not episode.ready:
            continue
        if episode.queue is not None and len(episode.queue):
            out.append((slot, episode.queue))
        else:
            need.append(slot)
    if not need:
        return out
    replies = [active[s].last for s in need]
    batch = Batch(slots=need, state=np.stack([r.state for r in replies]), instruction=[r.instruction for r in replies])
    for cam in policy.observation_spec.cameras:
        if cam in pool.config.cameras:
            setattr(batch, cam, np.stack([pool.images[s][cam] for s in need]))
    if policy.observation_spec.privileged:
        batch.privileged = [r.privileged for r in replies]
    if all(r.native is not None for r in replies):
        batch.native = [r.native for r in replies]
    try:
        answer = policy.act(batch)
    except Exception as err:
        for slot in need:
            finish(slot, False, f"policy raised {type(err).__name__}: {err}".splitlines()[0])
        return out
    try:
        rows = per_slot(answer, len(need))
    except ValueError as err:
        for slot in need:
            finish(slot, False, str(err))
        return out
    for slot, chunk in zip(need, rows):
        if isinstance(chunk, SlotError) and chunk.retry:
            lose(slot, chunk.reason)
            continue
        if isinstance(chunk, SlotError):
            finish(slot, False, chunk.reason)
            continue
        if not np.all(np.isfinite(chunk)):
            finish(slot, False, "policy returned a non-finite action")
            continue
        chunk = np.clip(chunk, -1.0, 1.0)
        for observer in observers:
            observer.acted(slot, active[slot], pool.images[slot], chunk)
        out.append((slot, chunk))
    return out
