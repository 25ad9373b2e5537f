"""Sensor noise: corruptions of the third-person image after rendering (the wrist camera is clean).

One corruption per episode (LIBERO-Plus draws one kind per variant), its severity set by the level.
Gaussian noise is redrawn every frame from a generator seeded with the episode, so an episode's
frames are reproducible. NumPy and Pillow only: a 128x128 frame costs well under a millisecond.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from envs.perturbations.base import Context, Episode, Params, shape_rng

KINDS = ("gaussian_noise", "gaussian_blur", "motion_blur", "fog", "jpeg")


def _kernel_1d(sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _convolve(image: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    pad = len(kernel) // 2
    widths = [(0, 0)] * image.ndim
    widths[axis] = (pad, pad)
    padded = np.pad(image, widths, mode="edge")
    out = np.zeros_like(image)
    size = image.shape[axis]
    for k, weight in enumerate(kernel):
        out += weight * np.take(padded, range(k, k + size), axis=axis)
    return out


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    kernel = _kernel_1d(sigma)
    return _convolve(_convolve(image, kernel, 0), kernel, 1)


def motion_blur(image: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Average along a line of ``length`` pixels at ``angle_deg`` (shifted copies, wrap-free)."""
    out = np.zeros_like(image)
    steps = np.linspace(-(length - 1) / 2, (length - 1) / 2, length)
    dy, dx = np.sin(np.deg2rad(angle_deg)), np.cos(np.deg2rad(angle_deg))
    height, width = image.shape[:2]
    pad = length
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    for s in steps:
        oy, ox = int(round(s * dy)) + pad, int(round(s * dx)) + pad
        out += padded[oy:oy + height, ox:ox + width]
    return out / length


def fog(image: np.ndarray, density: float) -> np.ndarray:
    """Blend toward a light grey, thicker toward the top of the frame (farther from the camera)."""
    height = image.shape[0]
    depth = np.linspace(1.0, 0.45, height)[:, None, None]
    alpha = np.clip(density * depth, 0.0, 0.95)
    return image * (1 - alpha) + 200.0 * alpha


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8)).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32)


def corrupt(image: np.ndarray, params: Params, rng: np.random.Generator) -> np.ndarray:
    """The corrupted copy of an H x W x 3 uint8 image."""
    kind, value = params["kind"], params["value"]
    pixels = image.astype(np.float32)
    if kind == "gaussian_noise":
        pixels = pixels + rng.normal(0.0, value, image.shape).astype(np.float32)
    elif kind == "gaussian_blur":
        pixels = gaussian_blur(pixels, value)
    elif kind == "motion_blur":
        pixels = motion_blur(pixels, int(value), params["angle_deg"])
    elif kind == "fog":
        pixels = fog(pixels, value)
    else:
        pixels = jpeg(image, int(value))
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


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
