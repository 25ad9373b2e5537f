"""Perturbation variants: ``dimension:level`` pairs joined by commas, parsed and validated once.

The seven dimension names follow LIBERO-Plus and are used everywhere (options, suites, reports).
Level 0 is nominal, 1 mild ... 5 severe.
"""

from __future__ import annotations

from dataclasses import dataclass

DIMENSIONS = ("camera", "robot_init", "language", "light", "background", "noise", "layout")
MAX_LEVEL = 5
NOMINAL_WORDS = ("", "none", "nominal")


@dataclass(frozen=True)
class Variant:
    """Levels per dimension, in the canonical order of ``DIMENSIONS`` (level-0 entries dropped)."""

    levels: tuple[tuple[str, int], ...] = ()

    def __str__(self) -> str:
        return ",".join(f"{d}:{lvl}" for d, lvl in self.levels) or "nominal"

    def level(self, dimension: str) -> int:
        return dict(self.levels).get(dimension, 0)

    @property
    def nominal(self) -> bool:
        return not self.levels


def parse_variant(text: "str | Variant | None") -> Variant:
    """Parse ``"light:3,camera:2"``; one-line ``ValueError`` naming the valid choices otherwise."""
    if isinstance(text, Variant):
        return text
    if text is None:
        return Variant()
    if not isinstance(text, str):
        raise ValueError(f"perturbation must be a string like 'camera:3,light:2', got {type(text).__name__}")
    if text.strip().lower() in NOMINAL_WORDS:
        return Variant()
    levels: dict[str, int] = {}
    for part in text.split(","):
        name, sep, level = part.strip().partition(":")
        name = name.strip()
        if not sep or not name or not level.strip():
            raise ValueError(f"malformed perturbation {text!r}: write dimension:level pairs joined by commas, "
                             f"e.g. 'camera:3,light:2'; dimensions: {', '.join(DIMENSIONS)}; levels 0-{MAX_LEVEL}")
        if name not in DIMENSIONS:
            raise ValueError(f"unknown perturbation dimension {name!r}; valid dimensions: {', '.join(DIMENSIONS)}")
        try:
            value = int(level.strip())
        except ValueError:
            raise ValueError(f"perturbation level {level.strip()!r} for {name} is not an integer; "
                             f"valid levels: 0-{MAX_LEVEL}") from None
        if not 0 <= value <= MAX_LEVEL:
            raise ValueError(f"perturbation level {value} for {name} is out of range; valid levels: 0-{MAX_LEVEL}")
        if name in levels:
            raise ValueError(f"perturbation dimension {name!r} given twice in {text!r}")
        levels[name] = value
    return Variant(tuple((d, levels[d]) for d in DIMENSIONS if levels.get(d, 0) > 0))
