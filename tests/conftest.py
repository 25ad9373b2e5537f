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
