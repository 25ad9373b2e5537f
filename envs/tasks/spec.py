"""Tasks as data: objects, start regions, instruction, goal predicates.

A task names a scene (its objects and where they start), an instruction, and a sequence of goal
predicates that must become true in order. Nothing here is code that a new task must copy: a new
task is a new :class:`TaskSpec` in ``envs/tasks/library.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAMILIES = ("spatial", "object", "goal", "long")
KINDS = ("cube", "cylinder", "plate", "bowl", "drawer", "button")
MOVABLE = ("cube", "cylinder")

Region = tuple[float, float, float, float]  # x0, x1, y0, y1 of the object's centre, world frame (m)


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a scene and the region its centre starts in.

    ``size`` is kind-specific: cube (half side), cylinder (radius, half height), plate (radius, half
    height), bowl (inner half side, wall height), drawer (half depth, half width, half height,
    travel), button (cap radius, travel).
    """

    name: str
    kind: str
    size: tuple[float, ...]
    region: Region
    rgba: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    yaw: tuple[float, float] = (0.0, 0.0)  # radians, sampled uniformly
    adjective: str = ""  # how instructions tell it apart: "red", ...
    where: str = ""  # ... or by position: "on the left"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"object {self.name!r}: unknown kind {self.kind!r}; valid kinds: {', '.join(KINDS)}")
        x0, x1, y0, y1 = self.region
        if x0 > x1 or y0 > y1:
            raise ValueError(f"object {self.name!r}: region {self.region} must be (x0 <= x1, y0 <= y1)")

    @property
    def movable(self) -> bool:
        return self.kind in MOVABLE


@dataclass(frozen=True)
class SceneSpec:
    """Objects of a scene; each group in ``shuffle`` swaps its members' regions at random per episode."""

    name: str
    objects: tuple[ObjectSpec, ...]
    shuffle: tuple[tuple[str, ...], ...] = ()

    def object(self, name: str) -> ObjectSpec:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(f"scene {self.name!r} has no object {name!r}; objects: {[o.name for o in self.objects]}")


@dataclass(frozen=True)
class TaskSpec:
    """A task: a scene, an instruction and goals that must hold in sequence."""

    name: str
    family: str
    scene: SceneSpec
    instruction: str
    goals: tuple = field(default_factory=tuple)  # predicates from envs.tasks.predicates
    max_steps: int = 300

    @property
    def named_object(self) -> str | None:
        """The object the instruction picks among several movable ones (None when there is no choice):
        what the grounding rate checks a policy moved first."""
        movable = [o for o in self.scene.objects if o.movable]
        target = getattr(self.goals[0], "obj", None)
        return target if len(movable) >= 2 and target in {o.name for o in movable} else None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"task {self.name!r}: family {self.family!r} not in {FAMILIES}")
        if not self.goals:
            raise ValueError(f"task {self.name!r} has no goal predicates")
        names = {o.name for o in self.scene.objects}
        for goal in self.goals:
            missing = [n for n in goal.objects() if n not in names]
            if missing:
                raise ValueError(f"task {self.name!r}: goal {goal} names unknown objects {missing}")
