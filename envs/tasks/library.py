"""The task library: four scenes and ten tasks in LIBERO's four families, all declared as data.

World frame: the table top is z = 0, x points away from the robots (the PiPER's base is at the
origin, the Panda's 15 cm behind it), y to the robots' left. Every start region lies within
0.2-0.55 m of the PiPER's base axis (its reach is about 0.62 m); ``tests/test_tasks.py`` checks it.
"Left" and "right" in instructions are the robot's left (+y) and right (-y). Step limits are
LIBERO's community limits per family.
"""

from __future__ import annotations

from envs.tasks.predicates import In, Lifted, On, Open, Pressed
from envs.tasks.spec import ObjectSpec, SceneSpec, TaskSpec

RED, BLUE, GREEN = (0.85, 0.15, 0.12, 1.0), (0.15, 0.3, 0.85, 1.0), (0.15, 0.7, 0.25, 1.0)
YELLOW, WHITE, TEAL = (0.95, 0.8, 0.15, 1.0), (0.93, 0.93, 0.9, 1.0), (0.1, 0.55, 0.6, 1.0)
CUBE = (0.02,)
HALF_PI = 1.5707963
YAW = (-0.6, 0.6)
STEPS = {"spatial": 220, "object": 280, "goal": 300, "long": 520}

SPATIAL_SCENE = SceneSpec(
    name="two_cubes_plate",
    objects=(
        ObjectSpec("cube_left", "cube", CUBE, (0.27, 0.33, 0.11, 0.17), YELLOW, YAW, where="on the left"),
        ObjectSpec("cube_right", "cube", CUBE, (0.27, 0.33, -0.17, -0.11), YELLOW, YAW, where="on the right"),
        ObjectSpec("plate", "plate", (0.06, 0.005), (0.41, 0.45, -0.03, 0.03), WHITE),
    ),
)

OBJECT_SCENE = SceneSpec(
    name="three_objects_bowl",
    objects=(
        ObjectSpec("red_cube", "cube", CUBE, (0.26, 0.30, 0.13, 0.17), RED, YAW, adjective="red"),
        ObjectSpec("blue_cube", "cube", CUBE, (0.26, 0.30, -0.02, 0.02), BLUE, YAW, adjective="blue"),
        ObjectSpec("cylinder", "cylinder", (0.02, 0.025), (0.26, 0.30, -0.17, -0.13), GREEN),
        ObjectSpec("bowl", "bowl", (0.06, 0.035), (0.42, 0.45, -0.03, 0.03), TEAL),
    ),
    shuffle=(("red_cube", "blue_cube", "cylinder"),),
)

GOAL_SCENE = SceneSpec(
    name="cube_plate_drawer_button",
    objects=(
        ObjectSpec("cube", "cube", CUBE, (0.30, 0.34, -0.10, -0.06), RED, YAW),
        ObjectSpec("plate", "plate", (0.06, 0.005), (0.24, 0.27, 0.09, 0.12), WHITE),
        # the drawer's front faces -y (yaw 90 deg): it opens across the table, seen by both cameras
        ObjectSpec("drawer", "drawer", (0.07, 0.09, 0.05, 0.1), (0.43, 0.46, 0.19, 0.21), (0.75, 0.6, 0.4, 1.0),
                   (HALF_PI, HALF_PI)),
        ObjectSpec("button", "button", (0.022, 0.01), (0.44, 0.47, -0.19, -0.15), RED),
    ),
)

TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("PutLeftCubeOnPlate", "spatial", SPATIAL_SCENE, "put the cube on the left on the plate",
             (On("cube_left", "plate"),), STEPS["spatial"]),
    TaskSpec("PutRightCubeOnPlate", "spatial", SPATIAL_SCENE, "put the cube on the right on the plate",
             (On("cube_right", "plate"),), STEPS["spatial"]),
    TaskSpec("PutRedCubeInBowl", "object", OBJECT_SCENE, "put the red cube in the bowl",
             (In("red_cube", "bowl"),), STEPS["object"]),
    TaskSpec("PutCylinderInBowl", "object", OBJECT_SCENE, "put the cylinder in the bowl",
             (In("cylinder", "bowl"),), STEPS["object"]),
    TaskSpec("PickUpBlueCube", "object", OBJECT_SCENE, "pick up the blue cube",
             (Lifted("blue_cube", 0.06),), STEPS["object"]),
    TaskSpec("PutCubeOnPlate", "goal", GOAL_SCENE, "put the cube on the plate",
             (On("cube", "plate"),), STEPS["goal"]),
    TaskSpec("OpenDrawer", "goal", GOAL_SCENE, "open the drawer", (Open("drawer"),), STEPS["goal"]),
    TaskSpec("PushButton", "goal", GOAL_SCENE, "push the button", (Pressed("button"),), STEPS["goal"]),
    TaskSpec("PutCubeOnPlateThenPushButton", "long", GOAL_SCENE,
             "put the cube on the plate and then push the button",
             (On("cube", "plate"), Pressed("button")), STEPS["long"]),
    TaskSpec("OpenDrawerThenPushButton", "long", GOAL_SCENE, "open the drawer and then push the button",
             (Open("drawer"), Pressed("button")), STEPS["long"]),
)

TASKS_BY_NAME = {t.name: t for t in TASKS}


def get_task(name: str) -> TaskSpec:
    """The task called ``name``, or a one-line error listing the valid names."""
    try:
        return TASKS_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS_BY_NAME)}") from None
