"""What the LIBERO expert plans with: its config, waypoints and skills, and the geometry of LIBERO's scene
as the side worker describes it (``envs/libero/privileged.py``) and of LIBERO's controller (OSC_POSE).

Imports numpy only (no simeval, no LIBERO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

OPEN, CLOSE = -1.0, 1.0
POS_SCALE, ROT_SCALE = 0.05, 0.5  # LIBERO's OSC_POSE: an action of 1 is 0.05 m / 0.5 rad
# LIBERO's eef site at the start, pointing down: its x axis (the fingers' closing direction) along world y
R_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
Priv = dict[str, Any]


@dataclass(frozen=True)
class LiberoExpertConfig:
    """The expert's few numbers (metres, steps); every per-task quantity comes from the scene."""

    hand_opening: float = 0.07  # widest side the fingers close across (the Panda opens to 0.08)
    rim_inset: float = 0.012  # a rim pinch: how far inside the object's outline the fingers close
    rim_depth: float = 0.02  # ... and how far below its top
    grasp_depth: float = 0.03  # a tall object is held this far below its top
    finger_clearance: float = 0.015  # the lowest grasp: fingertips this far above the object's bottom
    approach: float = 0.08  # pre-grasp height above the grasp point
    clearance: float = 0.05  # the held object's bottom over anything it is carried across
    hand_clearance: float = 0.04  # the empty hand's tcp over anything it passes
    release_gap: float = 0.015  # the held object's bottom over the target's top at release (On)
    gain: float = 1.0  # fraction of the remaining error commanded per step
    retries: int = 2  # re-grasps of an object that did not come up

    def __post_init__(self) -> None:
        for name in ("hand_opening", "approach", "clearance", "gain"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LiberoExpertConfig.{name}={getattr(self, name)!r}: must be > 0")
        if not 0 <= self.retries <= 10:
            raise ValueError(f"LiberoExpertConfig.retries={self.retries!r}: 0..10")


@dataclass
class Waypoint:
    """A tcp target; done within ``tol`` (m) after ``min_steps``, or at ``max_steps``."""

    pos: np.ndarray
    yaw: float
    grip: float
    tol: float = 0.01
    min_steps: int = 0
    max_steps: int = 40
    speed: float = 1.0  # cap on the position action's largest component
    turn: float = 1.0  # cap on the rotation action's largest component
    rot: np.ndarray | None = None  # a full target orientation instead of the downward hand at ``yaw``


@dataclass
class Skill:
    name: str
    make: Callable[[Priv], list[Waypoint]]
    check: Callable[[Priv], bool] | None = None  # re-planned (up to ``retries``) while this fails at the end
    redo: Callable[[], list["Skill"]] | None = None  # what a failed check re-runs instead (a dropped object)


# ------------------------------------------------------------------------------------- geometry
def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def wrap_half(angle: float) -> float:
    """``angle`` modulo pi, in [-pi/2, pi/2): a two-finger grasp is the same turned half a turn."""
    return float((angle + np.pi / 2) % np.pi - np.pi / 2)


def hand_yaw(mat: np.ndarray) -> float:
    """The yaw of a downward hand's orientation ``mat`` (0 = LIBERO's start, fingers closing along y)."""
    m = mat @ R_DOWN.T
    return float(np.arctan2(m[1, 0], m[0, 0]))


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The world-frame rotation vector taking ``current`` to ``target`` (OSC_POSE's delta convention)."""
    r = target @ current.T
    cos = np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)
    angle = float(np.arccos(cos))
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    norm = np.linalg.norm(axis)
    if norm < 1e-9:
        return np.zeros(3)
    return axis / norm * angle


@dataclass(frozen=True)
class Extent:
    """An object's box in the world: centre (of its collision box), top, bottom, and its two
    horizontal sides as (world direction, width)."""

    center: np.ndarray
    bottom: float
    top: float
    sides: tuple[tuple[np.ndarray, float], tuple[np.ndarray, float]]


def extent(obj: Priv) -> Extent:
    mat, lo, hi = np.asarray(obj["mat"]), np.asarray(obj["lo"]), np.asarray(obj["hi"])
    center = np.asarray(obj["pos"]) + mat @ ((lo + hi) / 2)
    up = int(np.argmax(np.abs(mat[2])))  # the body axis nearest the world's vertical
    sides = []
    for axis in (a for a in range(3) if a != up):
        direction = mat[:, axis].copy()
        direction[2] = 0.0
        direction /= max(np.linalg.norm(direction), 1e-9)
        sides.append((direction, float(hi[axis] - lo[axis])))
    return Extent(center, float(obj["world_lo"][2]), float(obj["world_hi"][2]), (sides[0], sides[1]))


def parent(priv: Priv, site: str) -> str | None:
    """The object a region site belongs to (LIBERO names it ``<object>_<region>``)."""
    owners = [name for name in priv["objects"] if site.startswith(name + "_")]
    return max(owners, key=len) if owners else None


def target_region(priv: Priv, target: str) -> tuple[np.ndarray, float, float]:
    """A goal target's centre (x, y), its top (what a held object clears) and its floor (what an
    ``In`` lowers towards), for an object or a region site."""
    if target in priv["objects"]:
        obj = priv["objects"][target]
        box = extent(obj)
        return box.center[:2], box.top, box.top
    site = priv["sites"][target]
    pos, size = np.asarray(site["pos"]), np.asarray(site["size"])
    owner = parent(priv, target)
    top = float(priv["objects"][owner]["world_hi"][2]) if owner else float(pos[2] + size[2])
    return pos[:2], top, float(pos[2] - size[2])


def tallest_between(priv: Priv, start: np.ndarray, end: np.ndarray, skip: set[str], margin: float = 0.04) -> float:
    """The highest top among objects whose footprint (grown by ``margin``) the segment start-end crosses."""
    top = -np.inf
    points = np.linspace(start[:2], end[:2], 25)
    for name, obj in priv["objects"].items():
        if name in skip:
            continue
        lo, hi = np.asarray(obj["world_lo"]) - margin, np.asarray(obj["world_hi"]) + margin
        inside = np.all((points >= lo[:2]) & (points <= hi[:2]), axis=1)
        if inside.any():
            top = max(top, float(obj["world_hi"][2]))
    return top
