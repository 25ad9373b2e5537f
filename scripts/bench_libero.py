"""Benchmark simeval's LIBERO path against LIBERO's loop written the obvious way, on the same episodes.

    python scripts/bench_libero.py                       # libero_spatial tasks 0-3 x init state 0, full length
    python scripts/bench_libero.py --tasks 0,1 --episodes 2 --max-steps 100 --modes obvious,w1

Three ways to run the same episodes with the probe policy (``envs/libero/probe_policy.py``):

- ``obvious``: ``scripts/libero_obvious_loop.py`` in LIBERO's side environment (openpi's LIBERO example:
  one process, a plain ``OffScreenRenderEnv`` per task, hard resets, both cameras rendered every step);
- ``w1``: simeval (``harness.execute``, in this process) with 1 env worker (2 slots), as ``simeval run
  --workers 1`` runs: its LIBERO renderer (Mesa's llvmpipe) gets the cores, 2 threads here;
- ``w1core``: the same with the renderer on one thread (one worker = one core), the base of the scaling;
- ``w2``: 2 env workers (one core, one render thread each).

Per mode: wall seconds (around the whole run: interpreter and LIBERO start-up, env builds, episodes;
the obvious loop's subprocess, simeval's ``execute``), env steps (every ``env.step``: the 10 wait steps of
each episode included), env steps/s, and CPU ms per env step. CPU is ``getrusage``: for the obvious loop
the RUSAGE_CHILDREN delta across its subprocess (its process, every thread: llvmpipe's included); for
simeval the RUSAGE_SELF delta of this process (the harness and the policy) plus the RUSAGE_CHILDREN delta
across ``execute`` (the pool's worker processes, which wait for their LIBERO side processes before they
exit, so those roll up too). User + system time throughout. Ratios: ``w1`` over ``obvious`` (speedup,
by wall; the obvious loop's llvmpipe also renders on every core) and ``w2`` over ``w1core`` (scaling: one
core per worker in both). Outcomes (success, policy steps) and the sha1 of the frames the
policy read at every decision are checked identical across the modes.

Prints the load average (``uptime``) at the start and before each mode; writes ``results/bench_libero.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LOOP = REPO / "scripts" / "libero_obvious_loop.py"
WAIT_STEPS = 10
MODES = ("obvious", "w1", "w1core", "w2")
TARGETS = {"speedup_w1_over_obvious": 3.0, "scaling_w2_over_w1core": 1.7}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _sha1(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def run_obvious(args, out: Path) -> dict:
    from simeval.libero.sideenv import ensure_side_env

    side = ensure_side_env()
    cmd = [str(side.python), str(LOOP), "--benchmark", args.benchmark, "--tasks", args.tasks,
           "--episodes", str(args.episodes), "--out", str(out)]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    children, wall = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, env=side.environ(), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall, _cpu(resource.RUSAGE_CHILDREN) - children
    if done.returncode != 0:
        sys.exit(f"the obvious loop failed:\n{done.stderr[-4000:]}")
    data = json.loads(out.read_text())
    episodes = {e["name"]: {"success": e["success"], "steps": e["steps"], "agentview": e["agentview_sha1"],
                            "wrist": e["wrist_sha1"]} for e in data["episodes"]}
    return {"wall_s": wall, "cpu_s": cpu, "env_steps": data["env_steps"], "policy_steps": data["policy_steps"],
            "episodes": episodes, "inner": {"wall_s": data["wall_s"], "cpu_s": data["cpu_s"],
                                            "build_s": data["build_s"], "import_s": data["import_s"]}}


def run_simeval(args, workers: int, out: Path) -> dict:
    from simeval import worlds
    from simeval.suites import parse_suite

    names = worlds.task_names(args.benchmark)
    suite = parse_suite({"name": f"bench_{args.benchmark}", "world": args.benchmark,
                         "tasks": [names[int(t)] for t in args.tasks.split(",")], "robots": ["Panda"],
                         "perturbations": ["nominal"], "episodes": args.episodes, "seed": 7, "image_size": 256,
                         "max_steps": args.max_steps})
    return run_probe(suite, lambda spec: f"{args.benchmark}__{spec.task}__{spec.index:02d}", workers, out)


def run_probe(suite, name_of, workers: int, out: Path) -> dict:
    """``suite`` through ``harness.execute`` with the probe policy: per episode (named ``name_of(spec)``,
    as the obvious loop names it) the outcome and the sha1 of both images at every decision; wall and CPU."""
    from policies.libero_probe import LiberoProbePolicy
    from simeval.harness import RunRequest, execute
    from simeval.records import read_records
    from simeval.runner import Observer

    class Hashes(Observer):
        def __init__(self) -> None:
            self.by_id: dict[str, dict[str, list[str]]] = {}

        def started(self, slot, episode) -> None:  # a re-run episode starts its list afresh
            self.by_id[episode.spec.id] = {"agentview": [], "wrist": []}

        def acted(self, slot, episode, images, chunk) -> None:
            for cam in ("agentview", "wrist"):
                self.by_id[episode.spec.id][cam].append(_sha1(images[cam]))

    hashes = Hashes()
    request = RunRequest(suite=suite, policy="libero_probe", out=out, workers=workers, video="none",
                         progress=False, force=True)
    own, children, wall = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    results = execute(request, policy=LiberoProbePolicy(), observers=[hashes])
    wall = time.perf_counter() - wall
    own, children = _cpu(resource.RUSAGE_SELF) - own, _cpu(resource.RUSAGE_CHILDREN) - children
    specs = {s.id: s for s in suite.episode_specs()}
    episodes = {}
    for record in read_records(out / "episodes.jsonl"):
        if record["error"]:
            sys.exit(f"simeval: {record['id']}: {record['error']}")
        episodes[name_of(specs[record["id"]])] = {"success": record["success"], "steps": record["steps"],
                                                  **hashes.by_id[record["id"]]}
    policy_steps = sum(e["steps"] for e in episodes.values())
    return {"wall_s": wall, "cpu_s": own + children, "cpu_main_s": own, "cpu_children_s": children,
            "env_steps": policy_steps + WAIT_STEPS * len(episodes), "policy_steps": policy_steps,
            "episodes": episodes, "inner": {"wall_s": results["timing"]["wall_s"], "workers": workers}}


def _row(run: dict) -> dict:
    steps = run["env_steps"]
    row = {"wall_s": round(run["wall_s"], 2), "env_steps": steps, "policy_steps": run["policy_steps"],
           "env_steps_per_s": round(steps / run["wall_s"], 2), "cpu_s": round(run["cpu_s"], 2),
           "cpu_ms_per_env_step": round(1000 * run["cpu_s"] / steps, 1), "load_before": run["load_before"],
           "inner": {k: round(v, 2) if isinstance(v, float) else v for k, v in run["inner"].items()}}
    for key in ("cpu_main_s", "cpu_children_s"):
        if key in run:
            row[key] = round(run[key], 2)
    return row


def summarize(name: str, run: dict) -> dict:
    row = _row(run)
    print(f"{name:8s} wall {row['wall_s']:8.1f} s  env steps {row['env_steps']:6d}  {row['env_steps_per_s']:7.2f} "
          f"steps/s  CPU {row['cpu_ms_per_env_step']:7.1f} ms/step", flush=True)
    return row


def compare(runs: dict[str, dict], reference: str) -> tuple[dict, dict]:
    """Per mode: outcomes (success, steps) and decision frames identical to ``reference``'s, every episode."""
    ref = runs[reference]["episodes"]
    outcomes = {m: sorted(r["episodes"]) == sorted(ref) and all(
        (r["episodes"][n]["success"], r["episodes"][n]["steps"]) == (e["success"], e["steps"]) for n, e in ref.items())
        for m, r in runs.items()}
    frames = {m: sorted(r["episodes"]) == sorted(ref) and all(
        r["episodes"][n][cam] == e[cam] for n, e in ref.items() for cam in ("agentview", "wrist"))
        for m, r in runs.items()}
    return outcomes, frames


