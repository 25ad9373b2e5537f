"""Which LIBERO-Plus variants LIBERO's privileged expert (``--policy scripted-libero``) solves, and why not.

    python scripts/libero_plus_solvability.py --workers 2

1. ``simeval run --policy scripted-libero --suite libero_plus_solvability --video none --resume`` into
   ``<runs>`` (one trial per variant at init state 0, as LIBERO-Plus evaluates);
2. the base task of every failed variant at LIBERO's own init state 0 (``--suite <benchmark> --tasks ...
   --episodes 1``) into ``<runs>-nominal/<benchmark>``: the same scene without the perturbation;
3. every failed variant whose expert this process did not watch (a resumed run) once more, alone, into
   ``<runs>-diagnosis``, so that its reason comes from the simulation: the expert's first privileged
   state (the arm's contacts with the scene after LIBERO's wait steps, where the goal's objects stand
   from the arm's base) and where it stopped (``LiberoExpert.stage``);
4. writes ``envs/libero/plus_solvability.json`` (the table every LIBERO-Plus run reads, see
   ``simeval.libero.solvability``) and ``<out>.json`` / ``<out>.md`` (solved/n per benchmark x category x
   difficulty level, then each unsolved variant with its reason).

``--no-run`` only summarises the records already there (steps 2 and 3 still run for failures without a
diagnosis unless ``--no-diagnosis``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from policies import libero_expert
from simeval.cli import main as simeval_main
from simeval import worlds
from simeval.libero import plus
from simeval.records import read_records
from simeval.suites import load_suite

REPO = Path(__file__).resolve().parents[1]
SUITE = "libero_plus_solvability"
REACH = 0.855  # m: the Panda's reach from its base (Franka's datasheet), a generous bound for the hand's site
OVERLAP = -0.001  # m: a contact this deep at the start is a collision, not a touch
BLIND = ("camera", "noise", "language")  # change only an image or the instruction: the expert reads neither


def base_task(variant: plus.PlusVariant) -> str:
    """The name of the LIBERO task a variant perturbs (``simeval.worlds.plus_base_task``)."""
    task = worlds.plus_base_task(variant)
    if task is None:
        raise ValueError(f"{variant.task}: no LIBERO task of {variant.benchmark} is the start of its name")
    return task.name


def cli(args: list[str]) -> None:
    code = simeval_main(args)
    if code != 0:
        raise SystemExit(f"simeval {' '.join(args)} exited {code}")


def run_cli(suite: str, out: Path, workers: int, extra: list[str] = ()) -> None:
    cli(["run", "--policy", "scripted-libero", "--suite", suite, "--workers", str(workers), "--video", "none",
         "--out", str(out), "--resume", *extra])


def diagnosis(expert: libero_expert.LiberoExpert) -> dict:
    """What the simulation says about one episode: the expert's stage, steps, skills and its start."""
    first = expert.first or {}
    base = np.asarray(first.get("robot_base", [0.0, 0.0, 0.0]))[:2]
    goal_objects = sorted({a for p in first.get("goal", []) for a in p[1:] if a in first.get("objects", {})})
    reach = {name: round(float(np.linalg.norm(np.asarray(first["objects"][name]["pos"])[:2] - base)), 3)
             for name in goal_objects}
    return {"stage": expert.stage(), "steps": expert.steps, "log": list(expert.log),
            "arm_contacts": [list(c) for c in first.get("arm_contacts", [])], "reach": reach}


def watch(runner) -> dict[str, dict]:
    """Run ``runner()`` with every episode's expert watched: episode id -> its :func:`diagnosis`."""
    experts: dict[str, libero_expert.LiberoExpert] = {}
    observer = experts.__setitem__
    libero_expert.OBSERVERS.append(observer)
    try:
        runner()
    finally:
        libero_expert.OBSERVERS.remove(observer)
    return {episode: diagnosis(expert) for episode, expert in experts.items()}


def reason(variant: plus.PlusVariant, record: dict, diag: dict | None, nominal: dict | None) -> str | None:
    """Why the expert did not solve ``variant``, from the simulation, or None where nothing is found."""
    if record.get("error"):
        return f"error: {record['error']}"
    parts = []
    if diag is not None:
        hits = [c for c in diag["arm_contacts"] if c[2] < OVERLAP]
        if hits:
            arm, other, dist = min(hits, key=lambda c: c[2])
            parts.append(f"robot start pose in collision: {arm} in {other} ({-dist * 1000:.0f} mm deep) "
                         f"after the wait steps")
        far = {n: d for n, d in diag["reach"].items() if d > REACH}
        if far:
            parts.append("out of the arm's reach: " + ", ".join(f"{n} {d:.2f} m from its base" for n, d in far.items()))
    nominal_failed = nominal is not None and not nominal["success"]
    if variant.category in BLIND and nominal_failed:
        parts.append(f"fails nominally too (init state 0 of {nominal['task']}); a {variant.category} variant "
                     f"changes nothing the privileged expert reads")
    elif diag is not None and diag["stage"] not in ("done",):
        limit = plus.max_steps(variant.benchmark)
        when = f"at the step limit ({limit})" if record["steps"] >= limit else f"after {record['steps']} steps"
        parts.append(f"the expert's own failure: stopped in '{diag['stage']}' {when}"
                     + (", fails nominally too" if nominal_failed else ""))
    elif diag is not None:
        parts.append("the expert finished its skills but LIBERO's goal does not hold"
                     + (", fails nominally too" if nominal_failed else ""))
    return "; ".join(parts) or None


