"""The shared 7-D action space moves each robot's tool-centre point as it says."""

from __future__ import annotations

import numpy as np
import pytest

from envs.controller import rotation_error
from envs.registration import env_id


def _tcp(env):
    state = env.unwrapped.privileged_state()
    return state["tcp_pos"].copy(), state["tcp_mat"].copy()


@pytest.mark.parametrize("robot", ["Panda", "Piper"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_translation_follows_the_action(robot, axis, make_env):
    env = make_env(env_id("PushButton", robot), cameras=())
    env.reset(seed=0)
    start, start_rot = _tcp(env)
    action = np.zeros(7)
    action[axis] = 0.5
    for _ in range(6):
        env.step(action)
    for _ in range(4):  # let the arm settle
        env.step(np.zeros(7))
    end, end_rot = _tcp(env)
    moved = end - start
    expected = 6 * 0.5 * env.unwrapped.controller.config.pos_scale  # 6 cm
    assert abs(moved[axis] - expected) < 0.25 * expected, moved
    off_axis = np.delete(moved, axis)
    assert np.abs(off_axis).max() < 0.2 * expected, moved
    assert np.linalg.norm(rotation_error(start_rot, end_rot)) < 0.1


@pytest.mark.parametrize("robot", ["Panda", "Piper"])
def test_rotation_follows_the_action(robot, make_env):
    env = make_env(env_id("PushButton", robot), cameras=())
    env.reset(seed=0)
    start, start_rot = _tcp(env)
    for _ in range(4):
        env.step(np.array([0, 0, 0, 0, 0, 0.5, -1]))
    for _ in range(4):
        env.step(np.zeros(7))
    end, end_rot = _tcp(env)
    turned = rotation_error(end_rot, start_rot)  # world-frame rotation from start to end
    expected = 4 * 0.5 * env.unwrapped.controller.config.rot_scale
    assert abs(turned[2] - expected) < 0.25 * expected and np.abs(turned[:2]).max() < 0.1, turned
    assert np.linalg.norm(end - start) < 0.02


@pytest.mark.parametrize("robot", ["Panda", "Piper"])
def test_gripper_closes_and_opens(robot, make_env):
    env = make_env(env_id("PushButton", robot), cameras=())
    obs, _ = env.reset(seed=0)
    assert obs["state"][7] > 0.9
    for _ in range(10):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert obs["state"][7] < 0.1
    for _ in range(10):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
    assert obs["state"][7] > 0.9


@pytest.mark.parametrize("robot", ["Panda", "Piper"])
def test_zero_action_holds_still(robot, make_env):
    env = make_env(env_id("PushButton", robot), cameras=())
    env.reset(seed=0)
    start, _ = _tcp(env)
    for _ in range(40):
        env.step(np.zeros(7))
    end, _ = _tcp(env)
    assert np.linalg.norm(end - start) < 0.003
