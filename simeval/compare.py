"""``simeval compare``: paired comparisons of runs over the episodes they share.

Each method is one run directory, or several pooled (``NAME=run1,run2,run3``: the same method from
several training seeds). Two methods are paired episode by episode on the ids every one of their
runs has: with as many runs on each side, run k of one with run k of the other; a single run on one
side is paired with each run of the other. Per pair of methods and per cell (overall, each
dimension, each level with ``levels``) the output has both success rates, their difference with
Newcombe's paired 95% interval, and the exact McNemar p-value; the p-values of the whole family
(every pair x cell in the output) are Holm-adjusted. An episode that ended in an error counts as a
failure, as in ``results.json``. Runs that are not runs of the same episodes (another suite, seed,
step limit or image size, or records of one id with other seeds: ``simeval.identity``, the check
``simeval check`` makes too) are refused with one line saying what differs, never paired.

Pooled pairs are treated as independent pairs. Runs of one method from several seeds share their
episodes, so the pooled interval is somewhat narrower than the episodes alone justify; the
per-seed figures are the check.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simeval.files import write_text, writing
from simeval.identity import Episodes, episode_mismatch
from simeval.paired import PairedCounts, holm, mcnemar_exact, newcombe_interval
from simeval.records import cell_key, read_records, record_cell
from simeval.rundir import check_out_path, read_meta
from simeval.schemas import FileFormatError, read_json

SCHEMA = "simeval.compare/1"
FILES = ("compare.json", "compare.md", "compare.png")
INTERVAL = "Newcombe (1998) method 10: paired hybrid score interval, 95%"
TEST = "exact McNemar test on the discordant pairs, two-sided"


class CompareError(ValueError):
    """A bad argument or run: one line, exit code 2."""


@dataclass(frozen=True)
class Method:
    name: str
    runs: tuple[Path, ...]


def parse_method(text: str) -> Method:
    """``DIR`` or ``NAME=DIR1,DIR2,...``."""
    name, sep, dirs = text.partition("=")
    if not sep:
        name, dirs = Path(text.rstrip("/")).name or text, text
    runs = tuple(Path(d) for d in dirs.split(",") if d)
    if not name or not runs:
        raise CompareError(f"{text!r}: give a run directory, or NAME=RUN1,RUN2,... to pool runs of one method")
    return Method(name, runs)


def _read_run(run: Path) -> tuple[dict[str, tuple[bool, dict]], Episodes]:
    """{episode id: (success, record)} of a run directory (errors count as failures), and what it
    says of its episodes (its run.json's suite, when it has one) for the identity check."""
    log = run / "episodes.jsonl"
    if not log.is_file():
        raise CompareError(f"{run}: no episodes.jsonl, so not a simeval run directory")
    records = read_records(log)
    meta = read_meta(run)
    outcomes = {r["id"]: (r["success"] and not r.get("error"), r) for r in records}
    return outcomes, Episodes(str(run), meta["suite"] if meta else None, records)


def _pairing(a: Method, b: Method) -> list[tuple[int, int]]:
    if len(a.runs) == len(b.runs):
        return [(k, k) for k in range(len(a.runs))]
    if len(a.runs) == 1 or len(b.runs) == 1:
        return [(0 if len(a.runs) == 1 else k, 0 if len(b.runs) == 1 else k) for k in range(max(len(a.runs), len(b.runs)))]
    raise CompareError(f"{a.name} has {len(a.runs)} runs and {b.name} {len(b.runs)}: pool the same number of runs "
                       f"(seeds) per method, or one run against many")


def _cells(record: dict, levels: bool) -> list[str]:
    dimension, level = record_cell(record)
    out = ["overall", f"dimension[{dimension}]"]
    if levels and dimension != "nominal":
        out.append(f"level[{cell_key(dimension, level)}]")
    return out


Outcomes = dict[str, tuple[bool, dict]]  # episode id -> (success, its record)


def compare_methods(methods: list[Method], levels: bool = False) -> dict[str, Any]:
    """Every pair of methods, cell by cell (see the module docstring); a JSON-ready dict."""
    if len(methods) < 2:
        raise CompareError("give at least two runs (or pooled methods) to compare")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise CompareError(f"method names must differ, got {', '.join(names)} (name them: NAME=RUN,...)")
    read = {m.name: [_read_run(run) for run in m.runs] for m in methods}
    mismatch = episode_mismatch([episodes for runs in read.values() for _, episodes in runs])
    if mismatch:
        raise CompareError(f"not runs of the same episodes: {mismatch}; compare runs of one suite with the same "
                           f"seed and settings")
    result = compare_outcomes({name: [outcomes for outcomes, _ in runs] for name, runs in read.items()}, levels)
    result["methods"] = {m.name: [str(r) for r in m.runs] for m in methods}
    return result


def compare_outcomes(outcomes: dict[str, list[Outcomes]], levels: bool = False,
                     pairs: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The comparisons of :func:`compare_methods` from outcomes already read: method name -> one
    ``{episode id: (success, record)}`` per run. ``pairs`` limits which methods are compared (every
    pair by default)."""
    methods = [Method(name, tuple(Path(f"run{k}") for k in range(len(runs)))) for name, runs in outcomes.items()]
    by_name = {m.name: m for m in methods}
    chosen = [(by_name[a], by_name[b]) for a, b in pairs] if pairs else list(itertools.combinations(methods, 2))
    comparisons = []
    for a, b in chosen:
        runs = outcomes[a.name] + outcomes[b.name]
        shared = sorted(set.intersection(*(set(o) for o in runs)))
        if not shared:
            raise CompareError(f"{a.name} and {b.name} share no episode ids: they are runs of different episodes")
        tables: dict[str, PairedCounts] = {}
        for i, j in _pairing(a, b):
            for episode in shared:
                (ok_a, record), (ok_b, _) = outcomes[a.name][i][episode], outcomes[b.name][j][episode]
                for cell in _cells(record, levels):
                    tables[cell] = tables.get(cell, PairedCounts()).add(ok_a, ok_b)
        cells = [_cell(name, tables[name]) for name in sorted(tables, key=_order)]
        comparisons.append({"a": a.name, "b": b.name, "episodes": len(shared), "pairs": tables["overall"].n,
                            "cells": cells})
    family = [c for comp in comparisons for c in comp["cells"]]
    for cell, adjusted in zip(family, holm([c["p_value"] for c in family])):
        cell["p_holm"] = adjusted
    return {"schema": SCHEMA, "methods": {m.name: [f"{len(m.runs)} run(s)"] for m in methods},
            "interval": INTERVAL, "test": TEST,
            "adjustment": f"Holm over all {len(family)} comparisons in this file (every pair of methods x cell)",
            "comparisons": comparisons}


def _order(cell: str) -> tuple:
    kind = {"overall": 0, "dimension": 1, "level": 2}[cell.split("[")[0]]
    return kind, cell != "dimension[nominal]", cell


def _cell(name: str, t: PairedCounts) -> dict[str, Any]:
    low, high = newcombe_interval(t)
    return {"cell": name, "n": t.n, "rate_a": t.rate_a, "rate_b": t.rate_b, "difference": t.difference,
            "ci95": [low, high], "only_a": t.only_a, "only_b": t.only_b, "p_value": mcnemar_exact(t)}


def format_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Paired comparison", "", f"- interval: {result['interval']}", f"- test: {result['test']}",
             f"- p (Holm): {result['adjustment']}", ""]
    for name, runs in result["methods"].items():
        lines.append(f"- **{name}**: {', '.join(runs)}")
    for comp in result["comparisons"]:
        a, b = comp["a"], comp["b"]
        lines += ["", f"## {a} vs {b} ({comp['episodes']} shared episodes, {comp['pairs']} pairs)", "",
                  f"| cell | n | {a} | {b} | {a} - {b} [95% CI] | only {a} / only {b} | p | p (Holm) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for c in comp["cells"]:
            low, high = c["ci95"]
            lines.append(f"| {c['cell']} | {c['n']} | {c['rate_a']:.1%} | {c['rate_b']:.1%} | "
                         f"{100 * c['difference']:+.1f} pp [{100 * low:+.1f}, {100 * high:+.1f}] | "
                         f"{c['only_a']} / {c['only_b']} | {c['p_value']:.4g} | {c['p_holm']:.4g} |")
    return "\n".join(lines) + "\n"


def plot_forest(result: dict[str, Any], path: Path) -> None:
    """One panel per pair of methods: each cell's difference with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = result["comparisons"]
    rows = max(len(c["cells"]) for c in comps)
    fig, axes = plt.subplots(len(comps), 1, figsize=(7, 0.32 * rows * len(comps) + 1.2 * len(comps)), squeeze=False)
    for ax, comp in zip(axes[:, 0], comps):
        cells = comp["cells"]
        y = list(range(len(cells)))[::-1]
        diffs = [100 * c["difference"] for c in cells]
        errors = [[100 * (c["difference"] - c["ci95"][0]) for c in cells],
                  [100 * (c["ci95"][1] - c["difference"]) for c in cells]]
        colors = ["tab:red" if c["p_holm"] < 0.05 else "tab:blue" for c in cells]
        ax.errorbar(diffs, y, xerr=errors, fmt="none", ecolor="0.5", capsize=3)
        ax.scatter(diffs, y, c=colors, zorder=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [c["cell"] for c in cells])
        ax.set_xlim(-100, 100)
        ax.set_xlabel(f"success rate difference, {comp['a']} - {comp['b']} (percentage points)")
        ax.set_title(f"{comp['a']} vs {comp['b']}: paired 95% intervals ({comp['pairs']} pairs; red: Holm p < 0.05)",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def default_out(methods: list[Method]) -> Path:
    stem = "-vs-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", m.name) for m in methods)
    return Path("runs") / f"compare-{stem}"[:120]


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """compare.json, compare.md and compare.png in ``out``, which must be new, empty or an earlier
    compare's: nothing simeval did not write is replaced."""
    if out.exists() and not out.is_dir():
        raise CompareError(f"--out {out} is a file; give a directory")
    check_out_path(out)  # a link to nothing, a file above it: one line
    if out.is_dir():
        foreign = [p.name for p in out.iterdir() if p.name not in FILES]
        earlier = out / "compare.json"
        ours = earlier.is_file() and _is_compare(earlier)
        if foreign or (any(out.iterdir()) and not ours):
            raise CompareError(f"--out {out} holds files simeval compare did not write; choose a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "compare.json", json.dumps(result, indent=1) + "\n")  # whole or not at all: a half one
    write_text(out / "compare.md", format_markdown(result))  # would make the next compare refuse this --out
    with writing(out / "compare.png"):
        plot_forest(result, out / "compare.png")
    return [out / name for name in FILES]


def _is_compare(path: Path) -> bool:
    try:
        data = read_json(path)
    except FileFormatError:
        return False
    return isinstance(data, dict) and data.get("schema") == SCHEMA
