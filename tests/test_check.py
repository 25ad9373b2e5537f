"""The regression check: Fisher p-values worked by hand, and pass/fail on runs built from records."""

from __future__ import annotations

import json
from math import comb

import pytest

from simeval.check import baseline_from_results, compare, fisher_less, format_report
from simeval.metrics import build_results

CELLS = ("nominal", "camera:3", "light:2", "noise:4")


def run_results(wins: dict[str, int], n: int = 50) -> dict:
    """A run with ``n`` episodes per cell, ``wins[cell]`` of them successful, spread over two tasks."""
    records = []
    for cell in CELLS:
        dim, _, level = cell.partition(":")
        for i in range(n):
            task = ("PutCubeOnPlate", "OpenDrawer")[i % 2]
            records.append({"id": f"s/{task}-Piper/{cell}/{i:04d}", "task": task, "robot": "Piper",
                            "perturbation": cell, "dimension": dim, "level": int(level or 0),
                            "success": i < wins.get(cell, 45), "error": None})
    return build_results(records, suite={"name": "smoke"}, policy="expert", timing={"wall_s": 1.0},
                         versions={"simeval": "0.1.0"}, run={"dir": "runs/x"})


# ------------------------------------------------------------------ Fisher

def test_fisher_against_hand_computed_tables():
    # run 0/4 vs baseline 4/4: margins K=4 successes of N=8, run draws 4 -> P(X<=0) = C(4,0)C(4,4)/C(8,4)
    assert fisher_less(0, 4, 4, 4) == pytest.approx(1 / 70, rel=1e-12)
    # run 1/5 vs 5/5: K=6, N=10 -> (C(6,1)C(4,4) + 0) / C(10,5) = 6/252
    assert fisher_less(1, 5, 5, 5) == pytest.approx(6 / 252, rel=1e-12)
    # run 2/6 vs 5/6: K=7, N=12, X >= 1 -> (C(7,1)C(5,5) + C(7,2)C(5,4)) / C(12,6) = (7 + 105)/924
    assert fisher_less(2, 6, 5, 6) == pytest.approx(112 / 924, rel=1e-12)
    # run 3/4 vs 1/4 (run better): P(X<=3) = 1 - P(X=4) = 1 - C(4,4)C(4,0)/C(8,4)
    assert fisher_less(3, 4, 1, 4) == pytest.approx(69 / 70, rel=1e-12)
    assert fisher_less(4, 4, 0, 4) == 1.0 and fisher_less(0, 0, 3, 5) == 1.0


def test_fisher_matches_direct_sum_and_is_stable():
    a, n1, c, n2 = 20, 50, 45, 50
    k_total, total = a + c, n1 + n2
    direct = sum(comb(k_total, k) * comb(total - k_total, n1 - k) for k in range(0, a + 1)) / comb(total, n1)
    assert fisher_less(a, n1, c, n2) == pytest.approx(direct, rel=1e-12)
    assert fisher_less(a, n1, c, n2) < 1e-6
    assert fisher_less(100, 5000, 4000, 5000) < 1e-300  # no overflow on big tables
    assert 0.5 < fisher_less(2500, 5000, 2500, 5000) < 0.52
    with pytest.raises(ValueError):
        fisher_less(6, 5, 1, 5)


# ------------------------------------------------------------------ compare

def test_same_run_passes():
    res = run_results({})
    result = compare(res, res)
    assert result.passed and not result.regressed
    names = [c.name for c in result.cells]
    assert names[0] == "overall" and "by_level[camera:3]" in names and "by_task_robot[OpenDrawer/Piper]" in names
    assert len(names) == 1 + len(CELLS) + 2
    assert all(c.p_value > 0.5 for c in result.cells)
    assert format_report(result).splitlines()[-1].startswith("PASS: 7 cell(s) compared")


def test_clearly_worse_cell_fails_and_is_named():
    result = compare(run_results({"camera:3": 20}), run_results({}))
    assert not result.passed
    regressed = [c.name for c in result.regressed]
    assert "by_level[camera:3]" in regressed
    assert [n for n in regressed if n.startswith("by_level")] == ["by_level[camera:3]"]
    cam = next(c for c in result.cells if c.name == "by_level[camera:3]")
    assert (cam.baseline_successes, cam.baseline_n, cam.run_successes, cam.run_n) == (45, 50, 20, 50)
    assert cam.baseline_rate == 0.9 and cam.run_rate == 0.4 and cam.p_value < 1e-6
    lines = format_report(result).splitlines()
    assert lines[0].startswith("REGRESSED ")  # regressed cells first
    assert lines[-1].startswith(f"FAIL: {len(regressed)} cell(s) regressed: ") and "by_level[camera:3]" in lines[-1]


def test_slightly_worse_within_chance_passes():
    result = compare(run_results({"camera:3": 42}), run_results({}))
    assert result.passed
    cam = next(c for c in result.cells if c.name == "by_level[camera:3]")
    assert cam.p_value > 0.05 and not cam.regressed


def test_large_drop_on_few_episodes_is_not_significant():
    # 9/10 -> 7/10 is a 20 pp drop but p ~ 0.29: chance, not a regression
    result = compare(run_results({"camera:3": 7}, n=10), run_results({"camera:3": 9}, n=10))
    cam = next(c for c in result.cells if c.name == "by_level[camera:3]")
    assert cam.baseline_rate - cam.run_rate == pytest.approx(0.2)
    assert cam.p_value > 0.2 and not cam.regressed and result.passed


def test_min_effect_guards_against_tiny_significant_drops():
    small = compare(run_results({"camera:3": 860}, n=1000), run_results({"camera:3": 900}, n=1000))
    cam = next(c for c in small.cells if c.name == "by_level[camera:3]")
    assert cam.p_value < 0.05 and not cam.regressed and small.passed  # 4 pp < 10 pp
    # exactly 10 pp (0.9 - 0.8 in floating point) is a regression when significant
    edge = compare(run_results({"camera:3": 80}, n=100), run_results({"camera:3": 90}, n=100))
    assert "by_level[camera:3]" in [c.name for c in edge.regressed]


def test_cells_missing_on_one_side_are_listed_not_failed():
    base = run_results({})
    run = json.loads(json.dumps(base))
    del run["by_level"]["noise:4"]
    run["by_level"]["layout:1"] = dict(run["by_level"]["light:2"])
    result = compare(run, base)
    assert result.passed and result.missing_in_run == ["by_level[noise:4]"]
    assert result.missing_in_baseline == ["by_level[layout:1]"]
    assert "not in run (not compared): by_level[noise:4]" in format_report(result)


def test_baseline_from_results_round_trip():
    res = run_results({})
    base = baseline_from_results(res)
    assert "timing" not in base and "versions" not in base and "run" not in base
    assert base["suite"] == {"name": "smoke"} and base["policy"] == "expert" and base["schema"] == res["schema"]
    assert "expert" in base["baseline_of"] and "smoke" in base["baseline_of"] and "runs/x" in base["baseline_of"]
    for key in ("overall", "by_dimension", "by_level", "by_task", "by_robot", "by_task_robot", "counts"):
        assert base[key] == res[key]
    base = json.loads(json.dumps(base))
    assert compare(res, base).passed
    assert not compare(run_results({"nominal": 10}), base).passed


def test_bad_input():
    with pytest.raises(ValueError, match="not a simeval results"):
        compare({"x": 1}, run_results({}))
    with pytest.raises(ValueError, match="schema"):
        compare({**run_results({}), "schema": "other/1"}, run_results({}))
    with pytest.raises(ValueError, match="alpha"):
        compare(run_results({}), run_results({}), alpha=0)
