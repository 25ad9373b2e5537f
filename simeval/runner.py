"""The rollout loop: episodes from a queue, an env pool, one batched policy call per step.

Slots take the next pending episode as soon as theirs ends (auto-reset), so no worker idles while
episodes remain. Each round: ask the policy for the slots whose action queue is empty (one call for
the whole batch; a chunk of H actions fills a queue for H steps), then in one message per worker
step every ready slot and reset the free ones onto the next pending episodes. An episode's outcome depends only on its spec and the policy, so
any number of workers gives the same per-episode results. Each finished episode is appended at
once to ``episodes.jsonl``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from envs.tasks.library import get_task
from policies.base import Batch, EpisodeStart, Policy
from simeval.pool import EnvPool, PoolConfig, Reply
from simeval.records import cell_key, variant_cell
from simeval.suites import EpisodeSpec
from simeval.video import VideoPolicy, VideoWriter

MAX_WORKER_DEATHS = 2  # per episode: after that it is recorded as failed, with the reason


@dataclass
class Active:
    """A slot's running episode."""

    spec: EpisodeSpec
    started: float
    steps: int = 0
    ready: bool = False  # has an observation to act on
    actions: deque = field(default_factory=deque)
    frames: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    last: Reply | None = None


class Progress:
    """One status line on stderr: episodes done, success so far, episodes per second."""

    def __init__(self, total: int, done: int = 0, successes: int = 0) -> None:
        self.total, self.done, self.successes = total, done, successes
        self.start, self.new, self._shown = time.perf_counter(), 0, 0.0

    def update(self, success: bool) -> None:
        self.done, self.new, self.successes = self.done + 1, self.new + 1, self.successes + int(success)
        now = time.perf_counter()
        if now - self._shown > 0.5 or self.done == self.total:
            self._shown = now
            rate = self.new / max(now - self.start, 1e-9)
            share = self.successes / max(self.done, 1)
            bar = "#" * int(30 * self.done / max(self.total, 1))
            sys.stderr.write(f"\r[{bar:<30}] {self.done}/{self.total} episodes | success {share:.0%} | "
                             f"{rate:.2f} ep/s")
            sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


@dataclass
class RunOutcome:
    records: list[dict]
    wall_s: float
    env_steps: int
    worker_restarts: int


class Observer(Protocol):
    """Sees every step and every finished episode (``simeval collect`` records demonstrations)."""

    def step(self, slot: int, episode: Active, images: dict[str, np.ndarray], action: np.ndarray) -> None: ...

    def finish(self, slot: int, record: dict) -> None: ...


