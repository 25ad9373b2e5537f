"""Wilson intervals against the formula worked by hand, and summarize() on synthetic records."""

from __future__ import annotations

import json
import math

import pytest

from simeval.metrics import (DIMENSIONS, SCHEMA, SCHEMA_ID, Cell, build_results, dimension_level, format_cell,
                             summarize, wilson_interval)

Z = 1.959964


def record(task="PutCubeOnPlate", robot="Piper", dimension="nominal", level=0, success=True, error=None, i=0):
    pert = "nominal" if dimension == "nominal" else f"{dimension}:{level}"
    return {"id": f"t/{task}-{robot}/{pert}/{i:04d}", "task": task, "robot": robot, "family": "goal",
            "perturbation": pert, "dimension": dimension, "level": level, "params": {}, "seed": i,
            "success": success, "steps": 10, "error": error, "video": None, "instruction": "x", "wall_s": 0.1}


def many(n, successes, **kw):
    return [record(success=i < successes, i=i, **kw) for i in range(n)]


# ------------------------------------------------------------------ Wilson

def test_wilson_zero_successes():
    # p = 0: centre = (z²/2n)/(1+z²/n), half-width = (z²/2n)/(1+z²/n) -> low 0, high z²/(n+z²)
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(Z**2 / (10 + Z**2), abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-4)


def test_wilson_all_successes():
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert low == pytest.approx(10 / (10 + Z**2), abs=1e-12)
    assert low == pytest.approx(0.7225, abs=1e-4)


def test_wilson_half():
    # p = 0.5, n = 10: centre 0.5, half = z*sqrt(0.025 + z²/400)/(1 + z²/10)
    half = Z * math.sqrt(0.5 * 0.5 / 10 + Z**2 / 400) / (1 + Z**2 / 10)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.5 - half, abs=1e-12), pytest.approx(0.5 + half, abs=1e-12))
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))


def test_wilson_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    for n in (1, 7, 50):
        for s in range(n + 1):
            low, high = wilson_interval(s, n)
            assert 0.0 <= low <= s / n <= high <= 1.0


# ------------------------------------------------------------------ summarize

def synthetic():
    """nominal 8/10; camera:1 6/10 (one error); camera:3 1/5; light:2 5/10 with a 'successful' error."""
    recs = []
    recs += many(10, 5, dimension="light", level=2, robot="Panda")  # first seen: light, Panda
    recs[0]["error"] = "policy returned NaN"  # success=True but errored -> a failure
    recs += many(10, 8, dimension="nominal")
    recs += many(10, 6, dimension="camera", level=1, task="OpenDrawer")
    recs[-1]["error"] = "worker died"
    recs += many(5, 1, dimension="camera", level=3)
    return recs


def test_counts_and_errors():
    m = summarize(synthetic())
    assert m["counts"] == {"episodes": 35, "successes": 8 + 6 + 1 + 4, "errors": 2,
                           "by_dimension": {"nominal": 10, "camera": 15, "light": 10}}
    assert m["overall"]["n"] == 35 and m["overall"]["successes"] == 19 and m["overall"]["errors"] == 2
    light = m["by_level"]["light:2"]
    assert light["successes"] == 4 and light["errors"] == 1  # errored episode is a failure and counted
    assert m["by_level"]["camera:1"] == {"n": 10, "successes": 6, "errors": 1, "rate": 0.6,
                                         "ci95": [round(x, 6) for x in wilson_interval(6, 10)]}


def test_drop_vs_nominal():
    m = summarize(synthetic())
    assert m["by_dimension"]["nominal"]["drop_vs_nominal"] == 0.0
    assert m["by_dimension"]["camera"]["drop_vs_nominal"] == pytest.approx(0.8 - 7 / 15, abs=1e-6)
    assert m["by_dimension"]["light"]["drop_vs_nominal"] == pytest.approx(0.8 - 0.4, abs=1e-6)
    no_nominal = summarize([r for r in synthetic() if r["dimension"] != "nominal"])
    assert all(cell["drop_vs_nominal"] is None for cell in no_nominal["by_dimension"].values())


def test_key_order_is_canonical_and_first_seen():
    recs = synthetic() + many(4, 2, dimension="camera+light", level=3) + many(3, 3, dimension="layout", level=1)
    m = summarize(recs)
    assert list(m["by_dimension"]) == ["nominal", "camera", "light", "layout", "camera+light"]
    assert list(m["by_level"]) == ["nominal", "camera:1", "camera:3", "light:2", "layout:1", "camera+light:3"]
    assert list(m["by_task"]) == ["PutCubeOnPlate", "OpenDrawer"]
    assert list(m["by_robot"]) == ["Panda", "Piper"]
    assert list(m["by_task_robot"]) == ["PutCubeOnPlate/Panda", "PutCubeOnPlate/Piper", "OpenDrawer/Piper"]
    assert m == summarize(list(recs))  # deterministic


def test_dimension_parsed_when_missing():
    r = {"perturbation": "light:3,camera:2", "success": True}
    assert dimension_level(r) == ("camera+light", 3)
    assert dimension_level({"perturbation": "nominal"}) == ("nominal", 0)


def test_empty_run():
    m = summarize([])
    assert m["overall"] == {"n": 0, "successes": 0, "errors": 0, "rate": None, "ci95": [0.0, 1.0]}
    assert m["by_level"] == {} and m["counts"]["episodes"] == 0
    assert format_cell(m["overall"]) == "–"


def test_cell_and_format():
    cell = Cell.of(many(50, 36))
    assert cell.rate == 0.72 and cell.n == 50
    assert format_cell(cell.to_dict()) == "72% [58-83] (n=50)"


def test_build_results_schema():
    res = build_results(synthetic(), suite={"name": "smoke"}, policy="expert",
                        timing={"wall_s": 1.0, "env_steps": 10, "env_steps_per_s": 10.0, "episodes_per_s": 35.0},
                        versions={"simeval": "0.1.0"})
    assert res["schema"] == SCHEMA_ID == "simeval.results/1"
    assert list(res) == ["schema", "suite", "policy", "overall", "grounding", "by_dimension", "by_level", "by_task",
                         "by_robot",
                         "by_task_robot", "counts", "timing", "versions", "run"]
    assert all(f"{key} " in SCHEMA for key in res)  # the documented layout names every key
    assert json.loads(json.dumps(res)) == res


def test_dimensions_match_envs():
    from envs.perturbations import DIMENSIONS as ENV_DIMENSIONS
    assert DIMENSIONS == tuple(ENV_DIMENSIONS)


def test_grounding_counts_only_tasks_that_name_one_of_several_objects():
    from simeval.metrics import grounding

    def rec(task, named, moved):
        return {"task": task, "named_object": named, "first_moved": moved,
                "grounded": None if named is None or moved is None else named == moved}

    records = [rec("PutRedCubeInBowl", "red_cube", "red_cube"), rec("PutRedCubeInBowl", "red_cube", "blue_cube"),
               rec("PutRedCubeInBowl", "red_cube", None), rec("PutLeftCubeOnPlate", "cube_left", "cube_left"),
               rec("PushButton", None, None)]
    g = grounding(records)
    assert g["eligible_episodes"] == 4 and g["moved_any"] == 0.75
    assert g["overall"]["n"] == 3 and g["overall"]["named_first"] == 2
    assert g["by_task"]["PutRedCubeInBowl"]["rate"] == 0.5 and g["by_task"]["PutLeftCubeOnPlate"]["rate"] == 1.0
