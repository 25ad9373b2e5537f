"""The AgileX PiPER, written by this project from its published kinematics (docs/piper.md).

Every body frame, joint axis, range, mass and actuator gain below is the published chain; only the
visual/collision geometry is ours: capsules and boxes, which render 10-30x faster than meshes on a
CPU rasteriser. ``PIPER_CHAIN`` is data so that the builder reads it top to bottom.
"""

from __future__ import annotations

import mujoco
import numpy as np

from envs.robots.base import (GripperActuator, RobotEntry, RobotInfo, add_tcp_and_wrist_camera, enable_gravcomp,
                              set_collision_class)

# body, parent, pos, quat (w x y z), joint, joint type, axis, range, inertial pos, mass
PIPER_CHAIN: tuple[tuple, ...] = (
    ("link1", "base_link", (0, 0, 0.123), (0.707105, 0, 0, -0.707108), "joint1", "hinge", (0, 0, 1), (-2.618, 2.618), (0.00132, 0.00031, -0.00923), 0.0979),
    ("link2", "link1", (0, 0, 0), (0.499998, 0.5, -0.500002, -0.5), "joint2", "hinge", (0, 0, 1), (0, 3.14), (0.14879, -0.00242, 0.00175), 0.2909),
    ("link3", "link2", (0.28358, 0.028726, 0), (0.998726, 0, 0, 0.0504536), "joint3", "hinge", (0, 0, 1), (-2.697, 0), (-0.09968, 0.03495, 0.00051), 0.2908),
    ("link4", "link3", (-0.24221, 0.068514, 0), (0.544767, -0.544769, -0.450809, 0.450808), "joint4", "hinge", (0, 0, 1), (-1.832, 1.832), (0.00028, -0.00103, -0.00473), 0.1271),
    ("link5", "link4", (0, 0, 0), (0.707105, 0.707108, 0, 0), "joint5", "hinge", (0, 0, 1), (-1.22, 1.22), (0.00009, 0.05668, -0.00196), 0.1447),
    ("link6", "link5", (0, 0.091, 0.0014165), (0, 0, -0.707105, -0.707108), "joint6", "hinge", (0, 0, 1), (-3.14, 3.14), (0.00103, 0.01218, 0.03155), 1.2),
    ("link7", "link6", (0, 0, 0.13503), (1.89468e-08, 1.89468e-08, 0.707108, 0.707105), "joint7", "slide", (0, 0, -1), (0, 0.035), (0, 0.0468, -0.0092), 0.0265),
    ("link8", "link6", (0, 0, 0.13503), (1.89468e-08, -1.89469e-08, -0.707108, 0.707105), "joint8", "slide", (0, 0, 1), (-0.035, 0), (0, -0.0468, -0.0092), 0.0265),
)
BASE_INERTIAL = ((-0.00979, 0.0000018, 0.04101), 0.1625)
# actuator: joint, kp, kv, force range
PIPER_ACTUATORS = (
    ("joint1", 80, 5, 100), ("joint2", 80, 5, 100), ("joint3", 80, 5, 100),
    ("joint4", 40, 5, 100), ("joint5", 10, 1.5, 100), ("joint6", 10, 1.5, 100),
)
GRIPPER_GAINS = (40, 5, 10)  # kp, kv, force range of the single finger actuator (joint7)
TCP_OFFSET = 0.165  # between the finger pads (0.015-0.045 m along the fingers from 0.135), on link6 z

WHITE, DARK, GREY = (0.92, 0.92, 0.9, 1), (0.15, 0.15, 0.17, 1), (0.55, 0.56, 0.6, 1)


def _quat_rotate(quat: tuple, vec: tuple) -> np.ndarray:
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, np.asarray(vec, float), np.asarray(quat, float))
    return out


def _to_child(quat: tuple, pos: tuple, parent_point: tuple) -> list[float]:
    """A point given in the parent frame, expressed in a child frame at (pos, quat)."""
    inv = np.zeros(4)
    mujoco.mju_negQuat(inv, np.asarray(quat, float))
    return list(_quat_rotate(tuple(inv), tuple(np.asarray(parent_point) - np.asarray(pos))))


def _capsule(body: mujoco.MjsBody, a, b, radius: float, rgba) -> None:
    body.add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, fromto=[*a, *b], size=[radius, 0, 0], rgba=rgba)


def _link_geometry(bodies: dict[str, mujoco.MjsBody]) -> None:
    """Primitive shapes that follow the published links (all in each body's own frame)."""
    base = bodies["base_link"]
    base.add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, pos=[0, 0, 0.03], size=[0.055, 0.03, 0], rgba=DARK,
                  contype=0, conaffinity=0)
    _capsule(base, (0, 0, 0.06), (0, 0, 0.1), 0.04, WHITE)
    _capsule(bodies["link1"], (0, 0, -0.02), (0, 0, 0.0), 0.042, WHITE)
    _capsule(bodies["link2"], (0.0, 0, 0), (0.28358, 0.028726, 0), 0.032, WHITE)
    bodies["link2"].add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.04, 0.045, 0], rgba=DARK)
    _capsule(bodies["link3"], (0, 0, 0), (-0.24221, 0.068514, 0), 0.027, WHITE)
    bodies["link3"].add_geom(type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.034, 0.04, 0], rgba=DARK)
    _capsule(bodies["link4"], (0, 0, -0.06), (0, 0, 0.0), 0.026, WHITE)
    _capsule(bodies["link5"], (0, 0, 0), (0, 0.07, 0), 0.027, DARK)
    link6 = bodies["link6"]
    _capsule(link6, (0, 0, 0.0), (0, 0, 0.06), 0.03, WHITE)
    link6.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, 0.105], size=[0.02, 0.045, 0.03], rgba=DARK)


