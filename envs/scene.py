"""Scene assembly: arena (table, floor, walls, lights, agentview camera) + robot + task objects.

A scene is compiled once per (scene, robot, render profile) in a process and copied for each env;
episodes change it only by writing model and data fields. Render profiles: ``fast`` (no shadows, no
multisampling, primitive or collision geometry: what CPU rasterisers can afford) and ``full``
(shadows and the Panda's visual meshes, for machines with a GPU).
"""

from __future__ import annotations

import copy
from functools import lru_cache

import mujoco
import numpy as np

from envs.objects import add_distractors, add_object
from envs.robots import RobotEntry, get_robot
from envs.robots.base import PREFIX
from envs.tasks.spec import SceneSpec
from envs.textures import TEXTURES

PROFILES = ("fast", "full")
TIMESTEP = 0.002
CONTROL_HZ = 20
SUBSTEPS = int(round(1.0 / (CONTROL_HZ * TIMESTEP)))  # 25 physics steps per control step

# The third-person camera: in front of the robots, looking back at them over the workspace (LIBERO's
# agentview). Perturbations orbit it about SCENE_CENTRE.
SCENE_CENTRE = (0.3, 0.0, 0.05)
AGENTVIEW_POS = (1.0, 0.0, 0.72)
AGENTVIEW_FOVY = 45.0
MAX_RENDER_SIZE = 1024
EXTRA_LIGHTS = 2
BACKGROUND_MATERIALS = ("table_mat", "wall_mat", "floor_mat")


def lookat_quat(pos: tuple[float, float, float], target: tuple[float, float, float]) -> list[float]:
    """Quaternion of a MuJoCo camera at ``pos`` looking at ``target`` with world z up."""
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    z_cam = -forward
    x_cam = np.cross([0.0, 0.0, 1.0], z_cam)
    x_cam /= np.linalg.norm(x_cam)
    y_cam = np.cross(z_cam, x_cam)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([x_cam, y_cam, z_cam]).ravel())
    return list(quat)


def _arena(spec: mujoco.MjSpec, profile: str) -> None:
    spec.option.timestep = TIMESTEP
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.quality.shadowsize = 2048 if profile == "full" else 0
    spec.visual.quality.offsamples = 4 if profile == "full" else 0
    spec.visual.global_.offwidth = spec.visual.global_.offheight = MAX_RENDER_SIZE
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.stat.center, spec.stat.extent = list(SCENE_CENTRE), 1.0

    spec.add_texture(name="floor_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=[0.42, 0.42, 0.45], rgb2=[0.36, 0.36, 0.39], width=64, height=64)
    spec.add_material(name="floor_mat", textures=["", "floor_tex"], texrepeat=[8, 8], reflectance=0.0)
    spec.add_material(name="table_mat", rgba=[0.62, 0.5, 0.38, 1.0], reflectance=0.0)
    spec.add_material(name="wall_mat", rgba=[0.78, 0.8, 0.82, 1.0], reflectance=0.0)

    world = spec.worldbody
    plane = mujoco.mjtGeom.mjGEOM_PLANE
    box = mujoco.mjtGeom.mjGEOM_BOX
    world.add_geom(name="floor", type=plane, pos=[0, 0, -0.75], size=[3, 3, 0.05], material="floor_mat")
    world.add_geom(name="table", type=box, pos=[0.25, 0, -0.025], size=[0.55, 0.6, 0.025], material="table_mat",
                   friction=[1.0, 0.005, 0.0001])
    for sx in (-1, 1):
        for sy in (-1, 1):
            world.add_geom(type=box, pos=[0.25 + sx * 0.5, sy * 0.55, -0.4], size=[0.03, 0.03, 0.35],
                           material="table_mat", contype=0, conaffinity=0)
    world.add_geom(name="wall_back", type=box, pos=[-0.9, 0, 0.5], size=[0.02, 2.0, 1.25], material="wall_mat",
                   contype=0, conaffinity=0)
    for sy in (-1, 1):
        world.add_geom(name=f"wall_{'left' if sy > 0 else 'right'}", type=box, pos=[0.6, sy * 1.6, 0.5],
                       size=[1.5, 0.02, 1.25], material="wall_mat", contype=0, conaffinity=0)
    shadows = profile == "full"
    world.add_light(name="key", pos=[0.6, 0.6, 1.8], dir=[-0.25, -0.3, -1.0], diffuse=[0.6, 0.6, 0.6],
                    specular=[0.1, 0.1, 0.1], castshadow=shadows)
    world.add_light(name="fill", pos=[0.8, -0.8, 1.5], dir=[-0.3, 0.4, -1.0], diffuse=[0.25, 0.25, 0.25],
                    specular=[0, 0, 0], castshadow=False)
    for k in range(1, EXTRA_LIGHTS + 1):  # switched on by the light perturbation
        world.add_light(name=f"extra_{k}", pos=[0.3, 0.0, 1.5], dir=[0, 0, -1], diffuse=[0.3, 0.3, 0.3],
                        specular=[0, 0, 0], castshadow=False, active=False)
    world.add_camera(name="agentview", pos=list(AGENTVIEW_POS), quat=lookat_quat(AGENTVIEW_POS, SCENE_CENTRE),
                     fovy=AGENTVIEW_FOVY)
    for texture in TEXTURES:  # the background perturbation's set, compiled once
        image = texture.make()
        tex = spec.add_texture(name=texture.name, type=mujoco.mjtTexture.mjTEXTURE_2D, width=image.shape[1],
                               height=image.shape[0], nchannel=3)
        tex.data = image.tobytes()


def build_spec(scene: SceneSpec, robot: RobotEntry, profile: str = "fast") -> mujoco.MjSpec:
    """The full scene as an uncompiled spec."""
    if profile not in PROFILES:
        raise ValueError(f"unknown render profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    spec = mujoco.MjSpec()
    spec.compiler.degree = False
    spec.modelname = f"{scene.name}-{robot.info.name}"
    _arena(spec, profile)
    frame = spec.worldbody.add_frame(pos=list(robot.info.base_pos))
    spec.attach(robot.build(profile), frame=frame, prefix=PREFIX)
    for obj in scene.objects:
        add_object(spec, obj)
    add_distractors(spec)
    return spec


@lru_cache(maxsize=32)
def _compiled(scene: SceneSpec, robot_name: str, profile: str) -> mujoco.MjModel:
    return build_spec(scene, get_robot(robot_name), profile).compile()


def compile_scene(scene: SceneSpec, robot_name: str, profile: str = "fast") -> mujoco.MjModel:
    """A private copy of the scene's model, compiled once per process (episodes write into the copy)."""
    return copy.deepcopy(_compiled(scene, robot_name, profile))
