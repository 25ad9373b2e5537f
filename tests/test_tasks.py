"""The task library: families, articulated objects, data-only declarations, reach of the PiPER."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from envs.robots import ROBOTS
from envs.tasks.library import TASKS, get_task
from envs.tasks.predicates import Open, Pressed
from envs.tasks.spec import FAMILIES, ObjectSpec, TaskSpec


def test_at_least_eight_tasks_in_all_four_families():
    assert len(TASKS) >= 8
    assert {t.family for t in TASKS} == set(FAMILIES)
    assert any(len(t.goals) >= 2 for t in TASKS if t.family == "long")
    assert any(isinstance(g, Open) for t in TASKS for g in t.goals)  # an articulated drawer
    assert any(isinstance(g, Pressed) for t in TASKS for g in t.goals)


def test_spatial_tasks_share_identical_objects_named_by_position():
    spatial = [t for t in TASKS if t.family == "spatial"]
    assert len(spatial) >= 2 and len({t.scene for t in spatial}) == 1
    cubes = [o for o in spatial[0].scene.objects if o.kind == "cube"]
    assert len(cubes) == 2 and cubes[0].size == cubes[1].size and cubes[0].rgba == cubes[1].rgba
    assert {"left", "right"} <= {w for t in spatial for w in t.instruction.split()}


@pytest.mark.parametrize("robot", list(ROBOTS))
def test_start_regions_within_reach(robot):
    info = ROBOTS[robot].info
    margin = 0.06  # room for the approach above the object
    for task in TASKS:
        for obj in task.scene.objects:
            x0, x1, y0, y1 = obj.region
            for x, y in itertools.product((x0, x1), (y0, y1)):
                distance = np.hypot(x - info.base_pos[0], y - info.base_pos[1])
                assert 0.15 < distance < info.reach - margin, (task.name, obj.name, distance)


def test_regions_of_a_scene_do_not_overlap():
    for scene in {t.scene for t in TASKS}:
        for a, b in itertools.combinations(scene.objects, 2):
            gap_x = max(a.region[0], b.region[0]) - min(a.region[1], b.region[1])
            gap_y = max(a.region[2], b.region[2]) - min(a.region[3], b.region[3])
            assert max(gap_x, gap_y) > 0.05, (scene.name, a.name, b.name)


def test_declarations_are_validated():
    with pytest.raises(ValueError, match="unknown kind"):
        ObjectSpec("x", "teapot", (0.1,), (0, 0.1, 0, 0.1))
    scene = get_task("PushButton").scene
    with pytest.raises(ValueError, match="unknown objects"):
        TaskSpec("T", "goal", scene, "do it", (Pressed("lever"),))
    with pytest.raises(ValueError, match="family"):
        TaskSpec("T", "chores", scene, "do it", (Pressed("button"),))
    with pytest.raises(ValueError, match="unknown task 'Nope'"):
        get_task("Nope")