def _finger_geometry(finger: mujoco.MjsBody, pos: tuple, quat: tuple, side: float) -> None:
    """A finger and its pad, placed in link6 coordinates and converted into the finger's frame.

    At joint value 0 both pads meet on link6's z axis; ``side`` (-1 or +1) is the finger's half.
    """
    centre = _to_child(quat, pos, (0, side * 0.008, 0.155))
    half = np.abs(_quat_rotate(_inverse(quat), (0.011, 0.006, 0.028)))
    finger.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=centre, size=list(half), rgba=GREY)
    pad = _to_child(quat, pos, (0, side * 0.0022, 0.165))
    pad_half = np.abs(_quat_rotate(_inverse(quat), (0.012, 0.002, 0.018)))
    finger.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=pad, size=list(pad_half), rgba=DARK,
                    friction=[2.0, 0.01, 0.001], condim=4, name=f"pad{'L' if side < 0 else 'R'}")


def _inverse(quat: tuple) -> tuple:
    inv = np.zeros(4)
    mujoco.mju_negQuat(inv, np.asarray(quat, float))
    return tuple(inv)


def build_piper(profile: str = "fast") -> mujoco.MjSpec:
    """Build the PiPER as its own spec (the render profile does not matter: it is all primitives)."""
    del profile
    spec = mujoco.MjSpec()
    spec.modelname = "piper"
    spec.compiler.degree = False
    base = spec.worldbody.add_body(name="base_link")
    base.ipos, base.mass = list(BASE_INERTIAL[0]), BASE_INERTIAL[1]
    base.explicitinertial = True
    base.inertia = [3e-4, 3e-4, 3e-4]
    bodies = {"base_link": base}
    for name, parent, pos, quat, joint, jtype, axis, rng, ipos, mass in PIPER_CHAIN:
        body = bodies[parent].add_body(name=name, pos=list(pos), quat=list(quat))
        body.explicitinertial = True
        body.ipos, body.mass = list(ipos), mass
        inertia = max(mass * 0.05**2 / 3.0, 2e-5)
        body.inertia = [inertia] * 3
        kind = mujoco.mjtJoint.mjJNT_HINGE if jtype == "hinge" else mujoco.mjtJoint.mjJNT_SLIDE
        body.add_joint(name=joint, type=kind, axis=list(axis), range=list(rng), limited=mujoco.mjtLimited.mjLIMITED_TRUE,
                       frictionloss=0.3 if jtype == "hinge" else 0.0, armature=0.005, damping=0.0)
        bodies[name] = body
    _link_geometry(bodies)
    for finger, side in (("link7", -1.0), ("link8", 1.0)):
        row = next(r for r in PIPER_CHAIN if r[0] == finger)
        _finger_geometry(bodies[finger], row[2], row[3], side)
    link6 = bodies["link6"]
    add_tcp_and_wrist_camera(link6, [0, 0, TCP_OFFSET], [0, 0, 0, 1])  # 180 deg about z: forward = +x at home
    for joint, kp, kv, force in PIPER_ACTUATORS:
        _position_actuator(spec, joint, kp, kv, force, joint)
    kp, kv, force = GRIPPER_GAINS
    _position_actuator(spec, "gripper", kp, kv, force, "joint7")
    spec.add_equality(type=mujoco.mjtEq.mjEQ_JOINT, name1="joint8", name2="joint7", data=[0, -1, 0, 0, 0] + [0] * 6)
    set_collision_class(spec)
    for geom in base.geoms:  # the base rests on the table: no contacts to compute
        geom.contype = 0
    enable_gravcomp(spec)
    return spec


def _position_actuator(spec: mujoco.MjSpec, name: str, kp: float, kv: float, force: float, joint: str) -> None:
    act = spec.add_actuator(name=name, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
    act.set_to_position(kp=kp, kv=kv)
    act.forcerange = [-force, force]
    act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
    joint_row = next((r for r in PIPER_CHAIN if r[4] == joint), None)
    act.ctrlrange = list(joint_row[7])


PIPER_INFO = RobotInfo(
    name="Piper",
    arm_joints=tuple(f"joint{i}" for i in range(1, 7)),
    arm_actuators=tuple(f"joint{i}" for i in range(1, 7)),
    gripper_actuators=(GripperActuator("gripper", open_ctrl=0.035, closed_ctrl=0.0),),
    gripper_joints=("joint7", "joint8"),
    gripper_open_width=0.07,
    gripper_open_qpos=(0.035, -0.035),
    # tcp at (0.28, 0, 0.2), approach axis leaning 40 deg outward (solved with EndEffectorController.solve_ik);
    # the published keyframe `home` (0, 1.57, -1.3485, 0, 0, 0) points the gripper forward instead. With the
    # gripper straight down the wrist (joint5, +/-70 deg) would only reach below 0.1 m, hence the lean.
    home_qpos=(-0.0128, 0.9593, -0.9047, 0.0105, 0.9054, -0.0163),
    base_pos=(0.0, 0.0, 0.0),
    reach=0.62,
    approach_tilt=0.6981,
)

PIPER = RobotEntry(info=PIPER_INFO, build=build_piper)
