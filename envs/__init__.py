"""simeval's worlds: LIBERO-style MuJoCo tabletop tasks for the Panda and the PiPER.

Importing this package registers one Gymnasium id per task x robot pair,
``simeval/<Task>-<Robot>-v0``, so that ``import envs; gymnasium.make(id)`` works.
"""

from envs import _gl  # noqa: F401  (sets MUJOCO_GL before anything imports mujoco)
from envs.registration import env_ids, register_all

register_all()

__all__ = ["env_ids", "register_all"]
