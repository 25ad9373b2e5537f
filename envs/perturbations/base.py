"""What every perturbation dimension shares: its context, the episode it edits, its seeding.

A dimension is a pure ``sample(level, rng, ctx) -> params`` (JSON-able, reported in ``info``) and
an ``apply(ctx, params, episode)`` that writes model fields or edits the episode set-up the env is
about to place. ``rng`` is derived from (seed, dimension, level) alone, so any variant of any
episode can be recreated exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import mujoco
import numpy as np

from envs.perturbations.variant import DIMENSIONS
from envs.robots.base import RobotInfo
from envs.scene import BACKGROUND_MATERIALS, EXTRA_LIGHTS
from envs.tasks.spec import TaskSpec
from envs.textures import TEXTURES

Params = dict[str, Any]


def dimension_rng(seed: int, dimension: str, level: int) -> np.random.Generator:
    """The generator of one dimension at one level for one episode seed (magnitudes)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, DIMENSIONS.index(dimension), level])


def shape_rng(seed: int, dimension: str) -> np.random.Generator:
    """The level-independent generator of one dimension for one episode seed (signs, directions,
    choices): the same seed at a higher level is the same change made larger, which is what makes
    the levels monotone for every seed and not only on average."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, DIMENSIONS.index(dimension), 1000])


@dataclass
class Episode:
    """The set-up of one episode, edited by the perturbations before the env places it."""

    seed: int
    layout: dict[str, tuple[float, float, float]]  # object -> (x, y, yaw)
    arm_qpos: np.ndarray
    instruction: str
    distractors: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # placed ones
    image_noise: Params | None = None  # corruption of the agentview image, applied per observation


class Context:
    """Ids and nominal values of every model field a perturbation may write, captured once.

    ``restore()`` puts the nominal values back, so that episodes never accumulate changes.
    """

    def __init__(self, model: mujoco.MjModel, robot: RobotInfo, task: TaskSpec, image_width: int,
                 feasible_arm: Callable[[np.ndarray, "Episode"], bool]) -> None:
        self.model, self.robot, self.task, self.image_width = model, robot, task, image_width
        self.feasible_arm = feasible_arm
        self.camera = model.camera("agentview").id
        self.lights = {name: model.light(name).id for name in ("key", "fill")}
        self.extra_lights = [model.light(f"extra_{k}").id for k in range(1, EXTRA_LIGHTS + 1)]
        self.materials = {name: model.material(name).id for name in BACKGROUND_MATERIALS}
        self.textures = {t.name: model.texture(t.name).id for t in TEXTURES}
        self.arm_joints = [model.joint(robot.full(j)) for j in robot.arm_joints]
        self.nominal = self._snapshot()

    def _snapshot(self) -> dict[str, np.ndarray]:
        m = self.model
        return {
            "cam_pos": m.cam_pos.copy(), "cam_quat": m.cam_quat.copy(), "cam_fovy": m.cam_fovy.copy(),
            "light_pos": m.light_pos.copy(), "light_dir": m.light_dir.copy(), "light_diffuse": m.light_diffuse.copy(),
            "light_specular": m.light_specular.copy(), "light_active": m.light_active.copy(),
            "headlight_ambient": m.vis.headlight.ambient.copy(), "headlight_diffuse": m.vis.headlight.diffuse.copy(),
            "mat_rgba": m.mat_rgba.copy(), "mat_texid": m.mat_texid.copy(), "mat_texrepeat": m.mat_texrepeat.copy(),
        }

    def restore(self) -> None:
        m, n = self.model, self.nominal
        m.cam_pos[:], m.cam_quat[:], m.cam_fovy[:] = n["cam_pos"], n["cam_quat"], n["cam_fovy"]
        m.light_pos[:], m.light_dir[:] = n["light_pos"], n["light_dir"]
        m.light_diffuse[:], m.light_specular[:] = n["light_diffuse"], n["light_specular"]
        m.light_active[:] = n["light_active"]
        m.vis.headlight.ambient[:], m.vis.headlight.diffuse[:] = n["headlight_ambient"], n["headlight_diffuse"]
        m.mat_rgba[:], m.mat_texid[:], m.mat_texrepeat[:] = n["mat_rgba"], n["mat_texid"], n["mat_texrepeat"]


def unit_vector(rng: np.random.Generator, dim: int) -> np.ndarray:
    vec = rng.normal(size=dim)
    return vec / np.linalg.norm(vec)


def rounded(values, digits: int = 4) -> list[float]:
    return [round(float(v), digits) for v in np.ravel(values)]
