"""Still pictures of the worlds: a labelled grid of every task on every robot (agentview)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import imageio.v2 as imageio
import numpy as np

from simeval.text import draw_text, wrap


def task_grid(tasks: Sequence[str], robots: Sequence[str], out: Path, size: int = 256, seed: int = 0,
              profile: str = "fast", columns: int = 4) -> Path:
    """Render the reset state of every task on every robot into one PNG, ``columns`` tiles a row."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the ids)
    from envs.registration import env_id

    tiles = []
    for task in tasks:
        for robot in robots:
            env = gym.make(env_id(task, robot), image_size=size, cameras=("agentview",), render_profile=profile)
            obs, _ = env.reset(seed=seed)
            tile = obs["agentview"].copy()
            draw_text(tile, f"{task} / {robot}", (4, 4), scale=max(1, size // 256))
            draw_text(tile, f'"{obs["instruction"]}"', (4, size - 12 * max(1, size // 256)), scale=max(1, size // 256))
            tiles.append(tile)
            env.close()
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    out.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(out, np.concatenate(rows, axis=0))
    return out


def perturbation_gallery(task: str, robot: str, out: Path, size: int = 160, seed: int = 0,
                         profile: str = "fast") -> Path:
    """Agentview at reset for every dimension (rows) at levels 0-5 (columns), one PNG.

    The language row shows the (unchanged) scene with the rewritten instruction written on it.
    """
    import gymnasium as gym

    import envs  # noqa: F401
    from envs.perturbations import DIMENSIONS, MAX_LEVEL
    from envs.registration import env_id

    env = gym.make(env_id(task, robot), image_size=size, cameras=("agentview",), render_profile=profile)
    scale = max(1, size // 160)
    rows = []
    try:
        for dimension in DIMENSIONS:
            tiles = []
            for level in range(MAX_LEVEL + 1):
                obs, _ = env.reset(seed=seed, options={"perturbation": f"{dimension}:{level}"})
                tile = obs["agentview"].copy()
                if dimension == "language":
                    for k, line in enumerate(wrap(obs["instruction"], 30)[:9]):
                        draw_text(tile, line, (3, 3 + 12 * scale * k), scale=scale)
                draw_text(tile, f"{dimension}:{level}", (3, size - 13 * scale), scale=scale, color=(255, 230, 80))
                tiles.append(tile)
            rows.append(np.concatenate(tiles, axis=1))
    finally:
        env.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(out, np.concatenate(rows, axis=0))
    return out
