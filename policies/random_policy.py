"""Uniformly random actions: a floor for success rates and a test policy for the harness."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from policies.base import Batch, EpisodeStart, ObservationSpec, Policy


class RandomPolicy(Policy):
    """Random actions from a generator per episode, seeded by the episode's seed, so a slot's
    actions do not depend on which other episodes share the batch (or the number of workers)."""

    observation_spec = ObservationSpec(cameras=())  # reads nothing

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._rngs: dict[int, np.random.Generator] = {}

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        for slot, start in zip(slots, starts):
            self._rngs[slot] = np.random.default_rng(start.seed)

    def act(self, batch: Batch) -> np.ndarray:
        return np.stack([self._rngs[s].uniform(-self.scale, self.scale, 7) for s in batch.slots]).astype(np.float32)