def nominal_outcomes(failed: list[plus.PlusVariant], runs: Path, workers: int, run: bool) -> dict[str, dict]:
    """Per failed variant's base task (``<benchmark>/<task>``): its record at LIBERO's init state 0, with
    the expert's diagnosis where this process ran it."""
    out: dict[str, dict] = {}
    for benchmark in dict.fromkeys(v.benchmark for v in failed):
        names = sorted({base_task(v) for v in failed if v.benchmark == benchmark})
        where = Path(f"{runs}-nominal") / benchmark
        diags = watch(lambda: run_cli(benchmark, where, workers, ["--tasks", ",".join(names), "--episodes", "1"])) \
            if run else {}
        for r in read_records(where / "episodes.jsonl") if (where / "episodes.jsonl").is_file() else []:
            if r["task"] in names and r["id"].endswith("/0000"):
                out[f"{benchmark}/{r['task']}"] = {"task": r["task"], "success": bool(r["success"]),
                                                   "steps": r["steps"], "diagnosis": diags.get(r["id"])}
    return out


def rediagnose(failed: list[plus.PlusVariant], runs: Path, workers: int) -> dict[str, dict]:
    """The failed variants once more, alone (a suite of just them), with their experts watched: variant
    task -> (the rerun's record, its diagnosis)."""
    where = Path(f"{runs}-diagnosis")
    where.mkdir(parents=True, exist_ok=True)
    suite = where.with_suffix(".yaml")
    suite.write_text(yaml.safe_dump({"name": f"{SUITE}_diagnosis", "description": "failed variants, once more",
                                     "world": plus.WORLD, "tasks": [v.task for v in failed], "robots": ["Panda"],
                                     "perturbations": sorted({v.category for v in failed}), "episodes": 1, "seed": 7,
                                     "image_size": 256}, sort_keys=False))
    diags = watch(lambda: run_cli(str(suite), where, workers))
    return {r["task"]: {"record": r, "diagnosis": diags.get(r["id"])}
            for r in read_records(where / "episodes.jsonl")}


def cells(rows: list[dict]) -> list[dict]:
    """solved/n per benchmark x category x level (None: the category has no levels)."""
    keys = sorted({(r["benchmark"], r["category"], r["level"]) for r in rows},
                  key=lambda k: (plus.BENCHMARKS.index(k[0]), plus.CATEGORIES.index(k[1]), k[2] or 0))
    return [{"benchmark": b, "category": c, "level": lv,
             "solved": sum(r["solved"] for r in rows if (r["benchmark"], r["category"], r["level"]) == (b, c, lv)),
             "n": sum(1 for r in rows if (r["benchmark"], r["category"], r["level"]) == (b, c, lv))}
            for b, c, lv in keys]


