"""The LIBERO probe policy (``envs/libero/probe_policy.py``) as a simeval policy: fidelity tests and benchmarks.

Its actions are an exact function of the pixels of both cameras and LIBERO's end-effector position, so
simeval's path and a plain LIBERO loop given the same frames choose bit-identical actions, and any frame
that differs makes the episodes diverge (``tests/test_libero_fidelity.py``, ``scripts/bench_libero.py``).
It reads LIBERO's own ``robot0_eef_pos`` (``Batch.native``), so it runs in LIBERO worlds only.
"""

from __future__ import annotations

import numpy as np

from envs.libero.probe_policy import probe_chunk
from policies.base import Batch, ObservationSpec, Policy

REPLAN = 5  # openpi's LIBERO example's replan_steps: the chunk the workers run before asking again


class LiberoProbePolicy(Policy):
    """(B, 5, 7) chunks from ``probe_chunk`` on each slot's agentview, wrist and ``robot0_eef_pos``."""

    observation_spec = ObservationSpec(cameras=("agentview", "wrist"), image_size=256)
    chunk = REPLAN

    def act(self, batch: Batch) -> np.ndarray:
        if batch.agentview is None or batch.wrist is None:
            raise ValueError("the LIBERO probe policy reads the agentview and wrist cameras; the batch has not both")
        if batch.native is None:
            raise ValueError("the LIBERO probe policy reads LIBERO's robot0_eef_pos: run it in a LIBERO world")
        return np.stack([probe_chunk(batch.agentview[i], batch.wrist[i], batch.native[i]["robot0_eef_pos"], REPLAN)
                         for i in range(len(batch))])
