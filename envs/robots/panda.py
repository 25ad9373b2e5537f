"""The Franka Panda from robosuite's assets, re-actuated with joint position actuators.

robosuite drives the Panda with torque motors and a Python operational-space controller; here the
motors are replaced by position actuators (gains in the manner of MuJoCo Menagerie's Panda) and the
shared end-effector controller computes their targets. Render profiles: ``fast`` keeps only the
collision meshes (about 8x faster on the CPU rasteriser than the visual meshes) and
colours them like the real arm; ``full`` keeps robosuite's visual meshes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco

from envs.robots.base import (GripperActuator, RobotEntry, RobotInfo, add_tcp_and_wrist_camera, enable_gravcomp,
                              set_collision_class)

# joint: kp, kv, force limit (N m)
PANDA_GAINS = {
    "joint1": (2000, 200, 87), "joint2": (2000, 200, 87), "joint3": (2000, 200, 87), "joint4": (2000, 200, 87),
    "joint5": (800, 80, 12), "joint6": (800, 80, 12), "joint7": (800, 80, 12),
}
COLLISION_RGBA = {"link0": (0.9, 0.9, 0.92, 1), "link7": (0.25, 0.25, 0.27, 1), "g_finger": (0.3, 0.3, 0.32, 1)}
DEFAULT_RGBA = (0.93, 0.93, 0.95, 1)


def robosuite_assets() -> Path:
    """robosuite's asset folder, found without importing robosuite (its import is slow and noisy)."""
    found = importlib.util.find_spec("robosuite")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("robosuite is not installed: pip install robosuite==1.5.2 (the Panda's assets come from it)")
    return Path(list(found.submodule_search_locations)[0]) / "models" / "assets"


def _strip_visual_meshes(spec: mujoco.MjSpec) -> None:
    """Drop the visual-only meshes (group 1, no contacts) and colour the collision meshes instead."""
    for geom in list(spec.geoms):
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH and geom.group == 1 and not geom.contype and not geom.conaffinity:
            spec.delete(geom)
    for geom in spec.geoms:
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
            rgba = next((c for key, c in COLLISION_RGBA.items() if key in geom.name), DEFAULT_RGBA)
            geom.rgba = list(rgba)
            geom.material = ""
    used = {g.meshname for g in spec.geoms}
    for mesh in list(spec.meshes):
        if mesh.name not in used:
            spec.delete(mesh)


def build_panda(profile: str = "fast") -> mujoco.MjSpec:
    """robosuite's Panda arm with its parallel gripper, as one spec with our actuators and tcp."""
    assets = robosuite_assets()
    arm = mujoco.MjSpec.from_file(str(assets / "robots" / "panda" / "robot.xml"))
    gripper = mujoco.MjSpec.from_file(str(assets / "grippers" / "panda_gripper.xml"))
    for spec in (arm, gripper):
        spec.compiler.degree = False
    for act in list(arm.actuators):
        arm.delete(act)
    for sensor in list(gripper.sensors):
        gripper.delete(sensor)
    for cam in list(arm.cameras):
        arm.delete(cam)
    arm.attach(gripper, frame=arm.body("right_hand").add_frame(), prefix="g_")
    for joint, (kp, kv, force) in PANDA_GAINS.items():
        act = arm.add_actuator(name=joint, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=kp, kv=kv)
        act.forcerange, act.forcelimited = [-force, force], mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange, act.ctrllimited = list(arm.joint(joint).range), mujoco.mjtLimited.mjLIMITED_TRUE
        arm.joint(joint).armature = 0.1
    # g_eef sits between the fingertips with z out of the gripper; turn it so y is the opening axis.
    add_tcp_and_wrist_camera(arm.body("g_eef"), [0, 0, 0], [0.7071068, 0, 0, 0.7071068])
    if profile == "fast":
        _strip_visual_meshes(arm)
    else:  # draw the visual meshes only: collision geoms go to group 3, which is not rendered
        for geom in arm.geoms:
            if geom.contype or geom.conaffinity:
                geom.group = 3
    set_collision_class(arm)
    for geom in arm.body("link0").geoms:  # the base rests on the table: no contacts to compute
        geom.contype = 0
    enable_gravcomp(arm)
    return arm


PANDA_INFO = RobotInfo(
    name="Panda",
    arm_joints=tuple(f"joint{i}" for i in range(1, 8)),
    arm_actuators=tuple(f"joint{i}" for i in range(1, 8)),
    gripper_actuators=(
        GripperActuator("g_gripper_finger_joint1", open_ctrl=0.04, closed_ctrl=0.0),
        GripperActuator("g_gripper_finger_joint2", open_ctrl=-0.04, closed_ctrl=0.0),
    ),
    gripper_joints=("g_finger_joint1", "g_finger_joint2"),
    gripper_open_width=0.08,
    gripper_open_qpos=(0.04, -0.04),
    home_qpos=(0.0, -0.0719, 0.0, -2.5461, 0.0, 2.4743, 0.7859),  # tcp at (0.3, 0, 0.2), pointing down
    base_pos=(-0.15, 0.0, 0.0),
    reach=0.85,
    nullspace_gain=0.05,
)

PANDA = RobotEntry(info=PANDA_INFO, build=build_panda)
