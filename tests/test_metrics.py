"""Wilson intervals against the formula worked by hand, and summarize() on synthetic records."""

from __future__ import annotations

import json
import math

import pytest

from simeval.metrics import (DIMENSIONS, SCHEMA, SCHEMA_ID, Cell, build_results, format_cell, spearman, summarize,
                             wilson_interval)
from simeval.records import record_cell

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
    assert record_cell(r) == ("camera+light", 3)
    assert record_cell({"perturbation": "nominal"}) == ("nominal", 0)


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
                         "by_family", "by_family_dimension", "by_robot",
                         "by_task_robot", "counts", "solvable", "skipped", "timing", "versions", "run"]
    assert res["skipped"] is None  # nothing was left out
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


# ------------------------------------------------------------------ Spearman (level vs success)

def test_spearman_perfectly_decreasing_is_minus_one():
    # every level-1 episode succeeds, every level-2 one fails: the ranks agree perfectly, reversed
    recs = many(3, 3, dimension="camera", level=1) + many(3, 0, dimension="camera", level=2)
    s = spearman(recs)
    assert s["rho"] == -1.0 and s["n"] == 6
    assert s["p_value"] == 0.0  # |rho| = 1: t is infinite
    up = many(3, 0, dimension="camera", level=1) + many(3, 3, dimension="camera", level=2)
    assert spearman(up)["rho"] == 1.0


def test_spearman_worked_by_hand():
    # levels 1..5, one episode each, successes 1 1 0 0 0.
    # ranks: level 1..5; success (ties averaged) 4.5 4.5 2 2 2; both means 3.
    # sum dx*dy = (-2)(1.5) + (-1)(1.5) + 0 + (1)(-1) + (2)(-1) = -7.5; sum dx^2 = 10; sum dy^2 = 7.5
    # rho = -7.5 / sqrt(75) = -sqrt(3)/2.  t = rho*sqrt((n-2)/(1-rho^2)) = -3 with 3 df, and the t(3)
    # CDF is 1/2 + (t/(sqrt3 (1+t^2/3)) + atan(t/sqrt3))/pi, so p = 2*(1 - F(3)) = 1/3 - sqrt(3)/(2*pi).
    recs = [record(dimension="light", level=lvl, success=lvl <= 2, i=lvl) for lvl in range(1, 6)]
    s = spearman(recs)
    assert s == {"rho": round(-math.sqrt(3) / 2, 6), "p_value": float(f"{1 / 3 - math.sqrt(3) / (2 * math.pi):.4g}"),
                 "n": 5}
    assert s["rho"] == -0.866025 and s["p_value"] == 0.05767  # four significant digits


def test_spearman_undefined_is_null():
    one_level = many(10, 4, dimension="camera", level=3)
    assert spearman(one_level) == {"rho": None, "p_value": None, "n": 10}
    all_fail = many(5, 0, dimension="camera", level=1) + many(5, 0, dimension="camera", level=4)
    assert spearman(all_fail) == {"rho": None, "p_value": None, "n": 10}
    all_win = many(2, 2, dimension="camera", level=1) + many(2, 2, dimension="camera", level=2)
    assert spearman(all_win) == {"rho": None, "p_value": None, "n": 4}
    assert spearman([]) == {"rho": None, "p_value": None, "n": 0}


def test_spearman_counts_errors_as_failures():
    recs = many(2, 2, dimension="noise", level=1) + many(2, 2, dimension="noise", level=2)
    for r in recs[2:]:
        r["error"] = "policy raised ValueError"  # success=True, but errored: a failure
    assert spearman(recs)["rho"] == -1.0  # without the errors success would be constant (null)


def test_spearman_agrees_with_scipy_on_a_random_example():
    import random

    from scipy.stats import spearmanr

    rng = random.Random(7)
    recs = [record(dimension="layout", level=rng.randint(1, 5), success=rng.random() < 0.5, i=i) for i in range(60)]
    expected = spearmanr([r["level"] for r in recs], [int(r["success"]) for r in recs])
    s = spearman(recs)
    assert s["rho"] == round(float(expected.statistic), 6) and s["p_value"] == float(f"{expected.pvalue:.4g}")


def test_spearman_in_by_dimension():
    recs = synthetic() + many(4, 2, dimension="camera+light", level=3) + many(4, 0, dimension="camera+light", level=5)
    old = {k: v for k, v in record(dimension="light", level=4, success=True, i=99).items()
           if k not in ("dimension", "level")}  # a record of an older run: its cell comes from "perturbation"
    m = summarize(recs + [old])
    assert "spearman" not in m["by_dimension"]["nominal"]
    assert list(m["by_dimension"]["camera"]) == ["n", "successes", "errors", "rate", "ci95", "drop_vs_nominal",
                                                 "spearman"]
    # camera: level 1 6/10 (one error, on a failure), level 3 1/5 -> the phi coefficient, worked by hand:
    # (a*d - b*c) / sqrt(r1*r2*c1*c2) with level-3 wins a=1, losses b=4, level-1 wins c=6, losses d=4
    phi = (1 * 4 - 4 * 6) / math.sqrt(5 * 10 * 7 * 8)
    assert m["by_dimension"]["camera"]["spearman"]["rho"] == round(phi, 6)
    assert m["by_dimension"]["camera"]["spearman"]["n"] == 15
    light = m["by_dimension"]["light"]["spearman"]  # light:2 4/10, and the old record's light:4 1/1
    assert light["n"] == 11 and light["rho"] is not None and light["rho"] > 0
    composed = m["by_dimension"]["camera+light"]["spearman"]  # 2/4 at level 3, 0/4 at level 5
    assert composed["n"] == 8 and composed["rho"] == round((0 * 2 - 4 * 2) / math.sqrt(4 * 4 * 2 * 6), 6)
    assert "spearman" in SCHEMA and '"rho"' in SCHEMA and '"p_value"' in SCHEMA
    assert json.loads(json.dumps(m)) == m
