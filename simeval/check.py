"""Regression check for CI: is a run's success rate lower than a baseline's, beyond chance?

Every cell present in both results (overall, each ``by_level`` cell, each ``by_task_robot`` cell)
gets a one-sided Fisher exact test. A cell regresses only when the drop is both unlikely under
chance (p < alpha) and large enough to matter (baseline rate - run rate >= min_effect), so a
small, noisy dip does not fail CI and a big drop seen on few episodes does not either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from simeval.metrics import SCHEMA_ID

SECTIONS = ("by_level", "by_task_robot")  # besides "overall"
METRIC_KEYS = ("overall", "by_dimension", "by_level", "by_task", "by_robot", "by_task_robot", "counts")
_EPS = 1e-9  # so that 0.9 - 0.8 counts as a 0.10 drop despite floating point


def fisher_less(run_successes: int, run_n: int, base_successes: int, base_n: int) -> float:
    """One-sided Fisher exact p-value that the run's success probability is below the baseline's.

    With the margins fixed, the run's successes X are hypergeometric; p = P(X <= observed).
    Exact integer arithmetic (math.comb), one division at the end: no overflow, no cancellation.
    """
    for s, n, what in ((run_successes, run_n, "run"), (base_successes, base_n, "baseline")):
        if not 0 <= s <= n:
            raise ValueError(f"{what} successes must be within 0..n={n}, got {s}")
    total, total_successes = run_n + base_n, run_successes + base_successes
    if run_n == 0 or base_n == 0:
        return 1.0
    low = max(0, run_n - (total - total_successes))
    tail = sum(math.comb(total_successes, k) * math.comb(total - total_successes, run_n - k)
               for k in range(low, run_successes + 1))
    return min(1.0, tail / math.comb(total, run_n))


@dataclass(frozen=True)
class CellComparison:
    """One cell compared between baseline and run."""

    name: str
    baseline_n: int
    baseline_successes: int
    baseline_rate: float
    run_n: int
    run_successes: int
    run_rate: float
    p_value: float
    regressed: bool


@dataclass
class CheckResult:
    """Every compared cell, the test settings, and the cells only one side has."""

    cells: list[CellComparison]
    alpha: float
    min_effect: float
    missing_in_run: list[str] = field(default_factory=list)
    missing_in_baseline: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> list[CellComparison]:
        return [c for c in self.cells if c.regressed]

    @property
    def passed(self) -> bool:
        return not self.regressed


def _cells(results: dict, what: str) -> dict[str, dict]:
    """The comparable cells of a results dict, named "overall", "by_level[camera:3]" ..."""
    if not isinstance(results, dict) or "overall" not in results:
        raise ValueError(f"{what} is not a simeval results dict (no 'overall'); expected schema {SCHEMA_ID}")
    schema = results.get("schema", SCHEMA_ID)
    if not str(schema).startswith("simeval.results/"):
        raise ValueError(f"{what} has schema {schema!r}; expected {SCHEMA_ID}")
    cells = {"overall": results["overall"]}
    for section in SECTIONS:
        entries = results.get(section) or {}
        if not isinstance(entries, dict):
            raise ValueError(f"{what}: {section} must be an object of cells, got {type(entries).__name__}")
        for key, cell in entries.items():
            cells[f"{section}[{key}]"] = cell
    for name, cell in cells.items():
        counts = [cell.get(k) if isinstance(cell, dict) else None for k in ("n", "successes")]
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts) or not 0 <= counts[1] <= counts[0]:
            raise ValueError(f"{what}: cell {name} is not a cell with integer n >= successes >= 0: {cell!r}"[:300])
    return {name: cell for name, cell in cells.items() if cell["n"]}


def compare(run: dict, baseline: dict, alpha: float = 0.05, min_effect: float = 0.10) -> CheckResult:
    """Test every cell present in both ``run`` and ``baseline`` (results.json dicts) for a drop."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    if not 0 <= min_effect <= 1:
        raise ValueError(f"min_effect must be within [0, 1], got {min_effect}")
    run_cells, base_cells = _cells(run, "run"), _cells(baseline, "baseline")
    compared = []
    for name, base in base_cells.items():
        if name not in run_cells:
            continue
        cur = run_cells[name]
        base_rate, run_rate = base["successes"] / base["n"], cur["successes"] / cur["n"]
        p = fisher_less(cur["successes"], cur["n"], base["successes"], base["n"])
        regressed = p < alpha and base_rate - run_rate >= min_effect - _EPS
        compared.append(CellComparison(name, base["n"], base["successes"], base_rate,
                                       cur["n"], cur["successes"], run_rate, p, regressed))
    return CheckResult(compared, alpha, min_effect,
                       missing_in_run=[n for n in base_cells if n not in run_cells],
                       missing_in_baseline=[n for n in run_cells if n not in base_cells])


