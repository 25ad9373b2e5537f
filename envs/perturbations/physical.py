"""Robot initial state and layout: the perturbations that change the physics of an episode."""

from __future__ import annotations

import numpy as np

from envs.objects import DISTRACTORS
from envs.perturbations.base import Context, Episode, Params, rounded, shape_rng, unit_vector

ROBOT_INIT_STEP = 0.1  # radians of joint-space distance per level (LIBERO-Plus: 0.1 .. 0.5)
ROBOT_INIT_TRIES = 64
LAYOUT_SHIFT = 0.01  # metres per level (LIBERO-Plus: about 1 .. 5 cm)
TABLE_FREE = (0.14, 0.56, -0.3, 0.3)  # where distractors may stand (x0, x1, y0, y1)
CLEARANCE = 0.035  # between a distractor and anything else, beyond both footprints


class RobotInit:
    """Initial joint angles = home + a random unit direction x 0.1 .. 0.5 rad, within the joint
    limits, redrawn (deterministically) until the arm starts clear of the table and the objects."""

    name = "robot_init"

    def sample(self, level: int, rng: np.random.Generator, ctx: Context, episode: Episode) -> Params:
        home = np.asarray(ctx.robot.home_qpos)
        lo = np.array([j.range[0] for j in ctx.arm_joints]) + 0.02
        hi = np.array([j.range[1] for j in ctx.arm_joints]) - 0.02
        distance = ROBOT_INIT_STEP * level
        shape = shape_rng(episode.seed, self.name)  # the same directions, in the same order, at every level
        for attempt in range(ROBOT_INIT_TRIES):
            direction = unit_vector(shape, len(home))
            qpos = home + distance * direction
            if np.all((qpos >= lo) & (qpos <= hi)) and ctx.feasible_arm(qpos, episode):
                return {"direction": rounded(direction, 6), "distance": distance, "attempts": attempt + 1}
        raise RuntimeError(f"robot_init:{level}: no collision-free start within {ROBOT_INIT_TRIES} draws")

    def apply(self, ctx: Context, params: Params, episode: Episode) -> None:
        episode.arm_qpos = np.asarray(ctx.robot.home_qpos) + params["distance"] * np.asarray(params["direction"])


def _footprint(ctx: Context, name: str) -> float:
    """Radius of an object's footprint on the table, with room for the gripper around it."""
    obj = ctx.task.scene.object(name)
    return {"cube": 0.05, "cylinder": 0.05, "plate": obj.size[0] + 0.02, "bowl": obj.size[0] + 0.04,
            "button": 0.06, "drawer": 0.13}[obj.kind]


class Layout:
    """Object start positions shifted by 1 .. 5 cm, and 1 .. 5 distractors placed on free table,
    clear of every object (and of an opening drawer's path), so the goal stays unambiguous."""

    name = "layout"

    def sample(self, level: int, rng: np.random.Generator, ctx: Context, episode: Episode) -> Params:
        shape = shape_rng(episode.seed, self.name)
        shifts = {}
        for obj in ctx.task.scene.objects:
            shifts[obj.name] = rounded(rng.uniform(0.8, 1.0) * LAYOUT_SHIFT * level * unit_vector(shape, 2))
        order = shape.permutation(len(DISTRACTORS))[:level]  # a higher level adds to a lower one's set
        return {"shift": shifts, "distractors": [DISTRACTORS[i].name for i in order],
                "placement_seed": int(shape.integers(2**31))}

    def apply(self, ctx: Context, params: Params, episode: Episode) -> None:
        for name, (dx, dy) in params["shift"].items():
            x, y, yaw = episode.layout[name]
            episode.layout[name] = (x + dx, y + dy, yaw)
        keep_out = [(np.array(episode.layout[o.name][:2]), _footprint(ctx, o.name)) for o in ctx.task.scene.objects]
        for obj in ctx.task.scene.objects:
            if obj.kind == "drawer":  # the drawer slides out along its -x: keep its path clear
                x, y, yaw = episode.layout[obj.name]
                out = -np.array([np.cos(yaw), np.sin(yaw)])
                keep_out.append((np.array([x, y]) + out * (obj.size[0] + obj.size[3]), 0.1))
        keep_out.append((np.zeros(2), 0.2))  # the robot's base
        rng = np.random.default_rng(params["placement_seed"])
        x0, x1, y0, y1 = TABLE_FREE
        by_name = {d.name: d for d in DISTRACTORS}
        for name in params["distractors"]:
            item = by_name[name]
            for _ in range(200):
                spot = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
                if all(np.linalg.norm(spot - c) > r + item.radius + CLEARANCE for c, r in keep_out):
                    yaw = float(rng.uniform(-np.pi, np.pi))
                    episode.distractors[name] = (float(spot[0]), float(spot[1]), yaw)
                    keep_out.append((spot, item.radius))
                    break
