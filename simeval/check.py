"""Regression check for CI: is a run's success rate lower than a baseline's, beyond chance?

Every cell present in both results (overall, each ``by_level`` cell, each ``by_task_robot`` cell)
gets a one-sided test. A cell regresses only when the drop is both unlikely under chance
(p < alpha) and large enough to matter (baseline rate - run rate >= min_effect), so a small, noisy
dip does not fail CI and a big drop seen on few episodes does not either.

- **Paired** (:func:`compare_paired`), when the baseline is a run directory whose episodes.jsonl
  covers the run's episodes: a one-sided exact McNemar test on the episodes both ran, which only
  the discordant episodes move. It detects smaller regressions at the same false-alarm rate.
- **Unpaired** (:func:`compare`), for a stored summary baseline (counts only): a one-sided Fisher
  exact test per cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simeval import schemas
from simeval.identity import Episodes, episode_mismatch, suite_of
from simeval.metrics import SCHEMA_ID
from simeval.paired import PairedCounts, mcnemar_exact
from simeval.records import cell_key, read_records, record_cell
from simeval.schemas import RESULTS, FileFormatError, key_path

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
    test: str = "one-sided Fisher"

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


def _check_settings(alpha: float, min_effect: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    if not 0 <= min_effect <= 1:
        raise ValueError(f"min_effect must be within [0, 1], got {min_effect}")


def compare(run: dict, baseline: dict, alpha: float = 0.05, min_effect: float = 0.10) -> CheckResult:
    """Test every cell present in both ``run`` and ``baseline`` (results.json dicts) for a drop."""
    _check_settings(alpha, min_effect)
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


def _record_cells(record: dict) -> list[str]:
    """The check's cells an episode record belongs to (the names ``_cells`` gives them)."""
    dimension, level = record_cell(record)
    return ["overall", f"by_level[{cell_key(dimension, level)}]",
            f"by_task_robot[{record.get('task')}/{record.get('robot')}]"]


def compare_paired(run: list[dict], baseline: list[dict], alpha: float = 0.05,
                   min_effect: float = 0.10) -> CheckResult:
    """The paired check on two runs' episode records, over the episode ids both have: per cell, a
    one-sided exact McNemar test that the run succeeds less often than the baseline. Errors count
    as failures."""
    _check_settings(alpha, min_effect)
    ok = lambda r: bool(r.get("success")) and not r.get("error")  # noqa: E731
    base = {r["id"]: r for r in baseline}
    tables: dict[str, PairedCounts] = {}
    for record in run:
        other = base.get(record["id"])
        if other is None:
            continue
        for cell in _record_cells(record):
            tables[cell] = tables.get(cell, PairedCounts()).add(ok(record), ok(other))
    compared = []
    for name in sorted(tables, key=lambda n: (n != "overall", n)):
        t = tables[name]
        p = mcnemar_exact(t, alternative="less")
        run_successes, base_successes = t.both + t.only_a, t.both + t.only_b
        regressed = p < alpha and t.rate_b - t.rate_a >= min_effect - _EPS
        compared.append(CellComparison(name, t.n, base_successes, t.rate_b, t.n, run_successes, t.rate_a, p,
                                       regressed))
    return CheckResult(compared, alpha, min_effect, test="one-sided exact McNemar (paired)")


SET_KEYS = ("tasks", "robots", "perturbations", "episodes", "per_category")  # the suite fields that decide which
# episodes a run has


def suite_mismatch(run: dict, baseline: dict, logs: tuple[list[dict], list[dict]] | None = None) -> str | None:
    """Why ``run`` and ``baseline`` are not runs of the same episodes (None when they are).

    The same episodes (``simeval.identity.episode_mismatch``: suite, seed and the suite fields that
    make an episode, and with ``logs``, both runs' records, id by id), and the same set of them: the
    suite fields that decide it (tasks, robots, variants, episodes per cell) and the same number."""
    suites = [suite_of(r.get("suite")) for r in (run, baseline)]
    mismatch = episode_mismatch([Episodes("the run", suites[0], logs[0] if logs else ()),
                                 Episodes("the baseline", suites[1], logs[1] if logs else ())])
    if mismatch:
        return mismatch
    differ = [k for k in SET_KEYS if k in suites[0] and k in suites[1] and suites[0][k] != suites[1][k]]
    if differ:
        key = differ[0]
        return (f"suite {suites[0].get('name')!r} differs in {', '.join(differ)} ({key}: run {suites[0][key]!r}, "
                f"baseline {suites[1][key]!r}), so the episodes differ")
    counts = [(r.get("counts") or {}).get("episodes") for r in (run, baseline)]
    if None not in counts and counts[0] != counts[1]:
        said = [_skipped(r) for r in (run, baseline)]
        return f"the run has {counts[0]} episodes{said[0]}, the baseline {counts[1]}{said[1]}"
    return None