def rollout(specs: list[EpisodeSpec], policy: Policy, pool_config: PoolConfig, out_dir: Path,
            video: VideoPolicy, on_record: Callable[[dict], None], progress: Progress,
            kill_hook: Callable[[EnvPool, int], None] | None = None, observer: Observer | None = None) -> RunOutcome:
    """Run ``specs`` to the end; every finished episode goes to ``on_record`` as it ends."""
    pending = deque(sorted(specs, key=lambda s: (s.task, s.robot, s.variant, s.index)))  # fewer env switches
    active: dict[int, Active] = {}
    deaths: dict[str, int] = {}
    records: list[dict] = []
    writer = VideoWriter() if video.records_frames else None
    start, env_steps, rounds = time.perf_counter(), 0, 0

    def finish(slot: int, success: bool, error: str | None = None) -> None:
        episode = active.pop(slot)
        spec = episode.spec
        dimension, level = variant_cell(spec.variant)
        instruction = episode.last.instruction if episode.last and episode.last.instruction else ""
        target = get_task(spec.task).named_object
        moved = episode.last.first_moved if episode.last else None
        record = {"id": spec.id, "task": spec.task, "robot": spec.robot, "family": get_task(spec.task).family,
                  "perturbation": spec.variant, "dimension": dimension, "level": level,
                  "params": episode.info.get("perturbation", {}).get("params", {}), "seed": spec.seed,
                  "success": bool(success and error is None), "steps": episode.steps, "error": error, "video": None,
                  "instruction": instruction, "wall_s": round(time.perf_counter() - episode.started, 3),
                  "named_object": target, "first_moved": moved,
                  "grounded": None if target is None or moved is None else moved == target}
        cell = cell_key(dimension, level)
        if writer is not None and episode.frames and video.wants(record):
            name = f"{cell.replace(':', '_').replace('+', '-')}_{spec.task}_{spec.robot}_{spec.index:04d}_" \
                   f"{'success' if record['success'] else 'failure'}.mp4"
            record["video"] = f"videos/{name}"
            writer.submit(out_dir / record["video"], episode.frames, instruction, record["success"])
        records.append(record)
        if observer is not None:
            observer.finish(slot, record)
        on_record(record)
        progress.update(record["success"])

    def absorb(replies: list[Reply], resets: bool) -> None:
        nonlocal env_steps
        for reply in replies:
            episode = active.get(reply.slot)
            if episode is None:
                continue
            if reply.error is not None:
                finish(reply.slot, False, reply.error)
                continue
            episode.last, episode.ready = reply, True
            if writer is not None:
                episode.frames.append(pool.images[reply.slot]["agentview"].copy())
            if resets:
                episode.info = reply.info or {}
                spec = episode.spec
                policy.reset([reply.slot], [EpisodeStart(spec.id, spec.task, spec.robot, spec.seed)])
                continue
            episode.steps += 1
            env_steps += 1
            if reply.success or reply.terminated:
                finish(reply.slot, True)
            elif episode.steps >= episode.spec.max_steps:
                finish(reply.slot, False)

    def bury(dead: list[int]) -> None:
        for worker in dead:
            lost = [active[s].spec.id for s in pool.slots_of(worker) if s in active]
            sys.stderr.write(f"\nsimeval: warning: env worker {worker} died and was replaced ({pool.restarts} "
                             f"replaced so far); {len(lost)} unfinished episode(s) re-run from scratch\n")
            for slot in pool.slots_of(worker):
                if slot not in active:
                    continue
                spec = active[slot].spec
                deaths[spec.id] = deaths.get(spec.id, 0) + 1
                if deaths[spec.id] >= MAX_WORKER_DEATHS:
                    finish(slot, False, f"worker process died {deaths[spec.id]} times running this episode")
                else:
                    del active[slot]
                    pending.appendleft(spec)  # from scratch, never counted twice

    with EnvPool(pool_config) as pool:
        try:
            while pending or active:
                # one round: slots without an episode reset onto the next one while the others step
                _act(policy, pool, active, finish)
                commands = [("step", s, e.actions.popleft()) for s, e in active.items() if e.ready and e.actions]
                if observer is not None:
                    for _, slot, action in commands:
                        observer.step(slot, active[slot], pool.images[slot], action)
                for slot in range(pool.n_slots):
                    if slot not in active and pending:
                        spec = pending.popleft()
                        active[slot] = Active(spec, started=time.perf_counter())
                        commands.append(("reset", slot, spec))
                if kill_hook is not None:
                    kill_hook(pool, rounds)
                rounds += 1
                if commands:
                    replies, dead = pool.run(commands)
                    kinds = {slot: kind for kind, slot, _ in commands}
                    absorb([r for r in replies if kinds[r.slot] == "reset"], resets=True)
                    absorb([r for r in replies if kinds[r.slot] == "step"], resets=False)
                    bury(dead)
        finally:
            if writer is not None:
                writer.close()
            progress.close()
        restarts = pool.restarts
    return RunOutcome(records, time.perf_counter() - start, env_steps, restarts)


def _act(policy: Policy, pool: EnvPool, active: dict[int, Active], finish: Callable) -> None:
    """One batched policy call for every ready slot with an empty action queue."""
    need = [s for s, e in active.items() if e.ready and not e.actions]
    if not need:
        return
    replies = [active[s].last for s in need]
    batch = Batch(slots=need, state=np.stack([r.state for r in replies]), instruction=[r.instruction for r in replies])
    cams = pool.config.cameras
    if policy.needs_images and "agentview" in cams and "wrist" in cams:
        batch.agentview = np.stack([pool.images[s]["agentview"] for s in need])
        batch.wrist = np.stack([pool.images[s]["wrist"] for s in need])
    if policy.needs_privileged:
        batch.privileged = [r.privileged for r in replies]
    try:
        actions = np.asarray(policy.act(batch), dtype=np.float64)
    except Exception as err:
        for slot in need:
            finish(slot, False, f"policy raised {type(err).__name__}: {err}".splitlines()[0])
        return
    if actions.ndim == 2:
        actions = actions[:, None, :]
    if actions.ndim != 3 or actions.shape[0] != len(need) or actions.shape[2] != 7 or actions.shape[1] < 1:
        for slot in need:
            finish(slot, False, f"policy returned shape {tuple(actions.shape)}; expected ({len(need)}, 7) or "
                                f"({len(need)}, H, 7)")
        return
    for slot, chunk in zip(need, actions):
        if not np.all(np.isfinite(chunk)):
            finish(slot, False, "policy returned a non-finite action")
        else:
            active[slot].actions.extend(np.clip(chunk, -1.0, 1.0))
