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
    rot_weight: float = 0.3  # weight of rotation against position (metres per radian) when both can't be met
    limit_margin: float = 0.02  # radians kept from each joint limit; joints there drop out of the solve

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
        # A position actuator pulls with kp * (ctrl - q) - kv * qdot, so a joint moving at qdot lags its
        # target by kv / kp * qdot; leading the target by that much (velocity feed-forward) cancels it.
        gains = model.actuator_gainprm[self.arm_act, 0]
        self.lead_time = -model.actuator_biasprm[self.arm_act, 2] / gains
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

    def joint_step(self, data: mujoco.MjData, twist: np.ndarray, q_ref: np.ndarray) -> np.ndarray:
        """Joint increment from ``q_ref`` realising a world-frame twist (dx, dy, dz, rx, ry, rz) at the tcp.

        Weighted damped least squares: when the twist cannot be met, position wins over rotation; a
        joint that the step would push past its limit is locked and the rest re-solved, so the arm
        slides along its limits instead of stalling against them.
        """
        cfg = self.config
        mujoco.mj_jacSite(self.model, data, self._jacp, self._jacr, self.site)
        weight = np.array([1.0, 1.0, 1.0, cfg.rot_weight, cfg.rot_weight, cfg.rot_weight])
        jac = np.vstack([self._jacp[:, self.dof_adr], self._jacr[:, self.dof_adr]]) * weight[:, None]
        target = twist * weight
        lam2 = cfg.damping**2
        lo, hi = self.ranges[:, 0] + cfg.limit_margin, self.ranges[:, 1] - cfg.limit_margin
        free = np.ones(len(q_ref), dtype=bool)
        dq = np.zeros(len(q_ref))
        for _ in range(3):
            sub = jac[:, free]
            pinv = sub.T @ np.linalg.inv(sub @ sub.T + lam2 * np.eye(6))
            dq[:] = 0.0
            dq[free] = pinv @ target
            if self.info.nullspace_gain > 0.0:
                pull = self.info.nullspace_gain * (self.home - q_ref)[free]
                dq[free] += pull - pinv @ (sub @ pull)
            blocked = free & (((q_ref + dq) > hi) & (dq > 0) | ((q_ref + dq) < lo) & (dq < 0))
            if not blocked.any():
                break
            free &= ~blocked
        dq[~free] = 0.0
        return dq

    def apply(self, data: mujoco.MjData, action: np.ndarray, period: float) -> None:
        """Write the actuator targets for one control step of ``period`` seconds (action validated)."""
        cfg = self.config
        twist = np.concatenate([action[:3] * cfg.pos_scale, action[3:6] * cfg.rot_scale])
        dq = self.joint_step(data, twist, self.q_cmd)
        q = data.qpos[self.qpos_adr]
        q_cmd = np.clip(self.q_cmd + dq, q - cfg.max_lead, q + cfg.max_lead)
        q_cmd = np.clip(q_cmd, self.ranges[:, 0], self.ranges[:, 1])
        velocity = (q_cmd - self.q_cmd) / period
        self.q_cmd = q_cmd
        data.ctrl[self.arm_act] = q_cmd + self.lead_time * velocity
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
            q = data.qpos[self.qpos_adr] + self.joint_step(data, err, data.qpos[self.qpos_adr])
            data.qpos[self.qpos_adr] = np.clip(q, self.ranges[:, 0], self.ranges[:, 1])
        return data.qpos[self.qpos_adr].copy()