def write_report(report: dict, out: Path, outcomes: dict, frames: dict) -> None:
    """The JSON report to ``out``; exit 1 unless every mode matched the reference (a benchmark of unequal
    work measures nothing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    if not all(outcomes.values()) or not all(frames.values()):
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="libero_spatial")
    parser.add_argument("--tasks", default="0,1", help="task indices in the benchmark")
    parser.add_argument("--episodes", type=int, default=3, help="init states 0..N-1 of each task (a suite runs 50: an env is built once per task)")
    parser.add_argument("--max-steps", type=int, default=None, help="policy steps per episode (default: openpi's)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"a subset of {','.join(MODES)}")
    parser.add_argument("--out", default=str(REPO / "results" / "bench_libero.json"))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: a comma-separated subset of {','.join(MODES)}")

    start_load = uptime()
    print(f"start: {start_load}  ({os.cpu_count()} CPUs)", flush=True)
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_libero_") as tmp:
        for mode in modes:
            load = uptime()
            print(f"{mode}: {load}", flush=True)
            if mode == "obvious":
                run = run_obvious(args, Path(tmp) / "obvious.json")
            else:
                os.environ["SIMEVAL_LIBERO_RENDER_THREADS"] = "1" if mode == "w1core" else ""
                run = run_simeval(args, int(mode[1]), Path(tmp) / mode)
            run["load_before"] = load.split("load average:")[-1].strip()
            runs[mode] = run
            summarize(mode, run)
    rows = {m: _row(r) for m, r in runs.items()}

    reference = runs[modes[0]]["episodes"]
    outcomes, frames = compare(runs, modes[0])
    ratios = {}
    if "obvious" in runs and "w1" in runs:
        ratios["speedup_w1_over_obvious"] = round(runs["obvious"]["wall_s"] / runs["w1"]["wall_s"], 2)
    if "obvious" in runs and "w2" in runs:
        ratios["speedup_w2_over_obvious"] = round(runs["obvious"]["wall_s"] / runs["w2"]["wall_s"], 2)
    if "w1" in runs and "w2" in runs:
        ratios["scaling_w2_over_w1"] = round(runs["w1"]["wall_s"] / runs["w2"]["wall_s"], 2)
    if "w1core" in runs and "w2" in runs:
        ratios["scaling_w2_over_w1core"] = round(runs["w1core"]["wall_s"] / runs["w2"]["wall_s"], 2)
    if "obvious" in runs and "w1" in runs:
        ratios["cpu_per_step_obvious_over_w1"] = round(
            (runs["obvious"]["cpu_s"] / runs["obvious"]["env_steps"]) / (runs["w1"]["cpu_s"] / runs["w1"]["env_steps"]), 2)
    met = {k: ratios[k] >= v for k, v in TARGETS.items() if k in ratios}
    for key, value in ratios.items():
        target = f"  (target >= {TARGETS[key]}: {'met' if met[key] else 'NOT met'})" if key in TARGETS else ""
        print(f"{key}: {value}{target}")
    print(f"outcomes identical to {modes[0]}: {outcomes}; decision frames identical: {frames}")
    print(f"end: {uptime()}")
    report = {"args": vars(args), "cpu_count": os.cpu_count(), "load_at_start": start_load, "load_at_end": uptime(),
              "cpu_accounting": "getrusage user+sys: obvious = RUSAGE_CHILDREN delta across its subprocess; simeval = "
                                "RUSAGE_SELF delta + RUSAGE_CHILDREN delta across execute() (pool workers and, "
                                "through them, their LIBERO side processes)",
              "env_steps": "every env.step, the 10 wait steps per episode included",
              "modes": rows, "ratios": ratios, "targets": TARGETS, "targets_met": met,
              "outcomes_identical": outcomes, "decision_frames_identical": frames,
              "episodes": {n: {"success": e["success"], "steps": e["steps"]} for n, e in reference.items()}}
    write_report(report, Path(args.out), outcomes, frames)


if __name__ == "__main__":
    main()
