"""Privileged experts for LIBERO's tasks (``--policy scripted-libero``): LIBERO's counterpart of ``scripted``.

The expert reads the simulator truth LIBERO's side worker ships (``envs/libero/privileged.py``: every
object's pose and the box around its collision geoms, the region sites, the BDDL goal) and acts
through LIBERO's own controller: the 7-D OSC_POSE delta (position in units of 0.05 m, rotation in
units of 0.5 rad, world frame) and the gripper (-1 open, +1 close). Each goal predicate becomes
skills planned from the state at the moment a skill starts: ``On``/``In`` -> pick + place. A pick
closes the fingers across the object's narrow side, or pinches a bowl's rim when the object is wider
than the hand opens; a place aims the held object (not the hand) at the target's top (``On``) or into
its region (``In``), over the tallest thing on the way. Nothing is written per task.

This module imports numpy and ``policies.base`` only (no simeval, no LIBERO).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from policies.base import Batch, EpisodeStart, ObservationSpec, Policy

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


@dataclass
class Skill:
    name: str
    make: Callable[[Priv], list[Waypoint]]
    check: Callable[[Priv], bool] | None = None  # re-planned (up to ``retries``) while this fails at the end


# ------------------------------------------------------------------------------------- geometry
def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _wrap_half(angle: float) -> float:
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


def _parent(priv: Priv, site: str) -> str | None:
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
    owner = _parent(priv, target)
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


# ------------------------------------------------------------------------------------ the expert
class LiberoExpert:
    """One episode's expert: ``act(priv)`` per step, planned from the goal in ``priv`` on first call."""

    def __init__(self, config: LiberoExpertConfig | None = None) -> None:
        self.cfg = config or LiberoExpertConfig()
        self.skills: list[Skill] | None = None
        self.queue: list[Waypoint] = []
        self.current: Skill | None = None
        self.tries = 0
        self.steps_in_wp = 0
        self.hold: Waypoint | None = None
        self.log: list[str] = []  # the skills begun, for diagnosis

    # ------------------------------------------------------------------------------ planning
    def _plan(self, priv: Priv) -> list[Skill]:
        skills = []
        for predicate in priv["goal"]:
            op, *args = [a.lower() for a in predicate]
            if op in ("on", "in") and len(args) == 2:
                skills += [self._pick(args[0]), self._place(args[0], args[1], inside=op == "in")]
            else:
                raise ValueError(f"the LIBERO expert has no skill for the goal ({' '.join(predicate)})")
        return skills

    def _grasp(self, priv: Priv, name: str) -> tuple[np.ndarray, float]:
        """Where the tcp closes on ``name`` and the hand's yaw there."""
        cfg = self.cfg
        box = extent(priv["objects"][name])
        (d1, w1), (d2, w2) = box.sides
        height = box.top - box.bottom
        if min(w1, w2) <= cfg.hand_opening:  # across the narrow side
            across = d1 if w1 <= w2 else d2
            z = max(box.bottom + cfg.finger_clearance, min(box.bottom + height / 2, box.top - cfg.grasp_depth))
            point = np.array([box.center[0], box.center[1], z])
        else:  # too wide: pinch the rim on the side facing the robot
            across = np.asarray(priv["robot_base"][:2]) - box.center[:2]
            across = np.append(across / max(np.linalg.norm(across), 1e-9), 0.0)
            radius = min(max(w1, w2) / 2, np.hypot(w1, w2) / 2)
            point = box.center + across * (radius - cfg.rim_inset)
            point[2] = box.top - cfg.rim_depth
        yaw = _wrap_half(float(np.arctan2(across[1], across[0])) - np.pi / 2)  # fingers close along hand y
        current = hand_yaw(np.asarray(priv["eef_mat"]))
        yaw = current + _wrap_half(yaw - current)
        return point, yaw

    def _pick(self, name: str) -> Skill:
        cfg = self.cfg

        def make(priv: Priv) -> list[Waypoint]:
            point, yaw = self._grasp(priv, name)
            self._held_yaw, self._start_bottom = yaw, float(priv["objects"][name]["world_lo"][2])
            top = float(priv["objects"][name]["world_hi"][2])
            eef = np.asarray(priv["eef_pos"])
            above = np.array([point[0], point[1], max(top + cfg.approach * 0.5, point[2] + cfg.approach)])
            lift = above.copy()
            lift[2] = max(above[2], point[2] + 0.1)
            steps = [Waypoint(above, yaw, OPEN, tol=0.012, max_steps=60),
                     Waypoint(point, yaw, OPEN, tol=0.006, max_steps=30, speed=0.5),
                     Waypoint(point, yaw, CLOSE, tol=1.0, min_steps=8, max_steps=8),
                     Waypoint(lift, yaw, CLOSE, tol=0.02, max_steps=30, speed=0.6)]
            if eef[2] < above[2] - 0.02:  # start from below the approach height: rise first
                steps.insert(0, Waypoint(np.array([*eef[:2], above[2]]), yaw, OPEN, tol=0.02, max_steps=20))
            return steps

        def lifted(priv: Priv) -> bool:
            return float(priv["objects"][name]["world_lo"][2]) > self._start_bottom + 0.02

        return Skill(f"pick {name}", make, check=lifted)

    def _place(self, name: str, target: str, inside: bool) -> Skill:
        cfg = self.cfg

        def make(priv: Priv) -> list[Waypoint]:
            obj = priv["objects"][name]
            eef = np.asarray(priv["eef_pos"])
            box = extent(obj)
            offset = eef[:2] - box.center[:2]  # the hand's place relative to what it holds
            drop = eef[2] - box.bottom  # how far the object hangs below the tcp
            center, top, floor = target_region(priv, target)
            goal_xy = center + offset
            owner = target if target in priv["objects"] else _parent(priv, target)
            over = tallest_between(priv, eef, np.append(goal_xy, 0.0), skip={name} | ({owner} if owner else set()))
            carry_z = max(eef[2], max(top, over) + cfg.clearance + drop)
            if inside:  # lower into the region, the hand's fingertips no lower than the rim
                release_z = max(floor + cfg.release_gap + drop, top - 0.02, top + cfg.release_gap + drop - 0.08)
            else:
                release_z = top + cfg.release_gap + drop
            yaw = self._held_yaw
            return [Waypoint(np.array([*eef[:2], carry_z]), yaw, CLOSE, tol=0.02, max_steps=25),
                    Waypoint(np.array([*goal_xy, carry_z]), yaw, CLOSE, tol=0.012, max_steps=60, speed=0.8),
                    Waypoint(np.array([*goal_xy, release_z]), yaw, CLOSE, tol=0.008, max_steps=30, speed=0.5),
                    Waypoint(np.array([*goal_xy, release_z]), yaw, OPEN, tol=1.0, min_steps=6, max_steps=6),
                    Waypoint(np.array([*goal_xy, release_z + 0.08]), yaw, OPEN, tol=0.02, max_steps=20)]

        return Skill(f"place {name} {'in' if inside else 'on'} {target}", make)

    # ----------------------------------------------------------------------------- executing
    def _next_waypoint(self, priv: Priv) -> Waypoint | None:
        if self.skills is None:
            self.skills = self._plan(priv)
        while not self.queue:
            current = self.current
            if current is not None and current.check is not None and not current.check(priv) \
                    and self.tries < self.cfg.retries:
                self.tries += 1
                self.log.append(f"retry {current.name}")
                self.queue = current.make(priv)
                break
            if not self.skills:
                return None
            self.current, self.tries = self.skills.pop(0), 0
            self.log.append(self.current.name)
            self.queue = self.current.make(priv)
        return self.queue[0]

    def act(self, priv: Priv) -> np.ndarray:
        """The next 7-D action for the privileged state ``priv``."""
        wp = self._next_waypoint(priv)
        if wp is None:  # every skill done: hold where the last waypoint left the hand
            wp = self.hold
            if wp is None:
                return np.zeros(7)
        else:
            self.hold = Waypoint(wp.pos, wp.yaw, wp.grip, tol=0.0)
        eef, mat = np.asarray(priv["eef_pos"]), np.asarray(priv["eef_mat"])
        pos_err = wp.pos - eef
        rot_err = rotation_error(_rot_z(wp.yaw) @ R_DOWN, mat)
        action = np.zeros(7)
        action[:3] = self.cfg.gain * pos_err / POS_SCALE
        action[3:6] = self.cfg.gain * rot_err / ROT_SCALE
        for part, cap in ((slice(0, 3), wp.speed), (slice(3, 6), 1.0)):  # keep the direction when saturating
            peak = np.abs(action[part]).max()
            if peak > cap:
                action[part] *= cap / peak
        action[6] = wp.grip
        if self.queue and wp is self.queue[0]:
            self.steps_in_wp += 1
            reached = np.linalg.norm(pos_err) < wp.tol and np.linalg.norm(rot_err) < 0.1
            if (reached and self.steps_in_wp >= wp.min_steps) or self.steps_in_wp >= wp.max_steps:
                self.queue.pop(0)
                self.steps_in_wp = 0
        return action


class LiberoExpertPolicy(Policy):
    """The LIBERO experts behind the batched policy contract: one expert per slot, fed the LIBERO
    simulator truth the side worker ships for policies that ask for it (no camera is rendered)."""

    observation_spec = ObservationSpec(cameras=(), privileged=True, privileged_world="libero")

    def __init__(self, config: LiberoExpertConfig | None = None) -> None:
        self.config = config
        self._experts: dict[int, LiberoExpert] = {}

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        for slot in slots:
            self._experts[slot] = LiberoExpert(self.config)

    def act(self, batch: Batch) -> np.ndarray:
        if batch.privileged is None or any(p is None for p in batch.privileged):
            raise ValueError("the LIBERO expert needs LIBERO's privileged state from the env pool")
        return np.stack([self._experts[s].act(p) for s, p in zip(batch.slots, batch.privileged)]).astype(np.float32)
