"""Paired statistics (hand-made cases and simulations), ``simeval compare`` and the paired check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from simeval.check import compare, compare_paired
from simeval.cli import main
from simeval.metrics import Z95, wilson_interval
from simeval.paired import PairedCounts, holm, mcnemar_exact, newcombe_interval

# --- hand-made cases ------------------------------------------------------------------------------


@pytest.mark.parametrize("table, two_sided", [
    (PairedCounts(1, 1, 7, 12), 18 / 256),  # 2 P(X <= 1), X ~ Bin(8, 1/2) = 2 (1 + 8) / 256
    (PairedCounts(0, 5, 0, 5), 2 / 32),  # all 5 discordant pairs one way
    (PairedCounts(40, 3, 3, 10), 1.0),  # balanced discordant pairs
    (PairedCounts(9, 0, 0, 1), 1.0),  # no discordant pair
])
def test_mcnemar_exact_by_hand(table, two_sided):
    assert mcnemar_exact(table) == pytest.approx(two_sided, rel=1e-12)


def test_one_sided_mcnemar_tests_a_drop_only():
    worse = PairedCounts(10, 0, 5, 10)  # A lost 5 episodes B won, and won none B lost
    assert mcnemar_exact(worse, "less") == pytest.approx(1 / 32)
    assert mcnemar_exact(worse, "greater") == pytest.approx(1.0)


def test_newcombe_with_no_correlation_adds_the_wilson_margins_in_quadrature():
    """(1, 1, 7, 12): AD - BC = 5 is below N/2, so phi is 0."""
    t = PairedCounts(1, 1, 7, 12)
    p1, p2 = 2 / 21, 8 / 21
    (l1, u1), (l2, u2) = wilson_interval(2, 21), wilson_interval(8, 21)
    low, high = newcombe_interval(t)
    assert low == pytest.approx(p1 - p2 - math.hypot(p1 - l1, u2 - p2))
    assert high == pytest.approx(p1 - p2 + math.hypot(u1 - p1, p2 - l2))
    assert (round(low, 3), round(high, 3)) == (-0.507, -0.026)


def test_newcombe_with_correlated_pairs():
    """(8, 0, 0, 8): phi = (64 - 8) / 64 = 0.875 and both margins are 8/16, so each bound is
    -/+ sqrt(2 - 2 phi) times the Wilson half-width: never zero width."""
    low, high = newcombe_interval(PairedCounts(8, 0, 0, 8))
    l, _ = wilson_interval(8, 16)
    assert high == pytest.approx((0.5 - l) * math.sqrt(2 - 2 * 0.875)) and low == pytest.approx(-high)
    # all successes on both sides: phi is 0 (a margin has no failures), the interval is +-(1 - l)
    low, high = newcombe_interval(PairedCounts(10, 0, 0, 0))
    assert high == pytest.approx(1 - 10 / (10 + Z95 ** 2)) and low == pytest.approx(-high)


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == [] and holm([0.7]) == [0.7] and holm([0.6, 0.6]) == [1.0, 1.0]


# --- simulations ----------------------------------------------------------------------------------

def _episodes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-episode success probabilities: most episodes easy or hard, as in real suites."""
    return rng.beta(0.5, 0.5, n)


def _table(a: np.ndarray, b: np.ndarray) -> PairedCounts:
    return PairedCounts(int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b)))


def test_newcombe_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = trials = 0
    for _ in range(400):
        p = _episodes(rng, 60)
        shift = rng.uniform(-0.2, 0.2)
        a = rng.random(60) < p
        b = rng.random(60) < np.clip(p + shift, 0, 1)
        truth = float(np.mean(p - np.clip(p + shift, 0, 1)))
        low, high = newcombe_interval(_table(a, b))
        covered += low <= truth <= high
        trials += 1
    assert covered / trials >= 0.93


