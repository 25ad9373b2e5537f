"""Bad input gets a clear one-line error naming what is wrong and what is valid."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from envs.env import TabletopEnv
from envs.registration import env_id
from simeval.cli import main


def test_unknown_env_id_names_the_namespace():
    with pytest.raises(gym.error.Error) as err:
        gym.make("simeval/PutCubeOnTable-Piper-v0")
    assert "PutCubeOnTable" in str(err.value)


@pytest.mark.parametrize("kwargs, words", [
    ({"task": "Juggle", "robot": "Piper"}, ["unknown task 'Juggle'", "PutCubeOnPlate"]),
    ({"task": "PushButton", "robot": "UR5"}, ["unknown robot 'UR5'", "Panda", "Piper"]),
    ({"task": "PushButton", "robot": "Piper", "cameras": ("top",)}, ["invalid cameras", "agentview", "wrist"]),
    ({"task": "PushButton", "robot": "Piper", "image_size": 4}, ["image_size", "16..1024"]),
    ({"task": "PushButton", "robot": "Piper", "render_profile": "ultra"}, ["render_profile", "fast", "full"]),
    ({"task": "PushButton", "robot": "Piper", "render_mode": "human"}, ["render_mode", "rgb_array"]),
])
def test_constructor_errors_are_one_line(kwargs, words):
    with pytest.raises(ValueError) as err:
        TabletopEnv(**kwargs)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_unknown_reset_option(make_env):
    env = make_env(env_id("PushButton", "Panda"), cameras=())
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(seed=0, options={"gravity": 0})


@pytest.mark.parametrize("action, words", [
    (np.full(7, np.nan), "finite"),
    (np.array([0, 0, np.inf, 0, 0, 0, 0]), "finite"),
    (np.zeros(6), "shape (7,)"),
    (np.zeros((2, 7)), "shape (7,)"),
])
def test_bad_actions_raise_without_touching_the_simulation(action, words, make_env):
    env = make_env(env_id("PutCubeOnPlate", "Piper"), cameras=())
    env.reset(seed=0)
    before = env.unwrapped.data.qpos.copy(), env.unwrapped.data.time
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        env.step(action)
    assert np.array_equal(before[0], env.unwrapped.data.qpos) and before[1] == env.unwrapped.data.time
    env.step(np.zeros(7))  # still usable
    assert np.all(np.isfinite(env.unwrapped.data.qpos))


def test_out_of_range_actions_are_clipped(make_env):
    env = make_env(env_id("PutCubeOnPlate", "Panda"), cameras=())
    env.reset(seed=0)
    start = env.unwrapped.privileged_state()["tcp_pos"]
    env.step(np.array([50.0, 0, 0, 0, 0, 0, -1]))
    moved = env.unwrapped.privileged_state()["tcp_pos"] - start
    assert 0.005 < moved[0] < 0.03  # at most one full step (2 cm) plus settling


@pytest.mark.parametrize("argv, words", [
    (["list", "planets"], ["invalid choice", "envs"]),
    (["render-tasks", "--tasks", "Juggle"], ["unknown task Juggle", "PutCubeOnPlate"]),
    (["render-tasks", "--robots", "UR5"], ["unknown robot UR5", "Piper"]),
    (["render-tasks", "--profile", "ultra"], ["--profile", "fast"]),
    (["fly"], ["invalid choice"]),
])
def test_cli_errors_exit_2_with_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("simeval: error:") and all(w in err for w in words), err


def test_cli_entry_point_exit_code():
    out = subprocess.run([sys.executable, "-m", "simeval", "list", "nothing"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
