"""Privileged experts for LIBERO's tasks (``--policy scripted-libero``): LIBERO's counterpart of ``scripted``.

The expert reads the simulator truth LIBERO's side worker ships (``envs/libero/privileged.py``: every
object's pose and the box around its collision geoms, the region sites, the BDDL goal) and acts
through LIBERO's own controller: the 7-D OSC_POSE delta (position in units of 0.05 m, rotation in
units of 0.5 rad, world frame) and the gripper (-1 open, +1 close). Each goal predicate becomes
skills planned from the state at the moment a skill starts: ``On``/``In`` -> pick + place, and
``Open``/``Close``/``TurnOn``/``TurnOff`` -> the skills of ``policies.libero_skills``. A pick
closes the fingers across the object's narrow side, or pinches a bowl's rim when the object is wider
than the hand opens; a place aims the held object (not the hand) at the target's top (``On``) or into
its region (``In``), over the tallest thing on the way. Nothing is written per task.

This module and its two helpers import numpy and ``policies.base`` only (no simeval, no LIBERO).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from policies.base import Batch, EpisodeStart, ObservationSpec, Policy, SlotError
from policies.libero_plan import (CLOSE, OPEN, POS_SCALE, R_DOWN, ROT_SCALE, LiberoExpertConfig, Priv, Skill, Waypoint,
                                  extent, hand_yaw, parent, rot_z, rotation_error, tallest_between, target_region,
                                  wrap_half)
from policies.libero_skills import ARTICULATED, is_open, opening


def arrived(priv: Priv, name: str, target: str) -> bool:
    """Whether ``name`` rests over ``target`` (its centre inside the target's footprint, not below its
    floor): the test a place repeats its pick after. LIBERO's own predicate decides success."""
    box = extent(priv["objects"][name])
    if target in priv["objects"]:
        lo, hi = np.asarray(priv["objects"][target]["world_lo"]), np.asarray(priv["objects"][target]["world_hi"])
        floor = float(lo[2])
    else:
        site = priv["sites"][target]
        half = np.abs(np.asarray(site["mat"])) @ np.asarray(site["size"])
        lo, hi = np.asarray(site["pos"]) - half, np.asarray(site["pos"]) + half
        floor = float(lo[2]) - 0.02
    return bool(np.all(box.center[:2] >= lo[:2]) and np.all(box.center[:2] <= hi[:2]) and box.bottom > floor)


def _open_end(site: Priv, out: np.ndarray, held) -> np.ndarray:
    """How far along ``out`` (horizontal) a held object can go inside a drawer's region site: to the
    region's outer edge less the object's half width (the rest of the drawer is in its cabinet)."""
    mat, size = np.asarray(site["mat"]), np.asarray(site["size"])
    half = float(np.sum(np.abs(out @ mat) * size))
    (d1, w1), (d2, w2) = held.sides
    width = abs(float(out @ d1)) * w1 + abs(float(out @ d2)) * w2
    return out[:2] * max(0.0, half - width / 2 - 0.01)


