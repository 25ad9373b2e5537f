"""A probe policy for LIBERO fidelity checks: deterministic, cheap, and driven by the pixels it sees.

``probe_chunk`` turns the two camera images and the end-effector position into an action chunk so
that any difference in a frame the policy reads (one pixel's value) changes the actions, and a
changed action moves the arm (and the gripper) enough that the physics diverges visibly within a
few steps. It carries no state: the chunk is a function of its inputs alone.

Bit-identical in both interpreters (simeval's numpy 2, LIBERO's side environment's numpy 1.26):
numpy is used only to take exact integer sums of uint8 pixel blocks (``astype(np.int64).sum()``,
exact whatever the summation order); everything after is Python integer arithmetic and a handful of
IEEE double operations on Python floats, which no numpy version takes part in.

Images are the right way up (LIBERO's raw ``agentview_image[::-1]``), as simeval's batches carry them.
Imports numpy only: simeval loads it as ``envs.libero.probe_policy``, the side scripts as the sibling
module ``probe_policy``.
"""

from __future__ import annotations

import numpy as np

GRID = 4  # each image is cut into GRID x GRID blocks, summed per colour channel
MODULUS = (1 << 61) - 1  # a Mersenne prime: the pixel sums are mixed modulo it
CENTER = (-0.05, 0.0, 1.05)  # a point over LIBERO's tables (world frame, m) the arm is pulled back to
PULL = 6.0  # action per metre away from CENTER (clipped), so the arm wanders but stays in reach
JITTER = 0.8  # the pixel-driven part of each position action
TURN = 0.15  # the pixel-driven rotation actions (small: LIBERO's OSC turns up to 0.5 rad a step)


def block_sums(image: np.ndarray, grid: int = GRID) -> list[int]:
    """The exact sum of every (block, channel) of a (H, W, C) uint8 image, row-major, as Python ints."""
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"probe policy: expected a (H, W, C) uint8 image, got {image.dtype} {image.shape}")
    h, w, channels = image.shape
    rows = [h * i // grid for i in range(grid + 1)]
    cols = [w * j // grid for j in range(grid + 1)]
    return [int(image[rows[i]:rows[i + 1], cols[j]:cols[j + 1], c].astype(np.int64).sum())
            for i in range(grid) for j in range(grid) for c in range(channels)]


def _mix(values: list[int], salt: int) -> int:
    """An integer hash of ``values`` (exact Python ints: the same on every platform and numpy)."""
    acc = (salt * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % MODULUS
    for v in values:
        acc = (acc * 1_000_003 + v + 1) % MODULUS
        acc ^= acc >> 29
    return acc


def _unit(value: int) -> float:
    """An integer mapped onto [-1, 1] in steps of 0.001."""
    return (value % 2001 - 1000) / 1000.0


def _clip(x: float) -> float:
    return -1.0 if x < -1.0 else 1.0 if x > 1.0 else x


def probe_chunk(agentview: np.ndarray, wrist: np.ndarray, eef_pos: np.ndarray, horizon: int = 5) -> np.ndarray:
    """A (horizon, 7) float64 chunk in [-1, 1]: LIBERO's OSC_POSE deltas (x, y, z, rx, ry, rz) and the
    gripper (-1 open, +1 close), each a function of exact pixel sums of both images and of ``eef_pos``."""
    sums = block_sums(agentview) + block_sums(wrist)
    eef = [float(v) for v in np.asarray(eef_pos).reshape(-1)[:3]]
    total = sum(sums)
    rows = []
    for h in range(horizon):
        row = []
        for j in range(3):  # position: a pixel-driven push plus a pull back towards CENTER
            push = _unit(_mix(sums, 7 * h + j))
            row.append(_clip(JITTER * push + PULL * (CENTER[j] - eef[j])))
        for j in range(3, 6):
            row.append(TURN * _unit(_mix(sums, 7 * h + j)))
        # the gripper closes or opens with the pixels (a bit of the scene's brightness), chunk-wide
        row.append(1.0 if (_mix(sums, 1000 + total % 7) >> 7) & 1 else -1.0)
        rows.append(row)
    return np.array(rows, dtype=np.float64)
