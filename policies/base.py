"""The policy contract the harness calls: batched, once per step, never per environment.

In the manner of LeRobot's ``reset`` / ``select_action`` / ``predict_action_chunk``: the harness
calls ``reset`` for the batch slots that start a new episode and ``act`` with a batch of
observations, and gets back one 7-D action per slot (B, 7) or a chunk of actions per slot
(B, H, 7) that it executes open-loop for H steps before asking that slot again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass
class EpisodeStart:
    """What a policy may know when an episode starts in a slot."""

    episode_id: str
    task: str
    robot: str
    seed: int


@dataclass
class Batch:
    """Observations of the slots that need an action now (B of them)."""

    slots: list[int]
    state: np.ndarray  # (B, 8) float32
    instruction: list[str]
    agentview: np.ndarray | None = None  # (B, H, W, 3) uint8
    wrist: np.ndarray | None = None  # (B, H, W, 3) uint8
    privileged: list[dict[str, Any]] | None = None  # simulator truth, for privileged (scripted) policies

    def __len__(self) -> int:
        return len(self.slots)


class Policy(ABC):
    """Maps batches of observations to batches of actions (or action chunks)."""

    needs_privileged: bool = False  # ask the env pool for simulator state
    needs_images: bool = True  # ask the env pool for camera images

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        """Forget what the given slots did before; a new episode starts in each."""

    @abstractmethod
    def act(self, batch: Batch) -> np.ndarray:
        """Actions (B, 7) or chunks (B, H, 7) in [-1, 1] for the batch's slots."""