def to_markdown(report: dict) -> str:
    lines = [f"LIBERO-Plus variants solved by LIBERO's privileged expert (`scripted-libero`): `{report['command']}`",
             "", f"Suite `{SUITE}`: {', '.join(report['tasks'])}, categories {', '.join(report['categories'])} "
             f"(those that need no asset archive), {report['per_category']} variants per benchmark and category "
             f"(seed {report['seed']}), one trial each at init state 0, written at commit {report['commit']}. "
             f"Wall time: {report['wall']}.", "",
             "Solved/n per benchmark, category and difficulty level (1 mild .. 5 severe; camera and language "
             "variants carry no level):", "",
             "| benchmark | category | no level | 1 | 2 | 3 | 4 | 5 | all |", "|---|---|---|---|---|---|---|---|---|"]
    for group in dict.fromkeys((c["benchmark"], c["category"]) for c in report["cells"]):
        mine = [c for c in report["cells"] if (c["benchmark"], c["category"]) == group]
        by_level = {c["level"]: f"{c['solved']}/{c['n']}" for c in mine}
        total = f"{sum(c['solved'] for c in mine)}/{sum(c['n'] for c in mine)}"
        lines.append(f"| {group[0]} | {group[1]} | " + " | ".join(by_level.get(lv, "-") for lv in (None, 1, 2, 3, 4, 5))
                     + f" | {total} |")
    won, n = sum(c["solved"] for c in report["cells"]), sum(c["n"] for c in report["cells"])
    lines += ["", f"All: {won}/{n} ({100.0 * won / max(n, 1):.1f}%)", "", "Unsolved variants:", ""]
    for u in report["unsolved"]:
        lines.append(f"- `{u['task']}` ({u['category']}{':' + str(u['level']) if u['level'] else ''}, "
                     f"{u['steps']} steps): {u['reason'] or 'no reason found'}")
    if not report["unsolved"]:
        lines.append("- none")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("runs") / SUITE)
    parser.add_argument("--out", type=Path, default=Path("results") / SUITE)
    parser.add_argument("--table", type=Path, default=REPO / "envs" / "libero" / "plus_solvability.json")
    parser.add_argument("--no-run", action="store_true", help="only summarise the records already in --runs")
    parser.add_argument("--no-diagnosis", action="store_true", help="no nominal or diagnosis runs")
    args = parser.parse_args()
    started = time.monotonic()
    watched = {} if args.no_run else watch(lambda: run_cli(SUITE, args.runs, args.workers))
    suite = load_suite(SUITE)
    tasks = {s.task for s in suite.episode_specs()}
    records = {r["task"]: r for r in read_records(args.runs / "episodes.jsonl") if r["task"] in tasks}
    missing = sorted(tasks - set(records))
    if missing:
        raise SystemExit(f"{len(missing)} of the suite's {len(tasks)} variants have no record in {args.runs} "
                         f"(first: {missing[0]}); run without --no-run")
    variants = {t: plus.get_variant(t) for t in sorted(records)}
    failed = [variants[t] for t in variants if not records[t]["success"]]
    run_more = not args.no_diagnosis
    nominal = nominal_outcomes(failed, args.runs, args.workers, run_more) if failed else {}
    diags = {t: watched.get(records[t]["id"]) for t in variants}
    reruns = {}
    if run_more and any(diags[v.task] is None for v in failed):
        reruns = rediagnose([v for v in failed if diags[v.task] is None], args.runs, args.workers)
    rows, unsolved = [], []
    for task, variant in variants.items():
        record = records[task]
        rows.append({"benchmark": variant.benchmark, "category": variant.category, "level": variant.level,
                     "solved": bool(record["success"])})
        if record["success"]:
            continue
        diag, rerun = diags[task], reruns.get(task)
        if diag is None and rerun is not None:
            diag = rerun["diagnosis"]
        base = nominal.get(f"{variant.benchmark}/{base_task(variant)}")
        why = reason(variant, record, diag, base)
        if rerun is not None and rerun["record"]["success"]:
            why = f"solved when run again alone (not reproducible); {why or 'no reason found'}"
        unsolved.append({"task": task, "category": variant.category, "level": variant.level,
                         "steps": record["steps"], "reason": why, "diagnosis": diag,
                         "nominal": base})
    wall_s = round(time.monotonic() - started, 1)
    timing = json.loads((args.runs / "results.json").read_text()).get("timing", {}) \
        if (args.runs / "results.json").is_file() else {}
    command = " ".join(["python scripts/libero_plus_solvability.py", *sys.argv[1:]])
    wall = (f"simeval run {timing.get('wall_s', '?')} s for its {timing.get('episodes_run', '?')} episodes (summed "
            f"over its sessions) with --workers {args.workers} on a {os.cpu_count()}-CPU machine; this command "
            f"{wall_s:.0f} s (nominal and diagnosis runs included, a resumed run's episodes not)")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    benchmarks = sorted({v.benchmark for v in variants.values()}, key=plus.BENCHMARKS.index)
    report = {"command": command, "commit": commit, "suite": SUITE, "tasks": benchmarks,
              "categories": list(suite.perturbations), "per_category": suite.per_category, "seed": suite.seed,
              "wall_s": wall_s, "run_timing": timing, "wall": wall, "cells": cells(rows), "unsolved": unsolved}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1) + "\n")
    Path(f"{args.out}.md").write_text(to_markdown(report))
    table = {"about": f"Which LIBERO-Plus variants LIBERO's privileged expert solves (one trial at init state 0); "
                      f"suite {SUITE}: {suite.per_category} variants per benchmark and offline category. "
                      f"Reasons: results/{SUITE}.md.",
             "policy": "scripted-libero", "command": command,
             "variants": {t: {"solved": bool(records[t]["success"]),
                              "reason": next((u["reason"] for u in unsolved if u["task"] == t), None)}
                          for t in variants}}
    args.table.write_text(json.dumps(table, indent=1) + "\n")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