def test_the_paired_test_false_alarm_rate_is_at_most_5_percent_for_the_same_policy():
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(2000):
        p = _episodes(rng, 180)
        alarms += mcnemar_exact(_table(rng.random(180) < p, rng.random(180) < p)) < 0.05
    assert alarms / 2000 <= 0.05


def _records(ok: np.ndarray) -> list[dict]:
    return [{"id": f"s/T-Panda/nominal/{i:04d}", "task": "T", "robot": "Panda", "dimension": "nominal", "level": 0,
             "success": bool(s), "error": None} for i, s in enumerate(ok)]


def _summary(ok: np.ndarray) -> dict:
    return {"overall": {"n": len(ok), "successes": int(ok.sum())}}


def _alarm_rates(rng: np.random.Generator, drop: float, reps: int, n: int = 200) -> dict[str, float]:
    """How often each check fails a run whose episodes succeed ``drop`` less often than the baseline's."""
    hits = {"paired": 0, "fisher": 0}
    for _ in range(reps):
        p = _episodes(rng, n)
        base, run = rng.random(n) < p, rng.random(n) < np.clip(p - drop, 0, 1)
        hits["paired"] += not compare_paired(_records(run), _records(base), alpha=0.05, min_effect=0.0).passed
        hits["fisher"] += not compare(_summary(run), _summary(base), alpha=0.05, min_effect=0.0).passed
    return {test: count / reps for test, count in hits.items()}


def test_the_paired_check_detects_a_smaller_regression_than_the_unpaired_one():
    """The same 200 episodes run twice. With no change, both checks fail at most 5% of runs; the
    smallest drop the paired check catches in 80% of repetitions is smaller than Fisher's."""
    rng = np.random.default_rng(2)
    false_alarms = _alarm_rates(rng, 0.0, reps=1000)
    assert false_alarms["paired"] <= 0.05 and false_alarms["fisher"] <= 0.05, false_alarms
    power = {drop: _alarm_rates(rng, drop, reps=150) for drop in (0.04, 0.08, 0.12, 0.16)}
    smallest = {test: min(d for d, rates in power.items() if rates[test] >= 0.8) for test in ("paired", "fisher")}
    assert smallest["paired"] < smallest["fisher"], power


# --- simeval compare ------------------------------------------------------------------------------

