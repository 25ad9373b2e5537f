"""The seven LIBERO-Plus perturbation dimensions, at levels 0 (nominal) to 5, seeded and composable.

``Perturber.perturb(variant, seed, episode)`` restores the nominal scene, then lets each dimension
of the variant sample its parameters from (seed, dimension, level) and apply them: writing model
fields (camera, light, background) or editing the episode set-up (layout, robot_init, language,
noise) that the env then places. Nothing is recompiled.
"""

from __future__ import annotations

from typing import Any

from envs.perturbations.base import Context, Episode, dimension_rng
from envs.perturbations.language import Language
from envs.perturbations.noise import Noise, corrupt
from envs.perturbations.physical import Layout, RobotInit
from envs.perturbations.variant import DIMENSIONS, MAX_LEVEL, Variant, parse_variant
from envs.perturbations.visual import Background, Camera, Light

# Application order: layout first (robot_init checks the arm against the placed objects).
ORDER = ("layout", "robot_init", "camera", "light", "background", "language", "noise")
HANDLERS = {h.name: h for h in (Layout(), RobotInit(), Camera(), Light(), Background(), Language(), Noise())}
assert set(ORDER) == set(DIMENSIONS) == set(HANDLERS)


class Perturber:
    """Applies variants to one env's scene (``Context`` holds its ids and nominal values)."""

    def __init__(self, context: Context) -> None:
        self.ctx = context

    def perturb(self, variant: Variant, seed: int, episode: Episode) -> dict[str, Any]:
        """Apply ``variant`` for the episode ``seed``; returns every sampled parameter, by dimension."""
        self.ctx.restore()
        params: dict[str, Any] = {}
        for name in ORDER:
            level = variant.level(name)
            if level == 0:
                continue
            handler = HANDLERS[name]
            params[name] = handler.sample(level, dimension_rng(seed, name, level), self.ctx, episode)
            handler.apply(self.ctx, params[name], episode)
        return params


__all__ = ["DIMENSIONS", "MAX_LEVEL", "Context", "Episode", "Perturber", "Variant", "corrupt", "parse_variant"]
