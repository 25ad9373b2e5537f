"""The policy contract the harness calls: batched, once per decision, never per environment.

In the manner of LeRobot's ``reset`` / ``select_action`` / ``predict_action_chunk``: the harness
calls ``reset`` for the batch slots that start a new episode and ``act`` with a batch of
observations, and gets back one 7-D action per slot (B, 7) or a chunk of actions per slot
(B, H, 7) that the env workers execute open-loop for H steps before asking that slot again. A
policy that can fail one slot but not the others (a remote policy: one connection per slot) returns
a list instead, one entry per slot: an action, a chunk, or a :class:`SlotError`.
A policy's :class:`ObservationSpec` says what it reads; the env pool renders that and nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


CAMERAS = ("agentview", "wrist")  # the cameras a Batch can carry
PRIVILEGED_WORLDS = ("simeval", "libero")  # whose simulator truth a privileged policy reads


@dataclass(frozen=True)
class ObservationSpec:
    """What a policy reads: the cameras to render, their size, and whether it reads simulator truth.

    ``image_size`` None means the suite's ``image_size``. Rendering is most of an env step's cost,
    so a policy that reads no camera (the scripted experts) gets none rendered. Simulator truth is
    one world's own (``privileged_world``): simeval's worlds' ``privileged_state()`` or the LIBERO
    side worker's (``envs/libero/privileged.py``); a run refuses a policy whose truth its world lacks."""

    cameras: tuple[str, ...] = CAMERAS
    image_size: int | None = None
    privileged: bool = False
    privileged_world: str = "simeval"

    def __post_init__(self) -> None:
        cameras = tuple(self.cameras)
        object.__setattr__(self, "cameras", cameras)
        if any(c not in CAMERAS for c in cameras) or len(set(cameras)) != len(cameras):
            raise ValueError(f"observation spec cameras {cameras!r}: name distinct cameras among {', '.join(CAMERAS)}")
        size = self.image_size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 2048):
            raise ValueError(f"observation spec image_size={size!r}: an integer in 16..2048, or None for the suite's")
        if self.privileged_world not in PRIVILEGED_WORLDS:
            raise ValueError(f"observation spec privileged_world={self.privileged_world!r}: one of "
                             f"{', '.join(PRIVILEGED_WORLDS)}")


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
    native: list[dict[str, Any]] | None = None  # a LIBERO world's own proprioception (LIBERO's robot0_* keys)

    def __len__(self) -> int:
        return len(self.slots)


@dataclass(frozen=True)
class SlotError:
    """No action for one slot. ``reason`` is recorded in the episode's record. With ``retry`` the
    episode is re-run from scratch instead (the policy could not be reached, which says nothing
    about the policy), up to the runner's limit of attempts per episode."""

    reason: str
    retry: bool = False


class Policy(ABC):
    """Maps batches of observations to batches of actions (or action chunks)."""

    observation_spec: ObservationSpec = ObservationSpec()  # what the env pool renders for this policy
    chunk: int = 1  # actions per slot that ``act`` returns (H of its chunks), for whoever serves it

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        """Forget what the given slots did before; a new episode starts in each."""

    @abstractmethod
    def act(self, batch: Batch) -> "np.ndarray | list[np.ndarray | SlotError]":
        """Actions (B, 7) or chunks (B, H, 7) in [-1, 1] for the batch's slots (or a list, see above)."""


def per_slot(actions, n: int) -> "list[np.ndarray | SlotError]":
    """``Policy.act``'s answer for ``n`` slots as one (H, 7) chunk or :class:`SlotError` per slot; a
    ``ValueError`` naming the shape when an array answer has the wrong one."""
    expected = f"expected ({n}, 7) or ({n}, H, 7)"
    if isinstance(actions, list):
        if len(actions) != n:
            raise ValueError(f"policy returned {len(actions)} answers for {n} slots")
        return [a if isinstance(a, SlotError) else _row(a, expected) for a in actions]
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim == 2:
        actions = actions[:, None, :]
    if actions.ndim != 3 or actions.shape[0] != n or actions.shape[2] != 7 or actions.shape[1] < 1:
        raise ValueError(f"policy returned shape {tuple(actions.shape)}; {expected}")
    return list(actions)


def _row(action, expected: str) -> "np.ndarray | SlotError":
    """One slot's action (7,) or chunk (H, 7) as a chunk; a wrong shape fails that slot alone."""
    chunk = np.asarray(action, dtype=np.float64)
    chunk = chunk[None] if chunk.ndim == 1 else chunk
    if chunk.ndim != 2 or chunk.shape[1] != 7 or not len(chunk):
        return SlotError(f"policy returned shape {tuple(np.shape(action))} for one slot; {expected}")
    return chunk
