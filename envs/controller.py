"""One 7-D action space for every robot: delta tcp position, delta tcp rotation, gripper.

The action ``a`` in [-1, 1]^7 asks the tool-centre point to move by ``a[:3] * pos_scale`` metres
and rotate by the axis-angle ``a[3:6] * rot_scale`` (both in the world frame) during one control
step, and sets the gripper (-1 open, +1 closed). Damped least-squares IK turns the pose change into
joint increments that are integrated into the position actuators' targets, so a zero action holds
the arm where it was commanded (no drift), and redundant arms are pulled toward their home posture
in the Jacobian's null space.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from envs.robots.base import RobotInfo


@dataclass(frozen=True)
class ControllerConfig:
    """Scales and gains of the end-effector controller."""

    pos_scale: float = 0.02  # metres per control step at |a| = 1 (0.4 m/s at 20 Hz)
    rot_scale: float = 0.15  # radians per control step at |a| = 1
    damping: float = 0.02  # DLS damping (lambda), avoids blow-ups near singularities
    max_lead: float = 0.15  # radians the commanded joints may run ahead of the measured ones

    def __post_init__(self) -> None:
        if self.pos_scale <= 0 or self.rot_scale <= 0 or self.damping <= 0:
            raise ValueError("ControllerConfig: pos_scale, rot_scale and damping must be > 0")


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates ``current`` onto ``target`` (3x3 matrices)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (target @ current.T).ravel())
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


class EndEffectorController:
    """Maps 7-D actions onto one robot's joint position actuators (ids resolved once, by name)."""

    def __init__(self, model: mujoco.MjModel, info: RobotInfo, config: ControllerConfig | None = None) -> None:
        self.model, self.info = model, info
        self.config = config or ControllerConfig()
        joints = [model.joint(info.full(j)) for j in info.arm_joints]
        self.qpos_adr = np.array([j.qposadr[0] for j in joints])
        self.dof_adr = np.array([j.dofadr[0] for j in joints])
        self.ranges = np.array([j.range for j in joints])
        self.arm_act = np.array([model.actuator(info.full(a)).id for a in info.arm_actuators])
        self.grip_act = np.array([model.actuator(info.full(g.name)).id for g in info.gripper_actuators])
        self.grip_open = np.array([g.open_ctrl for g in info.gripper_actuators])
        self.grip_closed = np.array([g.closed_ctrl for g in info.gripper_actuators])
        self.site = model.site(info.full(info.tcp_site)).id
        self.home = np.asarray(info.home_qpos, dtype=float)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self.q_cmd = self.home.copy()

    def tcp_pose(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """Tool-centre-point position and 3x3 orientation in the world frame."""
        return data.site_xpos[self.site].copy(), data.site_xmat[self.site].reshape(3, 3).copy()

    def reset(self, data: mujoco.MjData) -> None:
        """Adopt the measured joint positions as the commanded ones and open the gripper."""
        self.q_cmd = data.qpos[self.qpos_adr].copy()
        data.ctrl[self.arm_act] = self.q_cmd
        data.ctrl[self.grip_act] = self.grip_open

    def joint_step(self, data: mujoco.MjData, twist: np.ndarray) -> np.ndarray:
        """Joint increment realising a world-frame twist (dx, dy, dz, rx, ry, rz) at the tcp."""
        mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site)
        jac = np.vstack([self._jacp[:, self.dof_adr], self._jacr[:, self.dof_adr]])
        lam2 = self.config.damping**2
        dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), twist)
        if self.info.nullspace_gain > 0.0:
            pinv = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(6), np.eye(6))
            pull = self.info.nullspace_gain * (self.home - data.qpos[self.qpos_adr])
            dq += (np.eye(len(dq)) - pinv @ jac) @ pull
        return dq

    def apply(self, data: mujoco.MjData, action: np.ndarray) -> None:
        """Write the actuator targets for one control step (the action is already validated)."""
        cfg = self.config
        twist = np.concatenate([action[:3] * cfg.pos_scale, action[3:6] * cfg.rot_scale])
        dq = self.joint_step(data, twist)
        q = data.qpos[self.qpos_adr]
        q_cmd = np.clip(self.q_cmd + dq, q - cfg.max_lead, q + cfg.max_lead)
        self.q_cmd = np.clip(q_cmd, self.ranges[:, 0], self.ranges[:, 1])
        data.ctrl[self.arm_act] = self.q_cmd
        close = 0.5 * (float(action[6]) + 1.0)
        data.ctrl[self.grip_act] = self.grip_open + close * (self.grip_closed - self.grip_open)

    def solve_ik(self, data: mujoco.MjData, pos: np.ndarray, mat: np.ndarray, iters: int = 200) -> np.ndarray:
        """Joint angles placing the tcp at (pos, mat), by DLS iterations on ``data`` (modified)."""
        for _ in range(iters):
            mujoco.mj_kinematics(self.model, data)
            mujoco.mj_comPos(self.model, data)
            cur_p, cur_r = self.tcp_pose(data)
            err = np.concatenate([pos - cur_p, rotation_error(mat, cur_r)])
            if np.linalg.norm(err) < 1e-6:
                break
            err[:3] *= min(1.0, 0.02 / (np.linalg.norm(err[:3]) + 1e-12))  # small steps converge
            err[3:] *= min(1.0, 0.1 / (np.linalg.norm(err[3:]) + 1e-12))
            q = data.qpos[self.qpos_adr] + self.joint_step(data, err)
            data.qpos[self.qpos_adr] = np.clip(q, self.ranges[:, 0], self.ranges[:, 1])
        return data.qpos[self.qpos_adr].copy()
