"""What summary.md and report.html show of a LIBERO-Plus run, as data both of them render.

LIBERO-Plus's papers report success in one table: a row per LIBERO suite (LIBERO-Spatial, -Object,
-Goal, -Long), a column per perturbation category and a Total over the row's episodes. The table is
read from results.json (``by_family_dimension``, ``by_family``, ``by_dimension``, ``overall``), the
difficulty levels from ``by_level``, so a report of an old run is the report of its results.json. The
sentences on the sample, the skipped episodes and the solvable variants are here too, so that the two
views say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simeval.libero import plus
from simeval.metrics import NOMINAL, format_cell
from simeval.records import cell_key

SUITE_TITLES = {"libero_spatial": "LIBERO-Spatial", "libero_object": "LIBERO-Object",
                "libero_goal": "LIBERO-Goal", "libero_10": "LIBERO-Long"}  # the published table's rows
LEVELS = (1, 2, 3, 4, 5)
NO_LEVEL = 0  # a variant that does not say how strong it is (camera, language, light, background, _add_ layouts)


@dataclass(frozen=True)
class CellTable:
    """A table of cells: column titles (the first one heads the row titles) and rows (title, cells)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, tuple[dict | None, ...]], ...]


def is_plus_run(results: dict) -> bool:
    """A run of the ``libero_plus`` world."""
    suite = results.get("suite")
    return isinstance(suite, dict) and suite.get("world") == plus.WORLD


def published_table(results: dict) -> CellTable:
    """Suites x categories and Total, as LIBERO-Plus publishes it, and an "All" row over every suite.

    Suites in LIBERO's order (any other family after them); only suites with episodes have a row (a
    results.json without ``by_family_dimension``, from an older run, fills the Total column only)."""
    cross = results.get("by_family_dimension") or {}
    by_family = results.get("by_family") or {}
    present = [*cross, *(f for f in by_family if f not in cross)]  # results.json of older runs: by_family only
    families = [b for b in plus.BENCHMARKS if b in present] + [f for f in present if f not in plus.BENCHMARKS]
    rows = [(SUITE_TITLES.get(f, f), (*((cross.get(f) or {}).get(d) for d in plus.CATEGORIES), by_family.get(f)))
            for f in families]
    by_dimension = results.get("by_dimension") or {}
    rows.append(("All", (*(by_dimension.get(d) for d in plus.CATEGORIES), results.get("overall"))))
    return CellTable(("Suite", *(plus.TITLES[d] for d in plus.CATEGORIES), "Total"), tuple(rows))


def level_table(results: dict) -> CellTable:
    """Category x difficulty level 1-5, "No level" (the variants that give none) and all levels."""
    by_level = results.get("by_level") or {}
    by_dimension = results.get("by_dimension") or {}

    def cell(dimension: str, level: int) -> dict | None:
        key = cell_key(dimension, level)  # "nominal" is never a category's cell (it was level 0's name once)
        return None if key == NOMINAL else by_level.get(key)

    rows = tuple((plus.TITLES[d], (*(cell(d, lvl) for lvl in (*LEVELS, NO_LEVEL)), by_dimension[d]))
                 for d in plus.CATEGORIES if d in by_dimension)
    return CellTable(("Category", *(f"Level {lvl}" for lvl in LEVELS), "No level", "All"), rows)


def sample_line(results: dict) -> str:
    """Which variants the run drew: so many per suite and category (and the seed), or the full set."""
    suite = results.get("suite") if isinstance(results.get("suite"), dict) else {}
    per_category, seed = suite.get("per_category"), suite.get("seed")
    if not per_category:
        return "Sample: the full set, every LIBERO-Plus variant of each suite run."
    seeded = f", seeded (seed {seed})" if seed is not None else ""
    variants = "variant" if per_category == 1 else "variants"
    return f"Sample: {per_category} {variants} per suite and category{seeded}."


def skipped_episodes(results: dict) -> int:
    """How many of the sample's episodes were not run (``skipped`` in results.json; none in older ones)."""
    skipped = results.get("skipped")
    return int(skipped.get("episodes") or 0) if isinstance(skipped, dict) else 0


def skipped_line(results: dict) -> str:
    """How many episodes were not run, in which categories and why."""
    if not skipped_episodes(results):
        return "Skipped: none; every episode of the sample ran."
    skipped = results["skipped"]
    by_dim: dict[str, Any] = skipped.get("by_dimension") or {}
    order = [d for d in plus.CATEGORIES if d in by_dim] + [d for d in by_dim if d not in plus.CATEGORIES]
    parts = ", ".join(f"{d} {by_dim[d]}" for d in order)
    reason = str(skipped.get("reason") or "no reason given")
    episodes = "episode" if skipped["episodes"] == 1 else "episodes"
    return f"{skipped['episodes']} {episodes} skipped ({parts}): {reason}; they are not counted."


def solvable_line(results: dict) -> str:
    """The policy's success on the variants the privileged expert solves, beside its raw rate."""
    solvable = results.get("solvable")
    if not isinstance(solvable, dict):
        return ("Success on the variants the expert solves: not known (no solvability table, "
                "envs/libero/plus_solvability.json).")
    unknown = f"; {solvable['unknown']} episodes' variants are not listed" if solvable.get("unknown") else ""
    return (f"Success on the variants the expert solves: {format_cell(solvable.get('cell'))}, against "
            f"{format_cell(results.get('overall'))} over all episodes (of the {solvable['known']} episodes whose "
            f"variant the solvability table lists, {solvable['solvable']} are of variants the privileged expert "
            f"solves{unknown}).")
