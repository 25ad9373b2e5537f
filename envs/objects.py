"""Object builders: primitive geometry only, so scenes render fast on a CPU rasteriser.

Each builder adds one object to the scene spec at the origin; its start pose is written per episode
(free joints through ``qpos``, fixed objects through ``model.body_pos``), so nothing recompiles.
Naming (the world looks objects up by these names): body ``NAME``; free joint ``NAME/free``;
articulations ``NAME/joint``; sites ``NAME/top`` (support surface or button top) and
``NAME/handle``.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco

from envs.tasks.spec import ObjectSpec

BOX, CYL = mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_CYLINDER
WOOD = (0.55, 0.38, 0.22, 1.0)
DARK = (0.2, 0.2, 0.22, 1.0)
GRIP_FRICTION = [1.2, 0.01, 0.001]


def _site(body: mujoco.MjsBody, name: str, pos: list[float]) -> None:
    body.add_site(name=name, pos=pos, size=[0.004, 0, 0], rgba=[0, 0, 0, 0], group=3)


def add_cube(spec: mujoco.MjSpec, obj: ObjectSpec) -> None:
    world = spec.worldbody
    half = obj.size[0]
    body = world.add_body(name=obj.name, pos=[0, 0, half])
    body.add_freejoint(name=f"{obj.name}/free")
    body.add_geom(name=f"{obj.name}/geom", type=BOX, size=[half] * 3, rgba=list(obj.rgba), mass=0.025,
                  friction=GRIP_FRICTION, condim=4)


def add_cylinder(spec: mujoco.MjSpec, obj: ObjectSpec) -> None:
    world = spec.worldbody
    radius, half = obj.size[:2]
    body = world.add_body(name=obj.name, pos=[0, 0, half])
    body.add_freejoint(name=f"{obj.name}/free")
    body.add_geom(name=f"{obj.name}/geom", type=CYL, size=[radius, half, 0], rgba=list(obj.rgba), mass=0.025,
                  friction=GRIP_FRICTION, condim=4)


def add_plate(spec: mujoco.MjSpec, obj: ObjectSpec) -> None:
    world = spec.worldbody
    radius, half = obj.size[:2]
    body = world.add_body(name=obj.name)
    body.add_geom(name=f"{obj.name}/geom", type=CYL, pos=[0, 0, half], size=[radius, half, 0], rgba=list(obj.rgba))
    body.add_geom(type=CYL, pos=[0, 0, 2 * half + 0.0005], size=[radius * 0.7, 0.0005, 0],
                  rgba=[c * 0.85 for c in obj.rgba[:3]] + [1.0], contype=0, conaffinity=0)
    _site(body, f"{obj.name}/top", [0, 0, 2 * half])


def add_bowl(spec: mujoco.MjSpec, obj: ObjectSpec) -> None:
    """A square bowl (a tray): a base and four walls, open at the top."""
    world = spec.worldbody
    inner, height = obj.size[:2]
    wall, base = 0.006, 0.005
    body = world.add_body(name=obj.name)
    rgba = list(obj.rgba)
    body.add_geom(name=f"{obj.name}/geom", type=BOX, pos=[0, 0, base], size=[inner + wall, inner + wall, base], rgba=rgba)
    for sx, sy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        size = [wall, inner + wall, height / 2] if sx else [inner + wall, wall, height / 2]
        body.add_geom(type=BOX, pos=[sx * (inner + wall), sy * (inner + wall), height / 2], size=size, rgba=rgba)
    _site(body, f"{obj.name}/top", [0, 0, 2 * base])


def add_drawer(spec: mujoco.MjSpec, obj: ObjectSpec) -> None:
    """A cabinet whose drawer slides out toward -x (toward the robot), with a bar handle."""
    world = spec.worldbody
    hx, hy, hz, travel = obj.size[:4]
    t = 0.008  # wall thickness
    body = world.add_body(name=obj.name)
    shell = list(WOOD)
    body.add_geom(name=f"{obj.name}/geom", type=BOX, pos=[0, 0, 2 * hz - t], size=[hx, hy, t], rgba=shell)  # top
    body.add_geom(type=BOX, pos=[t, 0, t], size=[hx - t, hy, t], rgba=shell)  # floor
    body.add_geom(type=BOX, pos=[hx - t, 0, hz], size=[t, hy, hz], rgba=shell)  # back
    for sy in (1, -1):
        body.add_geom(type=BOX, pos=[0, sy * (hy - t), hz], size=[hx, t, hz], rgba=shell)
    drawer = body.add_body(name=f"{obj.name}/drawer", pos=[0, 0, 0])
    drawer.add_joint(name=f"{obj.name}/joint", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[-1, 0, 0],
                     range=[0, travel], limited=mujoco.mjtLimited.mjLIMITED_TRUE, damping=4.0, frictionloss=0.3)
    inner_y, inner_z = hy - 2 * t - 0.002, hz - 2 * t - 0.002
    front = list(obj.rgba)
    drawer.add_geom(type=BOX, pos=[-hx + t, 0, hz], size=[t, inner_y, inner_z], rgba=front, mass=0.2)
    drawer.add_geom(type=BOX, pos=[0, 0, 2 * t + 0.003], size=[hx - 2 * t, inner_y, 0.003], rgba=front, mass=0.1)
    standoff = 0.045
    for sy in (1, -1):
        drawer.add_geom(type=BOX, pos=[-hx - standoff / 2, sy * 0.04, hz], size=[standoff / 2, 0.005, 0.005], rgba=DARK,
                        mass=0.01)
    drawer.add_geom(name=f"{obj.name}/handle", type=CYL, pos=[-hx - standoff, 0, hz], size=[0.007, 0.05, 0],
                    quat=[0.7071068, 0.7071068, 0, 0], rgba=DARK, mass=0.02)
    _site(drawer, f"{obj.name}/handle", [-hx - standoff, 0, hz])
    _site(drawer, f"{obj.name}/gap", [-hx - standoff / 2 + 0.002, 0, hz])
    # a static parent is welded to the world, so MuJoCo's parent-child filter does not apply
    spec.add_exclude(bodyname1=obj.name, bodyname2=f"{obj.name}/drawer")


def add_button(spec: mujoco.MjSpec, obj: ObjectSpec) -> None:
    """A spring-loaded push button on a square base."""
    world = spec.worldbody
    radius, travel = obj.size[:2]
    body = world.add_body(name=obj.name)
    body.add_geom(name=f"{obj.name}/geom", type=BOX, pos=[0, 0, 0.012], size=[radius + 0.02, radius + 0.02, 0.012],
                  rgba=list(DARK))
    cap = body.add_body(name=f"{obj.name}/cap", pos=[0, 0, 0.024 + travel])
    cap.add_joint(name=f"{obj.name}/joint", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 0, 1], range=[-travel, 0],
                  limited=mujoco.mjtLimited.mjLIMITED_TRUE, stiffness=60.0, springref=travel, damping=1.0)  # preloaded: rests at 0
    cap.add_geom(type=CYL, pos=[0, 0, 0.0], size=[radius, travel, 0], rgba=list(obj.rgba), mass=0.02)
    _site(cap, f"{obj.name}/top", [0, 0, travel])
    spec.add_exclude(bodyname1=obj.name, bodyname2=f"{obj.name}/cap")


@dataclass(frozen=True)
class Distractor:
    """A clutter object for the layout perturbation: never a cube, plate, bowl or red thing, so it
    cannot be mistaken for what an instruction names."""

    name: str
    geom: int
    size: tuple[float, float, float]
    rgba: tuple[float, float, float, float]

    @property
    def half_height(self) -> float:
        return self.size[1] if self.geom == CYL else self.size[2]

    @property
    def radius(self) -> float:
        return float(max(self.size[:2])) if self.geom == BOX else self.size[0]


DISTRACTORS: tuple[Distractor, ...] = (
    Distractor("distractor_can", CYL, (0.022, 0.035, 0.0), (0.45, 0.3, 0.6, 1.0)),
    Distractor("distractor_book", BOX, (0.045, 0.03, 0.01, ), (0.45, 0.3, 0.15, 1.0)),
    Distractor("distractor_block", BOX, (0.012, 0.02, 0.03), (0.95, 0.55, 0.1, 1.0)),
    Distractor("distractor_puck", CYL, (0.03, 0.008, 0.0), (0.3, 0.3, 0.33, 1.0)),
    Distractor("distractor_tin", CYL, (0.032, 0.018, 0.0), (0.7, 0.72, 0.75, 1.0)),
)
PARK_X, PARK_Z = -1.4, -0.75  # behind the back wall, on the floor: out of every camera's view


def park_position(index: int, item: Distractor) -> tuple[float, float, float]:
    """Where an unused distractor waits (compiled there once, moved back there on reset)."""
    return (PARK_X, -0.6 + 0.3 * index, PARK_Z + item.half_height)


def add_distractors(spec: mujoco.MjSpec) -> None:
    """Compile the distractor pool into the scene, parked out of view."""
    for index, item in enumerate(DISTRACTORS):
        body = spec.worldbody.add_body(name=item.name, pos=list(park_position(index, item)))
        body.add_freejoint(name=f"{item.name}/free")
        size = list(item.size) if item.geom == BOX else [item.size[0], item.size[1], 0]
        body.add_geom(name=f"{item.name}/geom", type=item.geom, size=size, rgba=list(item.rgba), mass=0.05,
                      friction=GRIP_FRICTION, condim=4)


BUILDERS = {
    "cube": add_cube, "cylinder": add_cylinder, "plate": add_plate,
    "bowl": add_bowl, "drawer": add_drawer, "button": add_button,
}


def add_object(spec: mujoco.MjSpec, obj: ObjectSpec) -> None:
    """Add ``obj`` to the scene with the builder of its kind."""
    BUILDERS[obj.kind](spec, obj)