def _run_dir(path: Path, outcomes: dict[str, bool], errors: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True)
    lines = []
    for episode, ok in outcomes.items():
        dimension, level = ("nominal", 0) if "nominal" in episode else ("camera", 2)
        lines.append(json.dumps({"id": episode, "task": "T", "robot": "Panda", "dimension": dimension,
                                 "level": level, "success": ok, "steps": 10,
                                 "error": (errors or {}).get(episode)}))
    (path / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return path


IDS = [f"s/T-Panda/{v}/{i:04d}" for v in ("nominal", "camera:2") for i in range(10)]


def test_compare_counts_pairs_per_cell_and_adjusts_the_family(tmp_path, capsys):
    a = _run_dir(tmp_path / "a", {e: True for e in IDS}, errors={IDS[0]: "policy raised"})  # an error fails
    b = _run_dir(tmp_path / "b", {e: i % 2 == 0 for i, e in enumerate(IDS)})
    c = _run_dir(tmp_path / "c", {e: False for e in IDS[:15]})  # shares 15 episodes with the others
    assert main(["compare", f"A={a}", f"B={b}", str(c), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    ab = result["comparisons"][0]
    assert (ab["a"], ab["b"], ab["episodes"], ab["pairs"]) == ("A", "B", 20, 20)
    overall = ab["cells"][0]
    assert overall["cell"] == "overall" and (overall["only_a"], overall["only_b"]) == (10, 1)
    assert overall["difference"] == pytest.approx(0.45) and overall["ci95"][0] > 0
    assert [c["cell"] for c in ab["cells"]] == ["overall", "dimension[nominal]", "dimension[camera]"]
    family = [cell["p_value"] for comp in result["comparisons"] for cell in comp["cells"]]
    assert [cell["p_holm"] for comp in result["comparisons"] for cell in comp["cells"]] == pytest.approx(holm(family))
    assert result["comparisons"][1]["episodes"] == 15 and "Holm over all 9" in result["adjustment"]
    assert (tmp_path / "out" / "compare.png").stat().st_size > 5000
    assert "| overall | 20 | 95.0% | 50.0% | +45.0 pp" in capsys.readouterr().out


def test_pooled_seeds_pair_run_k_with_run_k_and_one_run_with_each(tmp_path):
    seeds_a = [_run_dir(tmp_path / f"a{k}", {e: k > 0 for e in IDS}) for k in range(3)]
    seeds_b = [_run_dir(tmp_path / f"b{k}", {e: k < 2 for e in IDS}) for k in range(3)]
    base = _run_dir(tmp_path / "base", {e: False for e in IDS})
    pooled = lambda name, runs: f"{name}={','.join(map(str, runs))}"  # noqa: E731
    assert main(["compare", pooled("A", seeds_a), pooled("B", seeds_b), str(base), "--out", str(tmp_path / "o")]) == 0
    comps = json.loads((tmp_path / "o" / "compare.json").read_text())["comparisons"]
    ab = comps[0]["cells"][0]
    # seed 0: A fails, B succeeds; seed 1: both succeed; seed 2: A succeeds, B fails
    assert comps[0]["pairs"] == 60 and (ab["only_a"], ab["only_b"]) == (20, 20)
    assert comps[1]["pairs"] == 60 and comps[1]["cells"][0]["only_a"] == 40  # A's 3 runs each against base


@pytest.mark.parametrize("make_args, message", [
    (lambda t: [str(t / "a"), str(t / "x")], "share no episode ids"),
    (lambda t: [f"A={t / 'a'},{t / 'b'}", f"B={t / 'a'},{t / 'b'},{t / 'a'}"], "pool the same number of runs"),
    (lambda t: [str(t / "a")], "at least two runs"),
    (lambda t: [str(t / "a"), str(t / "nothing")], "no episodes.jsonl"),
    (lambda t: [f"A={t / 'a'}", f"A={t / 'b'}"], "method names must differ"),
])
def test_compare_bad_input_is_one_line_and_exit_2(make_args, message, tmp_path, capsys):
    _run_dir(tmp_path / "a", {e: True for e in IDS})
    _run_dir(tmp_path / "b", {e: True for e in IDS})
    _run_dir(tmp_path / "x", {"other/T-Panda/nominal/0000": True})
    assert main(["compare", *make_args(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_compare_never_writes_into_a_directory_it_does_not_own(tmp_path, capsys):
    a, b = _run_dir(tmp_path / "a", {e: True for e in IDS}), _run_dir(tmp_path / "b", {e: True for e in IDS})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["compare", str(a), str(b), "--out", str(mine)]) == 2
    assert "did not write" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep"
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "out")]) == 0  # its own: rewritten


# --- the paired check through the CLI --------------------------------------------------------------

def test_check_is_paired_against_a_run_directory(tmp_path, capsys):
    from simeval.metrics import build_results

    def run(name: str, ok: list[bool]) -> Path:
        path = _run_dir(tmp_path / name, dict(zip(IDS, ok)))
        records = [json.loads(line) for line in (path / "episodes.jsonl").read_text().splitlines()]
        results = build_results(records, suite={"name": "s"}, policy=name, timing={}, versions={})
        (path / "results.json").write_text(json.dumps(results))
        return path

    base = run("base", [True] * 20)
    worse = run("worse", [i >= 8 for i in range(20)])  # 8 episodes lost, none gained
    assert main(["check", "--run", str(worse), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED overall" in out and "exact McNemar (paired)" in out
    assert main(["check", "--run", str(worse), "--baseline", str(base / "results.json")]) == 1
    assert "one-sided Fisher" in capsys.readouterr().out
