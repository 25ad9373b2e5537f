"""Sensor noise: corruptions of the third-person image after rendering (the wrist camera is clean).

One corruption per episode (LIBERO-Plus draws one kind per variant), its severity set by the level.
Gaussian noise is redrawn every frame from a generator seeded with the episode, so an episode's
frames are reproducible. NumPy and Pillow only, in uint8/uint16 where possible: a 128x128 frame
costs a fraction of a millisecond.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from envs.perturbations.base import Context, Episode, Params, shape_rng

KINDS = ("gaussian_noise", "gaussian_blur", "motion_blur", "fog", "jpeg")


def gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(std)
    return np.clip(image + noise + np.float32(0.5), 0, 255).astype(np.uint8)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=sigma)))


def motion_blur(image: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Average of ``length`` copies shifted along a line at ``angle_deg`` (edges repeat)."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((length, length), (length, length), (0, 0)), mode="edge").astype(np.uint16)
    total = np.zeros(image.shape, np.uint16)
    dy, dx = np.sin(np.deg2rad(angle_deg)), np.cos(np.deg2rad(angle_deg))
    for s in np.linspace(-(length - 1) / 2, (length - 1) / 2, length):
        oy, ox = int(round(s * dy)) + length, int(round(s * dx)) + length
        total += padded[oy:oy + height, ox:ox + width]
    return ((total + length // 2) // length).astype(np.uint8)


def fog(image: np.ndarray, density: float) -> np.ndarray:
    """Blend toward a light grey, thicker toward the top of the frame (farther from the camera)."""
    depth = np.linspace(1.0, 0.45, image.shape[0])[:, None, None]
    alpha = np.round(256 * np.clip(density * depth, 0.0, 0.95)).astype(np.uint16)  # per row, of 256
    return ((image.astype(np.uint16) * (256 - alpha) + 200 * alpha + 128) >> 8).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def corrupt(image: np.ndarray, params: Params, rng: np.random.Generator) -> np.ndarray:
    """The corrupted copy of an H x W x 3 uint8 image (``rng`` feeds the per-frame noise)."""
    kind, value = params["kind"], params["value"]
    if kind == "gaussian_noise":
        return gaussian_noise(image, value, rng)
    if kind == "gaussian_blur":
        return gaussian_blur(image, value)
    if kind == "motion_blur":
        return motion_blur(image, int(value), params["angle_deg"])
    if kind == "fog":
        return fog(image, value)
    return jpeg(image, int(value))


# severity per level: noise std (of 255), blur sigma (px at 128x128), motion length (px),
# fog density, JPEG quality (lower is worse)
SEVERITY = {
    "gaussian_noise": (8.0, 16.0, 26.0, 38.0, 52.0),
    "gaussian_blur": (0.6, 1.0, 1.5, 2.1, 2.8),
    "motion_blur": (3, 5, 7, 9, 12),
    "fog": (0.25, 0.4, 0.55, 0.7, 0.82),
    "jpeg": (30, 18, 11, 7, 4),
}


class Noise:
    name = "noise"

    def sample(self, level: int, rng: np.random.Generator, ctx: Context, episode: Episode) -> Params:
        kind = KINDS[int(shape_rng(episode.seed, self.name).integers(len(KINDS)))]  # the same kind at every level
        value = SEVERITY[kind][level - 1]
        scale = ctx.image_width / 128.0  # blur sizes are in pixels of a 128-wide frame
        if kind == "gaussian_blur":
            value = round(value * scale, 3)
        elif kind == "motion_blur":
            value = max(2, int(round(value * scale)))
        params: Params = {"kind": kind, "value": value, "frame_seed": int(rng.integers(2**31))}
        if kind == "motion_blur":
            params["angle_deg"] = round(float(shape_rng(episode.seed, self.name).uniform(0.0, 180.0)), 2)
        return params

    def apply(self, ctx: Context, params: Params, episode: Episode) -> None:
        episode.image_noise = params