class LiberoExpert:
    """One episode's expert: ``act(priv)`` per step, planned from the goal in ``priv`` on first call.
    What it saw first (``first``), its skills begun (``log``) and where it is (:meth:`stage`) are kept
    for diagnosis (``scripts/libero_plus_solvability.py`` asks why a variant was not solved)."""

    def __init__(self, config: LiberoExpertConfig | None = None) -> None:
        self.cfg = config or LiberoExpertConfig()
        self.skills: list[Skill] | None = None
        self.queue: list[Waypoint] = []
        self.current: Skill | None = None
        self.tries = 0
        self.steps_in_wp = 0
        self.hold: Waypoint | None = None
        self.log: list[str] = []  # the skills begun, for diagnosis
        self.redone: dict[str, int] = {}  # per place skill, how often it was redone
        self.given_up: list[str] = []  # skills whose check still failed when their retries ran out
        self.first: Priv | None = None  # the privileged state of its first step (the start it planned from)
        self.steps = 0

    # ------------------------------------------------------------------------------ planning
    def _plan(self, priv: Priv) -> list[Skill]:
        """Skills for the goal's predicates: what closes last (after what goes inside it), and a closed
        drawer opened before something is put in it."""
        skills = []
        articulated = priv.get("articulated", {})
        goal = sorted(priv["goal"], key=lambda predicate: predicate[0].lower() in ("close", "turnoff"))
        for predicate in goal:
            op, *args = [a.lower() for a in predicate]
            if op in ("on", "in") and len(args) == 2:
                if op == "in" and args[1] in articulated and not is_open(articulated[args[1]]):
                    skills.append(ARTICULATED["open"](self, args[1], priv))
                skills += self._pick_and_place(args[0], args[1], inside=op == "in")
            elif op in ARTICULATED and len(args) == 1 and args[0] in priv.get("articulated", {}):
                skills.append(ARTICULATED[op](self, args[0], priv))
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
            point[2] = max(box.top - cfg.rim_depth, box.bottom + cfg.finger_clearance)
        yaw = wrap_half(float(np.arctan2(across[1], across[0])) - np.pi / 2)  # fingers close along hand y
        current = hand_yaw(np.asarray(priv["eef_mat"]))
        yaw = current + wrap_half(yaw - current)
        return point, yaw

    def _pick_and_place(self, name: str, target: str, inside: bool) -> list[Skill]:
        """Pick ``name`` and put it on or in ``target``; both again if it did not arrive (a slip)."""
        place = self._place(name, target, inside)
        place.check = lambda priv: arrived(priv, name, target)
        place.redo = lambda: self._pick_and_place(name, target, inside)
        return [self._pick(name), place]

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
            # the empty hand's way there: over whatever stands between (not what the object stands on)
            under = {n for n, o in priv["objects"].items()
                     if np.all(point[:2] >= o["world_lo"][:2]) and np.all(point[:2] <= o["world_hi"][:2])}
            travel = max(above[2], tallest_between(priv, eef, above, skip={name} | under) + cfg.hand_clearance)
            if travel > above[2] + 0.02:
                steps.insert(0, Waypoint(np.array([*above[:2], travel]), yaw, OPEN, tol=0.02, max_steps=50))
            if eef[2] < travel - 0.02:  # start from below the way's height: rise first
                steps.insert(0, Waypoint(np.array([*eef[:2], travel]), yaw, OPEN, tol=0.02, max_steps=25))
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
            thing = priv.get("articulated", {}).get(target)
            if thing is not None and thing["joints"][0]["type"] == "slide":  # a drawer: its open end
                center = center + _open_end(priv["sites"][target], opening(thing), box)
            goal_xy = center + offset
            owner = target if target in priv["objects"] else parent(priv, target)
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
    def stage(self) -> str:
        """Where the expert is now: ``done`` (every skill finished; ``done (gave up ...)`` names those whose
        check failed after their last retry), else the skill it is in, with its retries
        (``pick akita_black_bowl_1 (retry 2)``), or ``not started``."""
        if self.skills is None:
            return "not started"
        if self.current is None or (not self.skills and not self.queue):
            return "done" + (f" (gave up {', '.join(self.given_up)})" if self.given_up else "")
        return self.current.name + (f" (retry {self.tries})" if self.tries else "")

    def _next_waypoint(self, priv: Priv) -> Waypoint | None:
        if self.skills is None:
            self.skills = self._plan(priv)
        while not self.queue:
            current = self.current
            failed = current is not None and current.check is not None and not current.check(priv)
            if failed and self.tries >= self.cfg.retries and current.name not in self.given_up:
                self.given_up.append(current.name)  # out of retries: the expert goes on without it
            if failed and self.tries < self.cfg.retries:
                self.tries += 1
                self.log.append(f"retry {current.name}")
                if current.redo is None:
                    self.queue = current.make(priv)
                    break
                redo = current.redo()
                self.redone[redo[-1].name] = self.tries  # the redone place keeps its count of tries
                self.skills[:0] = redo[1:]
                self.current, self.tries, self.queue = redo[0], 0, redo[0].make(priv)
                break
            if not self.skills:
                return None
            self.current = self.skills.pop(0)
            self.tries = self.redone.get(self.current.name, 0) if self.current.redo is not None else 0
            self.log.append(self.current.name)
            self.queue = self.current.make(priv)
        return self.queue[0]

    def act(self, priv: Priv) -> np.ndarray:
        """The next 7-D action for the privileged state ``priv``."""
        if self.first is None:
            self.first = priv
        self.steps += 1
        wp = self._next_waypoint(priv)
        if wp is None:  # every skill done: hold where the last waypoint left the hand
            wp = self.hold
            if wp is None:
                return np.zeros(7)
        else:
            self.hold = Waypoint(wp.pos, wp.yaw, wp.grip, tol=0.0, rot=wp.rot)
        eef, mat = np.asarray(priv["eef_pos"]), np.asarray(priv["eef_mat"])
        pos_err = wp.pos - eef
        rot_err = rotation_error(rot_z(wp.yaw) @ R_DOWN if wp.rot is None else wp.rot, mat)
        action = np.zeros(7)
        action[:3] = self.cfg.gain * pos_err / POS_SCALE
        action[3:6] = self.cfg.gain * rot_err / ROT_SCALE
        for part, cap in ((slice(0, 3), wp.speed), (slice(3, 6), wp.turn)):  # keep the direction when saturating
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


OBSERVERS: list[Callable[[str, LiberoExpert], None]] = []  # told (episode id, expert) as each episode starts


class LiberoExpertPolicy(Policy):
    """The LIBERO experts behind the batched policy contract: one expert per slot, fed the LIBERO
    simulator truth the side worker ships for policies that ask for it (no camera is rendered).
    Each callable in :data:`OBSERVERS` is handed every episode's expert as the episode starts (a study
    in the same process reads its diagnosis afterwards; none by default)."""

    observation_spec = ObservationSpec(cameras=(), privileged=True, privileged_world="libero")

    def __init__(self, config: LiberoExpertConfig | None = None) -> None:
        self.config = config
        self._experts: dict[int, LiberoExpert] = {}

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        for slot, start in zip(slots, starts):
            self._experts[slot] = expert = LiberoExpert(self.config)
            for observer in OBSERVERS:
                observer(start.episode_id, expert)

    def act(self, batch: Batch) -> "list[np.ndarray | SlotError]":
        """One action per slot; a slot whose goal has a predicate no skill serves fails that episode
        alone, with the reason in its record."""
        if batch.privileged is None or any(p is None for p in batch.privileged):
            raise ValueError("the LIBERO expert needs LIBERO's privileged state from the env pool")
        out: list[np.ndarray | SlotError] = []
        for slot, priv in zip(batch.slots, batch.privileged):
            try:
                out.append(self._experts[slot].act(priv).astype(np.float32))
            except ValueError as err:
                out.append(SlotError(str(err)))
        return out
