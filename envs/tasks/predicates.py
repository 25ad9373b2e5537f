"""Goal predicates evaluated on the simulator state (LIBERO's On, In, Open, Up; plus Pressed).

Each predicate is a frozen dataclass: data in a task declaration, with ``holds(world)`` reading the
state by name and ``objects()`` naming what it refers to (checked when the task is declared).
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.world import TABLE_TOP, World


@dataclass(frozen=True)
class On:
    """``obj`` rests on the support ``target`` (a plate): within its rim, touching it, not below it."""

    obj: str
    target: str

    def objects(self) -> tuple[str, ...]:
        return (self.obj, self.target)

    def holds(self, world: World) -> bool:
        radius = world.scene.object(self.target).size[0]
        offset = world.pos(self.obj)[:2] - world.pos(self.target)[:2]
        top = world.site(f"{self.target}/top")[2]
        return (float(offset @ offset) < radius**2 and world.bottom(self.obj) > top - 0.01
                and world.touching(self.obj, self.target))


@dataclass(frozen=True)
class In:
    """``obj`` lies inside the container ``target`` (a bowl): within its walls, below its rim."""

    obj: str
    target: str

    def objects(self) -> tuple[str, ...]:
        return (self.obj, self.target)

    def holds(self, world: World) -> bool:
        inner, height = world.scene.object(self.target).size[:2]
        offset = abs(world.pos(self.obj)[:2] - world.pos(self.target)[:2])
        rim = world.pos(self.target)[2] + height
        return bool((offset < inner).all()) and world.bottom(self.obj) < rim and world.touching(self.obj, self.target)


@dataclass(frozen=True)
class Open:
    """The articulation of ``obj`` (a drawer) is out by at least ``fraction`` of its travel."""

    obj: str
    fraction: float = 0.7

    def objects(self) -> tuple[str, ...]:
        return (self.obj,)

    def holds(self, world: World) -> bool:
        lo, hi = world.joint_range(f"{self.obj}/joint")
        return world.joint(f"{self.obj}/joint") >= lo + self.fraction * (hi - lo)


@dataclass(frozen=True)
class Pressed:
    """The button ``obj`` is pushed in by at least ``fraction`` of its travel."""

    obj: str
    fraction: float = 0.6

    def objects(self) -> tuple[str, ...]:
        return (self.obj,)

    def holds(self, world: World) -> bool:
        lo, _ = world.joint_range(f"{self.obj}/joint")
        return world.joint(f"{self.obj}/joint") <= self.fraction * lo


@dataclass(frozen=True)
class Lifted:
    """``obj`` is held at least ``height`` metres above the table and touches it no more."""

    obj: str
    height: float = 0.08

    def objects(self) -> tuple[str, ...]:
        return (self.obj,)

    def holds(self, world: World) -> bool:
        return world.bottom(self.obj) > TABLE_TOP + self.height and not world.touching(self.obj, None)