EPISODE_SET_KEYS = ("tasks", "robots", "perturbations", "episodes", "seed", "max_steps", "image_size")


def suite_mismatch(run: dict, baseline: dict) -> str | None:
    """Why ``run`` and ``baseline`` are not runs of the same episodes (None when they are).

    Same suite name, the same suite fields that decide the episodes (tasks, robots, variants, episodes
    per cell, seed, step limit, image size) and the same number of episodes."""
    suites = [r.get("suite") if isinstance(r.get("suite"), dict) else {"name": r.get("suite")} for r in (run, baseline)]
    if suites[0].get("name") != suites[1].get("name"):
        return f"the run is of suite {suites[0].get('name')!r}, the baseline of suite {suites[1].get('name')!r}"
    differ = [k for k in EPISODE_SET_KEYS if k in suites[0] and k in suites[1] and suites[0][k] != suites[1][k]]
    if differ:
        key = differ[0]
        return (f"suite {suites[0].get('name')!r} differs in {', '.join(differ)} ({key}: run {suites[0][key]!r}, "
                f"baseline {suites[1][key]!r}), so the episodes differ")
    counts = [(r.get("counts") or {}).get("episodes") for r in (run, baseline)]
    if None not in counts and counts[0] != counts[1]:
        return f"the run has {counts[0]} episodes, the baseline {counts[1]}"
    return None


def _line(c: CellComparison) -> str:
    tag = "REGRESSED" if c.regressed else "ok       "
    return (f"{tag} {c.name}: {c.baseline_rate:.0%} ({c.baseline_successes}/{c.baseline_n}) -> "
            f"{c.run_rate:.0%} ({c.run_successes}/{c.run_n}), "
            f"{(c.run_rate - c.baseline_rate) * 100:+.0f} pp, p={c.p_value:.2g}")


def format_report(result: CheckResult) -> str:
    """Human-readable lines: regressed cells first, then the rest, then one PASS/FAIL line."""
    ordered = result.regressed + [c for c in result.cells if not c.regressed]
    lines = [_line(c) for c in ordered]
    if result.missing_in_run:
        lines.append(f"not in run (not compared): {', '.join(result.missing_in_run)}")
    if result.missing_in_baseline:
        lines.append(f"not in baseline (not compared): {', '.join(result.missing_in_baseline)}")
    rule = f"one-sided Fisher p < {result.alpha:g} and drop >= {result.min_effect * 100:.0f} pp"
    if result.passed:
        lines.append(f"PASS: {len(result.cells)} cell(s) compared, none regressed ({rule})")
    else:
        names = ", ".join(c.name for c in result.regressed)
        lines.append(f"FAIL: {len(result.regressed)} cell(s) regressed: {names} ({rule})")
    return "\n".join(lines)


def baseline_from_results(results: dict) -> dict[str, Any]:
    """What ``simeval check --update`` writes: suite, policy and metrics, without timing/versions/run."""
    _cells(results, "results")  # validates
    suite = results.get("suite") or {}
    suite_name = suite.get("name", "?") if isinstance(suite, dict) else str(suite)
    run = results.get("run") or {}
    where = run.get("id") or run.get("dir") or run.get("run_dir")
    note = f"policy {results.get('policy', '?')} on suite {suite_name}" + (f", run {where}" if where else "")
    baseline: dict[str, Any] = {"schema": results.get("schema", SCHEMA_ID), "baseline_of": note,
                                "suite": suite, "policy": results.get("policy")}
    baseline.update({key: results[key] for key in METRIC_KEYS if key in results})
    return baseline
