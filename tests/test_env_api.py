"""Gymnasium conformance and determinism of every task x robot environment."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs.registration import env_id
from tests.conftest import ALL_IDS


def test_every_task_robot_pair_is_registered():
    from envs.robots import ROBOTS
    from envs.tasks.library import TASKS

    assert len(ALL_IDS) == len(TASKS) * len(ROBOTS) >= 16
    assert "simeval/PutCubeOnPlate-Piper-v0" in gym.registry
    assert all(i in gym.registry for i in ALL_IDS)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_passes(env_id, make_env):
    env = make_env(env_id, image_size=64)
    check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", [env_id("PutCubeOnPlate", "Piper"), env_id("OpenDrawer", "Panda")])
def test_observation_contents(env_id, make_env):
    env = make_env(env_id)
    obs, info = env.reset(seed=3)
    assert obs["agentview"].shape == obs["wrist"].shape == (128, 128, 3)
    assert obs["agentview"].dtype == np.uint8 and obs["agentview"].std() > 5  # a real picture, not a blank
    assert obs["state"].shape == (8,) and np.all(np.isfinite(obs["state"]))
    assert obs["instruction"] == env.unwrapped.task.instruction
    assert 0.3 < obs["state"][7] <= 1.01  # gripper opening, open at the start
    assert not np.array_equal(obs["agentview"], obs["wrist"])
    assert set(info["layout"]) == {o.name for o in env.unwrapped.task.scene.objects}
    assert env.spec.max_episode_steps == env.unwrapped.task.max_steps


@pytest.mark.parametrize("robot", ["Panda", "Piper"])
def test_reset_is_deterministic(robot, make_env):
    env = make_env(env_id("PutRedCubeInBowl", robot))
    first, info1 = env.reset(seed=11)
    state1 = env.unwrapped.data.qpos.copy()
    for _ in range(3):
        env.step(env.action_space.sample())
    second, info2 = env.reset(seed=11)
    assert np.array_equal(state1, env.unwrapped.data.qpos)
    assert info1["layout"] == info2["layout"]
    for key in ("agentview", "wrist", "state"):
        assert np.array_equal(first[key], second[key]), key
    other, info3 = env.reset(seed=12)
    assert info3["layout"] != info1["layout"]
    assert not np.array_equal(other["agentview"], first["agentview"])


def test_same_seed_same_state_across_instances(make_env):
    a = make_env(env_id("PutCubeOnPlate", "Panda"))
    b = make_env(env_id("PutCubeOnPlate", "Panda"))
    obs_a, _ = a.reset(seed=5)
    obs_b, _ = b.reset(seed=5)
    assert np.array_equal(obs_a["agentview"], obs_b["agentview"])
    action = np.array([0.5, -0.2, 0.1, 0.0, 0.1, 0.0, 1.0])
    for _ in range(5):
        obs_a, *_ = a.step(action)
        obs_b, *_ = b.step(action)
    assert np.array_equal(a.unwrapped.data.qpos, b.unwrapped.data.qpos)
    assert np.array_equal(obs_a["wrist"], obs_b["wrist"])


def test_image_size_and_cameras_are_configurable(make_env):
    env = make_env(env_id("PushButton", "Piper"), image_size=(96, 160), cameras=("wrist",))
    obs, _ = env.reset(seed=0)
    assert obs["wrist"].shape == (96, 160, 3) and "agentview" not in obs
    assert env.render().shape == (96, 160, 3)
    state_only = make_env(env_id("PushButton", "Piper"), cameras=())
    obs, _ = state_only.reset(seed=0)
    assert set(obs) == {"state", "instruction"}


def test_reset_does_not_recompile(make_env):
    env = make_env(env_id("OpenDrawerThenPushButton", "Panda"))
    env.reset(seed=0)
    model = env.unwrapped.model
    env.reset(seed=1)
    assert env.unwrapped.model is model


def test_time_limit_truncates(make_env):
    env = make_env(env_id("PushButton", "Panda"), cameras=())
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(7))
        assert not terminated  # holding still never presses the button
        steps += 1
    assert steps == env.spec.max_episode_steps


def test_import_chooses_egl_without_display_and_respects_a_choice():
    import os
    import subprocess
    import sys

    code = "import os, envs; print(os.environ['MUJOCO_GL'])"
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "egl"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "MUJOCO_GL": "glfw"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "glfw"  # the user's choice is kept


def test_render_profiles(make_env):
    fast = make_env(env_id("PushButton", "Panda"), cameras=("agentview",))
    full = make_env(env_id("PushButton", "Panda"), cameras=("agentview",), render_profile="full")
    assert fast.unwrapped.model.nmesh < full.unwrapped.model.nmesh  # fast drops the visual meshes
    assert fast.unwrapped.model.vis.quality.shadowsize == 0 < full.unwrapped.model.vis.quality.shadowsize
    image_fast, _ = fast.reset(seed=0)
    image_full, _ = full.reset(seed=0)
    assert not np.array_equal(image_fast["agentview"], image_full["agentview"])
    assert np.array_equal(fast.unwrapped.data.qpos, full.unwrapped.data.qpos)  # same physics


def test_info_names_the_first_object_moved(make_env):
    from policies.scripted import ScriptedExpert

    env = make_env(env_id("PutRedCubeInBowl", "Panda"), cameras=())
    _, info = env.reset(seed=2)
    assert info["first_moved"] is None and env.unwrapped.task.named_object == "red_cube"
    assert make_env(env_id("PutCubeOnPlate", "Panda"), cameras=()).unwrapped.task.named_object is None
    expert = ScriptedExpert(env.unwrapped.task)
    moved = []
    for _ in range(200):
        _, _, terminated, _, info = env.step(expert.act(env.unwrapped.privileged_state()))
        moved.append(info["first_moved"])
        if terminated:
            break
    assert moved[0] is None and moved[-1] == "red_cube"
