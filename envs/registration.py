"""Gymnasium registration: one id per task x robot, by string entry point so imports stay lazy."""

from __future__ import annotations

import gymnasium as gym

from envs.robots import ROBOTS
from envs.tasks.library import TASKS

NAMESPACE = "simeval"
VERSION = 0


def env_id(task: str, robot: str) -> str:
    return f"{NAMESPACE}/{task}-{robot}-v{VERSION}"


def env_ids() -> list[str]:
    """Every registered id, tasks in library order, robots in registry order."""
    return [env_id(t.name, r) for t in TASKS for r in ROBOTS]


def register_all() -> None:
    for task in TASKS:
        for robot in ROBOTS:
            key = env_id(task.name, robot)
            if key not in gym.registry:
                gym.register(id=key, entry_point="envs.env:TabletopEnv", max_episode_steps=task.max_steps,
                             kwargs={"task": task.name, "robot": robot})
