"""Privileged scripted experts: waypoints through the shared 7-D controller, planned from the goals.

The expert reads the simulator truth (``TabletopEnv.privileged_state()``) and turns each goal
predicate of the task into skills: ``On``/``In`` -> pick + place, ``Lifted`` -> pick + hold,
``Open`` -> hook the handle and pull, ``Pressed`` -> press. One planner serves every task and
robot; the only robot-specific input is how far the robot leans its approach axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from envs.controller import ControllerConfig, rotation_error
from envs.robots.base import R_DOWN
from envs.tasks.predicates import In, Lifted, On, Open, Pressed
from envs.tasks.spec import TaskSpec
from policies.base import Batch, EpisodeStart, ObservationSpec, Policy, SlotError

OPEN, CLOSE = -1.0, 1.0
Priv = dict[str, Any]


@dataclass
class Waypoint:
    """A tcp target the expert servoes to; done within ``tol`` after ``min_steps``, or at ``max_steps``."""

    pos: np.ndarray
    yaw: float
    grip: float
    tol: float = 0.01
    min_steps: int = 0
    max_steps: int = 60
    speed: float = 1.0  # cap on the position action's magnitude (slow for contact-rich moves)
    turn: float = 1.0  # cap on the rotation action's magnitude (slow while holding an object)
    lean: float | None = None  # direction the approach axis leans (None: away from the robot's base)


@dataclass
class Skill:
    """A named list of waypoints made from the state at the moment the skill starts."""

    name: str
    make: Callable[[Priv], list[Waypoint]]
    check: Callable[[Priv], bool] | None = None  # retried (up to ``retries``) while this fails at the end
    retries: int = 2


@dataclass
class ExpertConfig:
    gain: float = 0.8  # fraction of the remaining error commanded per step
    pregrasp_height: float = 0.10
    lift_height: float = 0.12
    rot_tol: float = 0.12
    controller: ControllerConfig = field(default_factory=ControllerConfig)


def _yaw_of(quat: np.ndarray) -> float:
    w, x, y, z = quat
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def target_orientation(yaw: float, tilt: float = 0.0, lean: float = 0.0) -> np.ndarray:
    """The tcp orientation for a grasp at ``yaw`` with the approach axis leaning ``tilt`` toward ``lean``.

    With no tilt it is the gripper-down pose turned by ``yaw`` about world z; the tilt leans the
    approach axis outward along the world direction ``lean`` (radians) and the fingers keep ``yaw``
    about the leaning axis: Rz(lean) R_DOWN Ry(tilt) Rz(lean - yaw).
    """
    c, s = np.cos(tilt), np.sin(tilt)
    tilt_y = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return _rot_z(lean) @ R_DOWN @ tilt_y @ _rot_z(lean - yaw)


def grasp_yaw(priv: Priv, name: str) -> float:
    """Yaw aligning the fingers with the object's faces, closest to pointing away from the robot."""
    obj = priv["objects"][name]
    offset = obj["pos"][:2] - priv["robot_base"][:2]
    radial = float(np.arctan2(offset[1], offset[0]))
    if obj["kind"] != "cube":
        return radial
    face = _yaw_of(obj["quat"])
    options = [face + k * np.pi / 2 for k in range(4)]
    return min(options, key=lambda a: abs(_wrap(a - radial)))


