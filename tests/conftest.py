"""Shared fixtures: every registered id, and a helper to make envs that are always closed."""

from __future__ import annotations

import gymnasium as gym
import pytest

import envs

ALL_IDS = envs.env_ids()


@pytest.fixture
def make_env():
    made: list[gym.Env] = []

    def _make(env_id: str, **kwargs) -> gym.Env:
        env = gym.make(env_id, **kwargs)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two beside a busy training job."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
