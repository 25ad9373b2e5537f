"""Background textures the project generates itself (small RGB images, no files, no downloads).

Each generator is a deterministic function of its parameters, so every machine builds the same
set. The scene compiles all of them once; the background perturbation switches a material's
texture id between episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SIZE = 64  # pixels per side: small textures keep CPU rendering cheap


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(size), np.arange(size), indexing="ij")


def wood(base: tuple[int, int, int], size: int = SIZE) -> np.ndarray:
    """Wood grain: stretched sine rings with a little deterministic wobble."""
    i, j = _grid(size)
    rings = 0.5 + 0.5 * np.sin(0.45 * i + 2.5 * np.sin(j / 9.0) + 0.8 * np.sin(i / 5.0))
    shade = 0.75 + 0.25 * rings
    return np.clip(np.asarray(base)[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)


def checker(a: tuple[int, int, int], b: tuple[int, int, int], cells: int = 8, size: int = SIZE) -> np.ndarray:
    i, j = _grid(size)
    mask = ((i * cells // size) + (j * cells // size)) % 2 == 0
    return np.where(mask[..., None], np.asarray(a), np.asarray(b)).astype(np.uint8)


def bricks(brick: tuple[int, int, int], mortar: tuple[int, int, int], size: int = SIZE) -> np.ndarray:
    i, j = _grid(size)
    row = i // 8
    offset = (row % 2) * 8
    joint = (i % 8 == 0) | (((j + offset) % 16) == 0)
    return np.where(joint[..., None], np.asarray(mortar), np.asarray(brick)).astype(np.uint8)


def stripes(a: tuple[int, int, int], b: tuple[int, int, int], period: int = 10, size: int = SIZE) -> np.ndarray:
    i, j = _grid(size)
    mask = ((i + j) // (period // 2)) % 2 == 0
    return np.where(mask[..., None], np.asarray(a), np.asarray(b)).astype(np.uint8)


def speckle(base: tuple[int, int, int], seed: int, amount: float = 60.0, size: int = SIZE) -> np.ndarray:
    """Granite / fabric-like noise from a fixed seed."""
    noise = np.random.default_rng(seed).normal(0.0, amount, (size, size, 1))
    return np.clip(np.asarray(base)[None, None, :] + noise, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Texture:
    name: str
    make: Callable[[], np.ndarray]
    contrast: int  # 1 (plain) .. 3 (busy): strong backgrounds are drawn at higher levels


TEXTURES: tuple[Texture, ...] = (
    Texture("bg_light_wood", lambda: wood((196, 160, 118)), 1),
    Texture("bg_dark_wood", lambda: wood((110, 70, 40)), 2),
    Texture("bg_grey_felt", lambda: speckle((120, 124, 128), seed=1, amount=18.0), 1),
    Texture("bg_granite", lambda: speckle((150, 140, 130), seed=2, amount=55.0), 2),
    Texture("bg_bricks", lambda: bricks((150, 60, 45), (210, 205, 195)), 3),
    Texture("bg_checker", lambda: checker((30, 30, 30), (230, 230, 230)), 3),
    Texture("bg_blue_stripes", lambda: stripes((40, 70, 160), (220, 220, 235)), 3),
    Texture("bg_green_cloth", lambda: speckle((60, 120, 70), seed=3, amount=25.0), 2),
    Texture("bg_sand", lambda: speckle((205, 180, 130), seed=4, amount=30.0), 1),
)
