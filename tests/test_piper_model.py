"""The project's PiPER model against the published kinematic chain (docs/piper.md).

The chain is transcribed here a second time, on purpose, and evaluated with plain homogeneous
transforms, so that the test checks the MJCF the project builds rather than reusing its tables.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from envs.robots.piper import PIPER_INFO, build_piper

# body, parent, pos, quat (w x y z), joint type, axis, range -- as published
PUBLISHED = [
    ("link1", "base_link", (0, 0, 0.123), (0.707105, 0, 0, -0.707108), "hinge", (0, 0, 1), (-2.618, 2.618)),
    ("link2", "link1", (0, 0, 0), (0.499998, 0.5, -0.500002, -0.5), "hinge", (0, 0, 1), (0, 3.14)),
    ("link3", "link2", (0.28358, 0.028726, 0), (0.998726, 0, 0, 0.0504536), "hinge", (0, 0, 1), (-2.697, 0)),
    ("link4", "link3", (-0.24221, 0.068514, 0), (0.544767, -0.544769, -0.450809, 0.450808), "hinge", (0, 0, 1),
     (-1.832, 1.832)),
    ("link5", "link4", (0, 0, 0), (0.707105, 0.707108, 0, 0), "hinge", (0, 0, 1), (-1.22, 1.22)),
    ("link6", "link5", (0, 0.091, 0.0014165), (0, 0, -0.707105, -0.707108), "hinge", (0, 0, 1), (-3.14, 3.14)),
    ("link7", "link6", (0, 0, 0.13503), (1.89468e-08, 1.89469e-08, 0.707108, 0.707105), "slide", (0, 0, -1),
     (0, 0.035)),
    ("link8", "link6", (0, 0, 0.13503), (1.89468e-08, -1.89469e-08, -0.707108, 0.707105), "slide", (0, 0, 1),
     (-0.035, 0)),
]


def _quat_to_mat(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _axis_angle(axis, angle) -> np.ndarray:
    k = np.asarray(axis, float)
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def published_fk(q: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """World pose (position, rotation) of every link for joint vector q (6 arm joints + 2 fingers)."""
    poses = {"base_link": (np.zeros(3), np.eye(3))}
    for (body, parent, pos, quat, kind, axis, _), value in zip(PUBLISHED, q):
        p_pos, p_rot = poses[parent]
        rot = p_rot @ _quat_to_mat(quat)
        origin = p_pos + p_rot @ np.asarray(pos, float)
        if kind == "hinge":
            rot = rot @ _axis_angle(axis, value)
        else:
            origin = origin + rot @ (np.asarray(axis, float) * value)
        poses[body] = (origin, rot)
    return poses


@pytest.fixture(scope="module")
def piper():
    model = build_piper().compile()
    return model, mujoco.MjData(model)


def test_zero_pose_matches_the_published_facts(piper):
    model, data = piper
    mujoco.mj_kinematics(model, data)
    assert np.allclose(data.body("link6").xpos, [0.055, 0.001, 0.203], atol=1.5e-3)
    z_axis = data.body("link6").xmat.reshape(3, 3)[:, 2]
    assert z_axis[0] > 0.99  # points almost straight along +x


def test_forward_kinematics_within_1mm_of_the_published_chain(piper):
    model, data = piper
    rng = np.random.default_rng(0)
    ranges = np.array([row[6] for row in PUBLISHED])
    for _ in range(200):
        q = rng.uniform(ranges[:, 0], ranges[:, 1])
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        expected = published_fk(q)
        for body in ("link2", "link4", "link6", "link7", "link8"):
            pos, rot = expected[body]
            assert np.linalg.norm(data.body(body).xpos - pos) < 1e-3, body
            assert np.abs(data.body(body).xmat.reshape(3, 3) - rot).max() < 1e-4, body


def test_joint_ranges_and_gains_are_the_published_ones(piper):
    model, _ = piper
    for body, _, _, _, _, _, rng in PUBLISHED:
        joint = model.joint(f"joint{body[-1]}")
        assert np.allclose(joint.range, rng), body
    gains = {"joint1": (80, 5), "joint2": (80, 5), "joint3": (80, 5), "joint4": (40, 5),
             "joint5": (10, 1.5), "joint6": (10, 1.5), "gripper": (40, 5)}
    for name, (kp, kv) in gains.items():
        act = model.actuator(name)
        assert act.gainprm[0] == kp and act.biasprm[1] == -kp and act.biasprm[2] == -kv, name
    assert model.neq == 1  # joint8 mirrors joint7


def test_fingers_mirror_and_the_gripper_closes(piper):
    model, data = piper
    mujoco.mj_resetData(model, data)
    data.qpos[:6] = PIPER_INFO.home_qpos
    data.ctrl[:6] = PIPER_INFO.home_qpos
    data.ctrl[model.actuator("gripper").id] = 0.035
    mujoco.mj_step(model, data, nstep=500)
    assert data.joint("joint7").qpos[0] > 0.03 and abs(data.joint("joint8").qpos[0] + data.joint("joint7").qpos[0]) < 2e-3
    data.ctrl[model.actuator("gripper").id] = 0.0
    mujoco.mj_step(model, data, nstep=500)
    assert data.joint("joint7").qpos[0] < 0.003


def test_only_primitive_geometry(piper):
    model, _ = piper
    assert model.nmesh == 0
    assert set(model.geom_type) <= {mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_CAPSULE,
                                    mujoco.mjtGeom.mjGEOM_CYLINDER}
