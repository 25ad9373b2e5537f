"""Success rates with Wilson 95% intervals, per dimension / level / task / robot, and results.json.

Reads episode records (one dict per finished episode, as appended to ``episodes.jsonl``) and knows
nothing about MuJoCo or policies: a record's (dimension, level) cell and the cell's name come from
:mod:`simeval.records` (``record_cell``, ``cell_key``), the one reading of variants. An episode whose
``error`` is set counts as a failure (in the rates and in each dimension's Spearman correlation of
level with success) and is also counted under ``errors``, so a crashing policy cannot look better
than a failing one.

The whole results.json is assembled by :func:`build_results`; its layout is :data:`SCHEMA`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from simeval.records import cell_key, record_cell

SCHEMA_ID = "simeval.results/1"

SCHEMA = """\
results.json, schema "simeval.results/1" (keys in this order):

  schema         "simeval.results/1"
  suite          dict, the suite as the harness resolved it (at least "name")
  policy         str, the policy's name or checkpoint
  overall        Cell
  grounding      {"overall": G, "by_task": {task: G}, "eligible_episodes": int, "moved_any": float | null}
                 over tasks whose instruction names one object among several movable ones:
                 G = {"n", "named_first", "rate", "ci95"}, n = eligible episodes that moved an object
  by_dimension   {dimension: Cell + {"drop_vs_nominal": float | null}
                              (+ {"spearman": S} on every dimension but "nominal")}
                 keys: "nominal", the seven dimensions in canonical order, then composed
                 dimensions such as "camera+light"; drop = nominal rate - this rate (null
                 without nominal episodes); only dimensions that have episodes appear;
                 S = {"rho": float | null, "p_value": float | null, "n": int}: Spearman's rank
                 correlation between level (1-5; a composed dimension's is its highest) and
                 success (1/0, errors count as failures) over the dimension's n episodes that
                 have a level (LIBERO-Plus's variants without one are left out), with
                 its two-sided p-value (scipy.stats.spearmanr; rho to 6 decimals, p to 4 significant
                 digits); both null when it is undefined
                 (fewer than 2 distinct levels, or success constant); negative rho: success
                 falls as the level rises
  by_level       {"nominal" | "dimension:level": Cell}, e.g. "camera:3", "camera+light:2";
                 dimensions in the order above, levels ascending
  by_task        {task: Cell}, tasks in first-seen order
  by_family      {family: Cell}: simeval's task families, or the LIBERO suite (libero_spatial ...),
                 the column a published LIBERO table reports (and the Total column of LIBERO-Plus's)
  by_family_dimension {family: {dimension: Cell}}: families as in by_family, dimensions in
                 by_dimension's order, only pairs that have episodes; LIBERO-Plus's published table
                 (a row per suite, a column per category); its Total column is by_family, its
                 all-suites row by_dimension (and overall)
  by_robot       {robot: Cell}, robots in first-seen order
  by_task_robot  {"Task/Robot": Cell}, first-seen order
  counts         {"episodes": int, "successes": int, "errors": int,
                  "by_dimension": {dimension: episodes}}
  solvable       null, except in world "libero_plus" with envs/libero/plus_solvability.json present:
                 {"known": int, "solvable": int, "unknown": int, "cell": Cell}: known = episodes
                 whose variant the table lists, solvable = those of them the privileged expert
                 solved, unknown = episodes of variants it does not list, cell = the policy's
                 success over the solvable ones (simeval.libero.solvability)
  skipped        null, or {"episodes": int, "by_dimension": {dimension: episodes}, "reason": str}:
                 the suite's episodes this machine could not run and so left out (never run,
                 never recorded, not counted above: LIBERO-Plus's light, background and layout
                 variants without its asset archive; simeval.worlds.unrunnable)
  timing         {"wall_s", "env_steps", "env_steps_per_s", "episodes_per_s"}
  versions       {"simeval", "mujoco", "numpy", "gymnasium", "python"}
  run            dict, free-form facts about the run (directory, workers, start time ...)

Cell = {"n": int, "successes": int, "errors": int, "rate": float | null (null when n == 0),
        "ci95": [low, high]}   (Wilson score interval, 95%)
A baseline for ``simeval check`` has the same layout without timing/versions/run, plus
"baseline_of": str (see simeval.check.baseline_from_results).
"""

# Canonical order; mirrors envs.perturbations.DIMENSIONS (a test keeps them equal) without
# importing envs, so that metrics stay free of MuJoCo.
DIMENSIONS = ("camera", "robot_init", "language", "light", "background", "noise", "layout")
NOMINAL = "nominal"
Z95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: unlike p +- z*se it stays inside [0, 1] and is sane at 0/n and n/n."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..n={n}, got {successes}")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


@dataclass(frozen=True)
class Cell:
    """Outcome counts of a group of episodes and their success rate with its 95% interval."""

    n: int
    successes: int
    errors: int
    rate: float | None
    ci95_low: float
    ci95_high: float

    @classmethod
    def of(cls, records: Iterable[dict]) -> "Cell":
        n = successes = errors = 0
        for record in records:
            n += 1
            successes += is_success(record)
            errors += bool(record.get("error"))
        low, high = wilson_interval(successes, n)
        return cls(n, successes, errors, successes / n if n else None, low, high)

    def to_dict(self) -> dict[str, Any]:
        rate = None if self.rate is None else round(self.rate, 6)
        return {"n": self.n, "successes": self.successes, "errors": self.errors, "rate": rate,
                "ci95": [round(self.ci95_low, 6), round(self.ci95_high, 6)]}


def is_success(record: dict) -> bool:
    """An episode succeeded when it says so and did not end in an error."""
    return bool(record.get("success")) and not record.get("error")


def _dimension_sort_key(dimension: str) -> tuple:
    """nominal, then the canonical dimensions, then composed ones (by their parts), then unknown."""
    if dimension == NOMINAL:
        return (0,)
    parts = dimension.split("+")
    if all(p in DIMENSIONS for p in parts):
        return (1 if len(parts) == 1 else 2, len(parts), tuple(DIMENSIONS.index(p) for p in parts))
    return (3, dimension)


def spearman(records: Sequence[dict]) -> dict[str, Any]:
    """Spearman's rho between level and success (errors fail) over ``records``, with its p-value.

    Episodes without a level (level 0 of a dimension: LIBERO-Plus variants whose name gives none) are
    left out, and ``n`` counts the others. ``rho`` and ``p_value`` are None when the correlation is
    undefined: fewer than two distinct levels, or every episode with the same outcome (scipy would
    warn and return NaN)."""
    records = [r for r in records if record_cell(r)[1] > 0]  # a bare category (level 0) says nothing of levels
    levels = [record_cell(r)[1] for r in records]
    wins = [int(is_success(r)) for r in records]
    rho = p_value = None
    if len(set(levels)) >= 2 and len(set(wins)) >= 2:
        from scipy.stats import spearmanr  # imported only when there is a correlation to compute

        result = spearmanr(levels, wins)
        rho = None if math.isnan(result.statistic) else round(float(result.statistic), 6)
        p_value = None if math.isnan(result.pvalue) else float(f"{result.pvalue:.4g}")  # tiny p-values stay > 0
    return {"rho": rho, "p_value": p_value, "n": len(records)}


def _grouped(records: Sequence[dict], key) -> dict[Any, list[dict]]:
    groups: dict[Any, list[dict]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    return groups


def summarize(records: Sequence[dict]) -> dict[str, Any]:
    """The metrics part of results.json (see :data:`SCHEMA`), with deterministic key order."""
    by_dim = _grouped(records, lambda r: record_cell(r)[0])
    dims = sorted(by_dim, key=_dimension_sort_key)
    nominal_rate = Cell.of(by_dim[NOMINAL]).rate if NOMINAL in by_dim else None

    by_dimension: dict[str, dict] = {}
    for dim in dims:
        cell = Cell.of(by_dim[dim])
        drop = None if nominal_rate is None or cell.rate is None else round(nominal_rate - cell.rate, 6)
        by_dimension[dim] = {**cell.to_dict(), "drop_vs_nominal": drop}
        if dim != NOMINAL:
            by_dimension[dim]["spearman"] = spearman(by_dim[dim])

    by_level_groups = _grouped(records, record_cell)
    by_level = {cell_key(*key): Cell.of(by_level_groups[key]).to_dict()
                for key in sorted(by_level_groups, key=lambda k: (_dimension_sort_key(k[0]), k[1]))}

    def cells(key) -> dict[str, dict]:  # dicts keep first-seen order
        return {name: Cell.of(group).to_dict() for name, group in _grouped(records, key).items()}

    overall = Cell.of(records)
    return {
        "overall": overall.to_dict(),
        "grounding": grounding(records),
        "by_dimension": by_dimension,
        "by_level": by_level,
        "by_task": cells(lambda r: str(r.get("task"))),
        "by_family": cells(lambda r: str(r.get("family"))),
        "by_family_dimension": by_family_dimension(records),
        "by_robot": cells(lambda r: str(r.get("robot"))),
        "by_task_robot": cells(lambda r: f"{r.get('task')}/{r.get('robot')}"),
        "counts": {"episodes": overall.n, "successes": overall.successes, "errors": overall.errors,
                   "by_dimension": {dim: len(by_dim[dim]) for dim in dims}},
    }


def by_family_dimension(records: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """Family x dimension cells: the layout of LIBERO-Plus's published table, for every world alike."""
    out: dict[str, dict[str, dict]] = {}
    for family, group in _grouped(records, lambda r: str(r.get("family"))).items():
        by_dim = _grouped(group, lambda r: record_cell(r)[0])
        out[family] = {dim: Cell.of(by_dim[dim]).to_dict() for dim in sorted(by_dim, key=_dimension_sort_key)}
    return out


def solvable(records: Sequence[dict], suite: dict) -> dict[str, Any] | None:
    """LIBERO-Plus runs: success over the variants the privileged expert solves; None for other worlds
    or without the solvability table (imported here: only LIBERO-Plus runs read it)."""
    from simeval.libero import plus, solvability

    if suite.get("world") != plus.WORLD:
        return None
    table = solvability.load_table()
    return None if table is None else solvability.summary(records, table)


def grounding(records: Sequence[dict]) -> dict[str, Any]:
    """How often the policy moved the named object first, on tasks that name one among several.

    Counted over the episodes where some object was moved (an episode that moves nothing says
    nothing about grounding); ``moved_any`` is the share of eligible episodes that moved one.
    """
    eligible = [r for r in records if r.get("named_object")]
    decided = [r for r in eligible if r.get("first_moved")]

    def rate(group: Sequence[dict]) -> dict[str, Any]:
        hits = sum(1 for r in group if r.get("grounded"))
        low, high = wilson_interval(hits, len(group))
        return {"n": len(group), "named_first": hits, "rate": round(hits / len(group), 6) if group else None,
                "ci95": [round(low, 6), round(high, 6)]}

    by_task = {task: rate(group) for task, group in _grouped(decided, lambda r: str(r.get("task"))).items()}
    return {"overall": rate(decided), "by_task": by_task, "eligible_episodes": len(eligible),
            "moved_any": round(len(decided) / len(eligible), 6) if eligible else None}


def build_results(records: Sequence[dict], *, suite: dict, policy: str, timing: dict, versions: dict,
                  run: dict | None = None, skipped: dict | None = None) -> dict[str, Any]:
    """The whole results.json dict (layout in :data:`SCHEMA`), so the schema lives in one place."""
    return {"schema": SCHEMA_ID, "suite": dict(suite), "policy": str(policy), **summarize(records),
            "solvable": solvable(records, suite), "skipped": None if skipped is None else dict(skipped),
            "timing": dict(timing), "versions": dict(versions), "run": dict(run or {})}


def format_cell(cell: dict | None) -> str:
    """"72% [60-82] (n=50)": the text of one cell in tables and reports."""
    if not cell or not cell.get("n"):
        return "–"
    low, high = cell["ci95"]
    return f"{pct(cell['rate'])}% [{pct(low)}-{pct(high)}] (n={cell['n']})"


def pct(value: float) -> str:
    """Whole percent, but never rounded onto 0 or 100 when it is not exactly that."""
    text = f"{value * 100:.0f}"
    if (text == "100" and value < 1.0) or (text == "0" and value > 0.0):
        text = f"{value * 100:.1f}"
    return text


def format_drop(drop: float | None) -> str:
    """Drop vs nominal in percentage points; positive means worse than nominal."""
    return "–" if drop is None else f"{drop * 100:+.0f} pp"
