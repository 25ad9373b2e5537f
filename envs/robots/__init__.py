"""Robots available to every task: the Franka Panda (robosuite assets) and the AgileX PiPER (ours)."""

from envs.robots.base import RobotEntry, RobotInfo
from envs.robots.panda import PANDA
from envs.robots.piper import PIPER

ROBOTS: dict[str, RobotEntry] = {"Panda": PANDA, "Piper": PIPER}


def get_robot(name: str) -> RobotEntry:
    """The robot called ``name``, or a one-line error listing the valid names."""
    try:
        return ROBOTS[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; valid robots: {', '.join(ROBOTS)}") from None


__all__ = ["ROBOTS", "RobotEntry", "RobotInfo", "get_robot"]