class ScriptedExpert:
    """Expert for one task: call ``reset()`` per episode, then ``act(privileged_state)`` per step."""

    def __init__(self, task: TaskSpec, config: ExpertConfig | None = None) -> None:
        self.task, self.cfg = task, config or ExpertConfig()
        self.reset()

    def reset(self) -> None:
        self.skills: list[Skill] = [s for goal in self.task.goals for s in self._skills_for(goal)]
        self.queue: list[Waypoint] = []
        self.current: Skill | None = None
        self.tries = 0
        self.steps_in_wp = 0
        self.hold: Waypoint | None = None

    # --------------------------------------------------------------------------------- planning
    def _skills_for(self, goal) -> list[Skill]:
        if isinstance(goal, (On, In)):
            return [self._pick(goal.obj), self._place(goal.obj, goal.target, inside=isinstance(goal, In))]
        if isinstance(goal, Lifted):
            return [self._pick(goal.obj, extra_lift=goal.height)]
        if isinstance(goal, Open):
            return [self._pull(goal.obj)]
        if isinstance(goal, Pressed):
            return [self._press(goal.obj)]
        raise ValueError(f"the scripted expert has no skill for goal {goal!r}")

    def _pick(self, name: str, extra_lift: float = 0.0) -> Skill:
        cfg = self.cfg

        def make(priv: Priv) -> list[Waypoint]:
            pos, yaw = priv["objects"][name]["pos"].copy(), grasp_yaw(priv, name)
            self._held_yaw = yaw
            above = pos + [0, 0, cfg.pregrasp_height]
            # lean along the grasp yaw (not the radial direction) so that the fingers stay level
            return [
                Waypoint(above, yaw, OPEN, tol=0.01, max_steps=50, lean=yaw),
                Waypoint(pos + [0, 0, 0.003], yaw, OPEN, tol=0.005, max_steps=40, speed=0.5, lean=yaw),
                Waypoint(pos + [0, 0, 0.003], yaw, CLOSE, tol=1.0, min_steps=6, lean=yaw),
                Waypoint(pos + [0, 0, cfg.lift_height + extra_lift], yaw, CLOSE, tol=0.015, max_steps=40, turn=0.3,
                         lean=yaw),
            ]

        def lifted(priv: Priv) -> bool:
            return bool(priv["objects"][name]["pos"][2] > 0.05)

        return Skill(f"pick {name}", make, check=lifted)

    def _place(self, name: str, target: str, inside: bool) -> Skill:
        cfg = self.cfg

        def make(priv: Priv) -> list[Waypoint]:
            obj, tgt = priv["objects"][name], priv["objects"][target]
            half = obj["size"][0] if obj["kind"] == "cube" else obj["size"][1]
            # keep the object's offset in the hand: aim the object, not the tcp, at the target
            offset = priv["tcp_pos"][:2] - obj["pos"][:2]
            goal_xy = tgt["pos"][:2] + offset
            rim = tgt["size"][1] if inside else 0.0
            release_z = tgt["top"][2] + half + 0.012 + (priv["tcp_pos"][2] - obj["pos"][2])
            carry_z = max(priv["tcp_pos"][2], release_z + rim + 0.06)
            yaw = self._held_yaw
            return [
                Waypoint(np.array([*goal_xy, carry_z]), yaw, CLOSE, tol=0.012, max_steps=80, speed=0.7, turn=0.3,
                         lean=yaw),
                Waypoint(np.array([*goal_xy, release_z]), yaw, CLOSE, tol=0.008, max_steps=40, speed=0.5, lean=yaw),
                Waypoint(np.array([*goal_xy, release_z]), yaw, OPEN, tol=1.0, min_steps=5, lean=yaw),
                Waypoint(np.array([*goal_xy, release_z + 0.08]), yaw, OPEN, tol=0.02, max_steps=30, lean=yaw),
            ]

        return Skill(f"place {name} on {target}", make)

    def _press(self, name: str) -> Skill:
        def make(priv: Priv) -> list[Waypoint]:
            top = priv["objects"][name]["top"].copy()
            yaw = float(np.arctan2(*(top[:2] - priv["robot_base"][:2])[::-1]))
            travel = priv["objects"][name]["size"][1]
            return [
                Waypoint(top + [0, 0, 0.08], yaw, CLOSE, tol=0.012, max_steps=60),
                Waypoint(top + [0, 0, -0.9 * travel], yaw, CLOSE, tol=0.004, max_steps=30, speed=0.5),
                Waypoint(top + [0, 0, -0.9 * travel], yaw, CLOSE, tol=1.0, min_steps=2),
                Waypoint(top + [0, 0, 0.08], yaw, CLOSE, tol=0.02, max_steps=30),
            ]

        return Skill(f"press {name}", make)

    def _pull(self, name: str) -> Skill:
        def make(priv: Priv) -> list[Waypoint]:
            obj = priv["objects"][name]
            gap = obj["gap"].copy()
            yaw_d = _yaw_of(obj["quat"])
            out = np.array([-np.cos(yaw_d), -np.sin(yaw_d), 0.0])  # the drawer slides out along its -x
            travel = obj["size"][3]
            # closed fingers' thin side across the gap; lean (if any) toward the handle, over it
            yaw = float(np.arctan2(-out[1], -out[0]))
            pulled = gap + out * (travel * 1.05)
            return [
                Waypoint(gap + [0, 0, 0.10], yaw, CLOSE, tol=0.01, max_steps=60),
                Waypoint(gap + [0, 0, 0.0], yaw, CLOSE, tol=0.006, max_steps=40, speed=0.5),
                Waypoint(pulled, yaw, CLOSE, tol=0.01, max_steps=60, speed=0.6),
                Waypoint(pulled + [0, 0, 0.10], yaw, CLOSE, tol=0.02, max_steps=30),
            ]

        return Skill(f"open {name}", make)

    # -------------------------------------------------------------------------------- executing
    def _next_waypoint(self, priv: Priv) -> Waypoint | None:
        while not self.queue:
            if self.current is not None and self.current.check is not None and not self.current.check(priv) \
                    and self.tries < self.current.retries:
                self.tries += 1
                self.queue = self.current.make(priv)
                break
            if not self.skills:
                return None
            self.current, self.tries = self.skills.pop(0), 0
            self.queue = self.current.make(priv)
        return self.queue[0]

    def act(self, priv: Priv) -> np.ndarray:
        """The next 7-D action for the privileged state ``priv``."""
        wp = self._next_waypoint(priv)
        if wp is None:  # all skills done: hold still where the last waypoint left us
            wp = self.hold
            if wp is None:
                return np.zeros(7)
        else:
            self.hold = Waypoint(wp.pos, wp.yaw, wp.grip, tol=0.0)
        ctrl = self.cfg.controller
        lean = wp.lean
        if lean is None:
            offset = wp.pos[:2] - priv["robot_base"][:2]
            lean = float(np.arctan2(offset[1], offset[0]))
        target_rot = target_orientation(wp.yaw, priv["approach_tilt"], lean)
        pos_err = wp.pos - priv["tcp_pos"]
        rot_err = rotation_error(target_rot, priv["tcp_mat"])
        action = np.zeros(7)
        action[:3] = self.cfg.gain * pos_err / ctrl.pos_scale
        action[3:6] = self.cfg.gain * rot_err / ctrl.rot_scale
        for part, cap in ((slice(0, 3), wp.speed), (slice(3, 6), wp.turn)):  # keep the direction when saturating
            peak = np.abs(action[part]).max()
            if peak > cap:
                action[part] *= cap / peak
        action[6] = wp.grip
        if self.queue and wp is self.queue[0]:
            self.steps_in_wp += 1
            reached = np.linalg.norm(pos_err) < wp.tol and np.linalg.norm(rot_err) < self.cfg.rot_tol
            if (reached and self.steps_in_wp >= wp.min_steps) or self.steps_in_wp >= wp.max_steps:
                self.queue.pop(0)
                self.steps_in_wp = 0
        return action


