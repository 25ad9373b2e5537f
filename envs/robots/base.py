"""What the worlds need to know about a robot, whatever its model.

A robot is a function that returns an ``MjSpec`` (attached into the scene under the ``robot/``
prefix) plus a :class:`RobotInfo` record naming its joints, actuators, tool-centre-point site and
wrist camera. The controller (``envs/controller.py``) and the env use only these names, so adding a
robot touches nothing else.

Conventions shared by every robot (so one action means the same on each):
- the ``tcp`` site sits between the finger pads; its z axis points out of the gripper (approach),
  its y axis along the fingers' opening direction;
- ``home_qpos`` holds the arm with the gripper pointing straight down, where the tcp frame equals
  ``R_DOWN`` below (x forward, y right, z down in world).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import mujoco
import numpy as np

PREFIX = "robot/"
# tcp orientation with the gripper pointing down and the fingers opening along world y.
R_DOWN = np.diag([1.0, -1.0, -1.0])

# Collision bits: robot links collide with the world (bit 0) but not with each other.
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1


@dataclass(frozen=True)
class GripperActuator:
    """One gripper actuator and its control values when fully open and fully closed."""

    name: str
    open_ctrl: float
    closed_ctrl: float


@dataclass(frozen=True)
class RobotInfo:
    """Names and constants of one robot model, all without the scene prefix."""

    name: str
    arm_joints: tuple[str, ...]
    arm_actuators: tuple[str, ...]
    gripper_actuators: tuple[GripperActuator, ...]
    gripper_joints: tuple[str, ...]
    gripper_open_width: float  # sum of |finger joint| when fully open (normalises the opening)
    gripper_open_qpos: tuple[float, ...]  # finger joint values when fully open (episodes start open)
    home_qpos: tuple[float, ...]
    base_pos: tuple[float, float, float]
    reach: float  # metres from the base axis that layouts must respect
    tcp_site: str = "tcp"
    wrist_camera: str = "wrist"
    nullspace_gain: float = 0.0  # pulls redundant arms toward home_qpos
    approach_tilt: float = 0.0  # radians the experts lean the approach axis outward (PiPER's wrist needs it)

    def full(self, name: str) -> str:
        """The element's name inside a scene."""
        return PREFIX + name


@dataclass(frozen=True)
class RobotEntry:
    """A registered robot: its info and the builder of its spec for a render profile."""

    info: RobotInfo
    build: Callable[[str], mujoco.MjSpec]


WRIST_OFFSET = (-0.065, 0.0, -0.11)  # camera position in the tcp frame: behind and above the fingertips
WRIST_TILT = np.deg2rad(12.0)  # how far the view leans forward from the approach axis
WRIST_FOVY = 75.0


def add_tcp_and_wrist_camera(body: mujoco.MjsBody, pos: list[float], quat: list[float]) -> None:
    """Add the ``tcp`` site at (pos, quat) in ``body`` and the ``wrist`` camera that follows it.

    The camera sits behind the hand and looks along the approach axis, leaning ``WRIST_TILT``
    forward (toward the tcp's +x); the image's up points back (-x), so the fingertips sit at the
    bottom of the image on every robot, as in LIBERO's eye-in-hand view.
    """
    body.add_site(name="tcp", pos=pos, quat=quat, size=[0.005, 0, 0], rgba=[1, 0, 0, 0], group=3)
    c, s = np.cos(WRIST_TILT), np.sin(WRIST_TILT)
    cam_in_tcp = np.array([[0.0, -c, -s], [-1.0, 0.0, 0.0], [0.0, s, -c]])  # columns: camera x, y, z
    tcp_mat = np.zeros(9)
    mujoco.mju_quat2Mat(tcp_mat, np.asarray(quat, float))
    tcp_mat = tcp_mat.reshape(3, 3)
    cam_quat = np.zeros(4)
    mujoco.mju_mat2Quat(cam_quat, (tcp_mat @ cam_in_tcp).ravel())
    cam_pos = np.asarray(pos, float) + tcp_mat @ np.asarray(WRIST_OFFSET)
    body.add_camera(name="wrist", pos=list(cam_pos), quat=list(cam_quat), fovy=WRIST_FOVY)


def set_collision_class(spec: mujoco.MjSpec) -> None:
    """Make every colliding geom of a robot spec collide with the world but not itself."""
    for geom in spec.geoms:
        if geom.contype or geom.conaffinity:
            geom.contype, geom.conaffinity = ROBOT_CONTYPE, ROBOT_CONAFFINITY


def enable_gravcomp(spec: mujoco.MjSpec) -> None:
    """Compensate gravity on every body, as real arms' controllers do (Menagerie does the same)."""
    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
