"""``simeval collect``: demonstrations from the scripted experts, on the env pool, for training.

Each episode is executed with the expert's action plus Gaussian noise (DART-style: the data then
shows how to recover from small errors) while the clean expert action is recorded as the label.
On-disk format, one directory per dataset:

    DIR/run.json                 what was asked (suite, noise), as for ``simeval run``
    DIR/episodes.jsonl           one record per episode, the same fields as a run's
    DIR/demos/<name>.npz         one compressed file per kept episode (successes by default):
        agentview  uint8   [T, H, W, 3]   third-person image the action was chosen on
        wrist      uint8   [T, H, W, 3]   wrist image
        state      float32 [T, 8]         proprioceptive state (see envs/env.py)
        action     float32 [T, 7]         clean expert action: the training label
        executed   float32 [T, 7]         the noisy action that was actually executed
        meta       str (JSON)             id, task, robot, variant, seed, instruction, success, steps
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from policies.base import Batch, EpisodeStart, ObservationSpec, Policy
from policies.scripted import ScriptedPolicy
from simeval.files import write_bytes, write_text
from simeval.harness import RunRequest, run_episodes
from simeval.records import EpisodeRecord
from simeval.runner import Active, Observer


class NoisyExpert(Policy):
    """The scripted experts with Gaussian noise on the executed arm action (not on the gripper);
    the clean action of each slot's last call is kept in ``clean`` for the recorder.

    ``rot_noise`` (default: ``noise``) is the std on the three rotation dims: rotation noise makes
    the expert's labels chase every random twist of the wrist, which a policy cannot see at 64 px."""

    observation_spec = ObservationSpec(privileged=True)  # the recorder needs both cameras too

    def __init__(self, noise: float, rot_noise: float | None = None) -> None:
        self.expert, self.noise = ScriptedPolicy(), noise
        self.std = np.array([noise] * 3 + [noise if rot_noise is None else rot_noise] * 3)
        self.clean: dict[int, np.ndarray] = {}
        self._rngs: dict[int, np.random.Generator] = {}

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        self.expert.reset(slots, starts)
        for slot, start in zip(slots, starts):
            self._rngs[slot] = np.random.default_rng([start.seed, 7])

    def act(self, batch: Batch) -> np.ndarray:
        clean = self.expert.act(batch)
        noisy = clean.copy()
        for row, slot in enumerate(batch.slots):
            self.clean[slot] = clean[row].copy()
            noisy[row, :6] += self._rngs[slot].normal(0.0, 1.0, 6) * self.std
        return np.clip(noisy, -1.0, 1.0)


@dataclass
class _Buffer:
    episode: Active
    agentview: list
    wrist: list
    state: list
    action: list
    executed: list


class DemoRecorder(Observer):
    """Buffers each slot's steps and writes an episode's ``.npz`` when it ends (the policy acts every
    step, so each chunk is one action)."""

    def __init__(self, policy: NoisyExpert, folder: Path, keep_failures: bool) -> None:
        self.policy, self.folder, self.keep_failures = policy, folder, keep_failures
        self.buffers: dict[int, _Buffer] = {}

    def acted(self, slot: int, episode: Active, images: dict[str, np.ndarray], chunk: np.ndarray) -> None:
        action = chunk[0]
        buffer = self.buffers.get(slot)
        if buffer is None or buffer.episode is not episode:  # a new episode (or a re-run) in this slot
            buffer = self.buffers[slot] = _Buffer(episode, [], [], [], [], [])
        buffer.agentview.append(images["agentview"].copy())
        buffer.wrist.append(images["wrist"].copy())
        buffer.state.append(np.asarray(episode.last.state, np.float32))
        buffer.action.append(self.policy.clean[slot].astype(np.float32))
        buffer.executed.append(np.asarray(action, np.float32))

    def finished(self, slot: int, episode: Active, record: EpisodeRecord) -> None:
        buffer = self.buffers.pop(slot, None)
        if buffer is None or buffer.episode is not episode or not buffer.action or not (record.success or self.keep_failures):
            return
        meta = {k: getattr(record, k) for k in ("id", "task", "robot", "perturbation", "seed", "instruction", "success",
                                                "steps")}
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", record.id)
        self.folder.mkdir(parents=True, exist_ok=True)  # only now: the run directory was checked first
        data = io.BytesIO()  # then written whole: a full disk leaves no half .npz (nor zipfile's noise)
        np.savez_compressed(data, agentview=np.stack(buffer.agentview), wrist=np.stack(buffer.wrist),
                            state=np.stack(buffer.state), action=np.stack(buffer.action),
                            executed=np.stack(buffer.executed), meta=np.array(json.dumps(meta)))
        write_bytes(self.folder / f"{name}.npz", data.getvalue())
        record.demo = f"demos/{name}.npz"


def collect(request: RunRequest, noise: float, keep_failures: bool = False, rot_noise: float | None = None) -> dict:
    """Collect the suite's episodes into ``request.out``; a summary of what was written."""
    rot_noise = noise if rot_noise is None else rot_noise
    for flag, value in (("--noise", noise), ("--rot-noise", rot_noise)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{flag} must be within 0..1 (std of the action noise), got {value}")
    policy = NoisyExpert(noise, rot_noise)
    recorder = DemoRecorder(policy, request.out / "demos", keep_failures)
    records = run_episodes(request, policy, [recorder]).records
    demos = sorted(p.name for p in (request.out / "demos").glob("*.npz"))  # none: no folder, no match
    summary = {"episodes": len(records), "successes": sum(r["success"] for r in records), "demos": len(demos),
               "frames": sum(r["steps"] for r in records if r["success"] or keep_failures), "noise": noise,
               "rot_noise": rot_noise,
               "image_size": request.suite.image_size}
    write_text(request.out / "dataset.json", json.dumps(summary, indent=1) + "\n")
    return summary