@dataclass
class RolloutResult:
    seed: int
    success: bool
    steps: int


def rollout(env, expert: ScriptedExpert, seed: int) -> RolloutResult:
    """Run one episode of ``env`` (a Gymnasium env over ``TabletopEnv``) with the expert."""
    env.reset(seed=seed)
    expert.reset()
    steps, info = 0, {"success": False}
    while True:
        _, _, terminated, truncated, info = env.step(expert.act(env.unwrapped.privileged_state()))
        steps += 1
        if terminated or truncated:
            return RolloutResult(seed, bool(info["success"]), steps)


class ScriptedPolicy(Policy):
    """The scripted experts behind the batched policy contract: one expert per slot, fed the
    privileged state the env pool ships for policies that ask for it."""

    observation_spec = ObservationSpec(cameras=(), privileged=True)  # simulator truth only

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config
        self._experts: dict[int, ScriptedExpert] = {}

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        from envs.tasks.library import get_task

        for slot, start in zip(slots, starts):
            self._experts[slot] = ScriptedExpert(get_task(start.task), self.config)

    def act(self, batch: Batch) -> np.ndarray | list[np.ndarray | SlotError]:
        """(B, 7) actions; a list with a ``SlotError`` for each slot that cannot act (served, one
        client's bad request must not fail the others' slots in its batch)."""
        if batch.privileged is None:
            raise ValueError("the scripted policy needs privileged state from the env pool")
        answers = [self._act_one(s, p) for s, p in zip(batch.slots, batch.privileged)]
        if any(isinstance(a, SlotError) for a in answers):
            return answers
        return np.stack(answers).astype(np.float32)

    def _act_one(self, slot: int, priv: Priv) -> np.ndarray | SlotError:
        expert = self._experts.get(slot)
        if expert is None:
            return SlotError("no episode was started in this slot")
        try:
            return expert.act(priv)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            return SlotError(f"the scripted expert cannot read this privileged state: {type(err).__name__}: {err}"[:300])