def _skipped(results: dict) -> str:
    """`` (60 skipped: <reason>)`` for a run that left episodes out (``results.json``'s ``skipped``)."""
    skipped = results.get("skipped")
    return f" ({skipped['episodes']} skipped: {skipped['reason']})" if isinstance(skipped, dict) else ""


def validate_results(data: Any, where: str) -> dict:
    """``data`` when it is a results.json or baseline (:data:`simeval.schemas.RESULTS`, and no cell
    with more successes or errors than episodes, ``counts`` agreeing with ``overall``); else one line
    naming ``where``, the key and what was expected."""
    schemas.check(data, RESULTS, where)
    cells: dict[tuple, dict] = {("overall",): data["overall"]}
    for section in ("by_dimension", "by_level", "by_task", "by_family", "by_robot", "by_task_robot"):
        cells.update({(section, key): cell for key, cell in (data.get(section) or {}).items()})
    for family, row in (data.get("by_family_dimension") or {}).items():
        cells.update({("by_family_dimension", family, dim): cell for dim, cell in row.items()})
    solvable = data.get("solvable") or {}
    if solvable:
        cells[("solvable", "cell")] = solvable["cell"]
    for path, cell in cells.items():
        bad = [k for k in ("successes", "errors") if cell.get(k, 0) > cell["n"]]
        if bad:
            raise FileFormatError(f"{where}: {key_path(path)}: {bad[0]} {cell[bad[0]]} exceed n {cell['n']}")
    if solvable and not solvable["cell"]["n"] == solvable["solvable"] <= solvable["known"]:
        raise FileFormatError(f"{where}: solvable: {solvable['solvable']} solvable of {solvable['known']} known "
                              f"episodes, cell.n {solvable['cell']['n']}; cell.n is the solvable count, at most known")
    if solvable and solvable["known"] + solvable["unknown"] != data["overall"]["n"]:
        raise FileFormatError(f"{where}: solvable: {solvable['known']} known + {solvable['unknown']} unknown episodes, "
                              f"but overall.n is {data['overall']['n']}; every episode is one or the other")
    counts = data.get("counts") or {}
    for key, cell_key_ in (("episodes", "n"), ("successes", "successes"), ("errors", "errors")):
        if key in counts and cell_key_ in data["overall"] and counts[key] != data["overall"][cell_key_]:
            raise FileFormatError(f"{where}: counts.{key}: {counts[key]}, but overall.{cell_key_} is "
                                  f"{data['overall'][cell_key_]}; they are the same count")
    return data


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
    rule = f"{result.test} p < {result.alpha:g} and drop >= {result.min_effect * 100:.0f} pp"
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
    if results.get("skipped"):  # the episodes its run left out, so that a check can say why counts differ
        baseline["skipped"] = results["skipped"]
    return baseline


def episode_logs(run: Path, base_dir: Path | None) -> tuple[list[dict], list[dict]] | None:
    """Both runs' episode records, when ``run`` and the baseline are run directories with an
    episodes.jsonl each (None otherwise); a damaged log is one line naming the file and the line."""
    logs = [run / "episodes.jsonl" if run.is_dir() else None, base_dir / "episodes.jsonl" if base_dir else None]
    if not all(log is not None and log.is_file() for log in logs):
        return None
    return read_records(logs[0]), read_records(logs[1])


def paired_records(logs: tuple[list[dict], list[dict]] | None) -> tuple[list[dict], list[dict]] | None:
    """``logs`` when the paired check applies: the baseline's records hold every episode of the
    run's, and they are the same episodes; None otherwise (the unpaired check)."""
    if logs is None:
        return None
    run_records, base_records = logs
    missing = {r["id"] for r in run_records} - {r["id"] for r in base_records}
    if missing or not run_records:
        print(f"--baseline's episodes.jsonl lacks {len(missing)} of the run's episodes: unpaired check")
        return None
    differ = episode_mismatch([Episodes("the run", records=run_records), Episodes("the baseline", records=base_records)])
    if differ:
        print(f"the runs' episodes differ ({differ}): unpaired check")
        return None
    return logs
