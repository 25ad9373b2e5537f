"""Benchmark simeval's ``libero_plus`` world against LIBERO-Plus's per-variant loop written the obvious way.

    python scripts/bench_libero_plus.py                  # 2 variants each of camera, robot_init, language, noise
    python scripts/bench_libero_plus.py --per-category 1 --max-steps 50 --modes loop,w1

The sample (stated, seeded): from ``--benchmark`` (default libero_spatial), ``--per-category`` variants
(default 2) of each of ``--categories`` (default camera, robot_init, language, noise; the ones that need no
asset archive), seed ``--seed`` (default 7), picked as a ``libero_plus`` suite with ``per_category`` picks
them (``simeval.suites_plus.select``: ``random.Random(f"{seed}/{benchmark}/{category}").sample`` over
``simeval.libero.plus.variants``, LIBERO-Plus's order), kept in catalogue order.

The same variants, each once from init state 0 with the probe policy (``envs/libero/probe_policy.py``):

- ``loop``: ``scripts/libero_plus_obvious_loop.py`` in the side environment (LIBERO-Plus's config): a fresh
  ``OffScreenRenderEnv`` per variant, hard reset, both cameras rendered every step; with
  ``--reload-policy-s S`` each variant also waits S seconds, a stand-in for the model reload of the
  frameworks that report LIBERO-Plus (``loop_reload`` in the output; only when S > 0);
- ``w1`` / ``w2``: simeval (``harness.execute`` in this process, world ``libero_plus``, one task per variant,
  init state 0, seed 7, the benchmark's step limit) with 1 or 2 env workers (2 slots each): rendering
  on demand, soft resets, one env shared by the variants that share a model (noise, language).

Per mode: wall seconds around the whole run (interpreter start, imports, env builds, episodes), env steps
(every ``env.step``, the 10 wait steps included), env steps/s and CPU ms per env step (``getrusage``
user+sys, as ``bench_libero.py`` counts it: the loop's RUSAGE_CHILDREN delta; simeval's RUSAGE_SELF delta
plus its RUSAGE_CHILDREN delta across ``execute``). Ratios: loop wall over w1 wall (and over w2), CPU per
step loop over w1. Outcomes (success, policy steps) and the sha1 of both images at every decision are
checked identical across the modes (exit 1 otherwise). Prints ``uptime`` at the start and before each
mode; writes ``results/bench_libero_plus.json``.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

# one way to run, compare, count and print
from bench_libero import _cpu, _row, compare, run_probe, summarize, uptime, write_report  # noqa: E402

LOOP = REPO / "scripts" / "libero_plus_obvious_loop.py"
MODES = ("loop", "w1", "w2")
CATEGORIES = ("camera", "robot_init", "language", "noise")  # LIBERO-Plus's categories that need no asset archive
SEED = 7


def sample(benchmark: str, categories: list[str], per_category: int, seed: int) -> list:
    """``per_category`` variants of each category, as a ``libero_plus`` suite samples them (one mechanism:
    ``suites_plus.select``, seeded per (benchmark, category)), in catalogue order."""
    from simeval import suites_plus
    from simeval.libero import plus

    return suites_plus.select([v.task for v in plus.variants(benchmark)], categories, per_category, seed)


def episode_name(variant) -> str:
    return f"{variant.benchmark}__{variant.name}__00"  # the loop's and the worker's trace names


def run_loop(variants: list, max_steps: int | None, reload_s: float, out: Path, states: Path | None = None) -> dict:
    """The obvious loop as a subprocess of the side interpreter; its JSON and the CPU of the whole process."""
    from simeval.libero.sideenv import ensure_side_env

    side = ensure_side_env(announce=None, progress=False)
    cmd = [str(side.python), str(LOOP), "--variants", ",".join(v.task for v in variants), "--out", str(out),
           "--reload-policy-s", str(reload_s)]
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    if states is not None:
        cmd += ["--states", str(states)]
    children, wall = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, env=side.environ(plus=True), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - wall, _cpu(resource.RUSAGE_CHILDREN) - children
    if done.returncode != 0:
        raise RuntimeError(f"the LIBERO-Plus loop failed:\n{done.stderr[-4000:]}")
    data = json.loads(out.read_text())
    episodes = {e["name"]: {"success": e["success"], "steps": e["steps"], "agentview": e["agentview_sha1"],
                            "wrist": e["wrist_sha1"]} for e in data["episodes"]}
    return {"wall_s": wall, "cpu_s": cpu, "env_steps": data["env_steps"], "policy_steps": data["policy_steps"],
            "episodes": episodes, "raw": data,
            "inner": {"wall_s": data["wall_s"], "cpu_s": data["cpu_s"], "build_s": data["build_s"],
                      "import_s": data["import_s"], "reload_s": data["reload_s"]}}


def plus_suite(variants: list, max_steps: int | None):
    """A ``libero_plus`` suite of exactly these variants: one episode each, init state 0, seed 7."""
    from simeval.suites import parse_suite

    suite = parse_suite({"name": "bench_libero_plus", "world": "libero_plus", "tasks": [v.task for v in variants],
                         "robots": ["Panda"], "perturbations": "all", "episodes": 1, "seed": SEED,
                         "image_size": 256, "max_steps": max_steps})
    from simeval.libero import plus

    specs = suite.episode_specs()
    wanted = {v.task: max_steps or plus.max_steps(v.benchmark) for v in variants}
    got = {s.task: s.max_steps for s in specs}
    if got != wanted or any((s.world, s.index, s.seed) != ("libero_plus", 0, SEED) for s in specs):
        raise RuntimeError(f"the libero_plus suite's episodes are not the sample's: {got} != {wanted}")
    return suite


def run_simeval(variants: list, max_steps: int | None, workers: int, out: Path) -> dict:
    """The same variants through ``harness.execute`` with the probe policy: outcomes and decision hashes."""
    from simeval.libero import plus

    return run_probe(plus_suite(variants, max_steps), lambda spec: episode_name(plus.get_variant(spec.task)),
                     workers, out)


def frames_digest(episode: dict) -> str:
    """One sha1 over the sha1 of both images at every decision: what another run's episode must match."""
    return hashlib.sha1(" ".join(episode["agentview"] + episode["wrist"]).encode()).hexdigest()


def ratios(runs: dict[str, dict]) -> dict[str, float]:
    out = {}
    per_step = {m: r["cpu_s"] / r["env_steps"] for m, r in runs.items()}
    for base in ("loop", "loop_reload"):
        for mode in ("w1", "w2"):
            if base in runs and mode in runs:
                out[f"speedup_{mode}_over_{base}"] = round(runs[base]["wall_s"] / runs[mode]["wall_s"], 2)
                out[f"cpu_per_step_{base}_over_{mode}"] = round(per_step[base] / per_step[mode], 2)
    return out


def main() -> None:
    from simeval.libero import plus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="libero_spatial", choices=plus.BENCHMARKS)
    parser.add_argument("--categories", default=",".join(CATEGORIES), help="comma-separated LIBERO-Plus categories")
    parser.add_argument("--per-category", type=int, default=2, help="variants sampled per category")
    parser.add_argument("--seed", type=int, default=SEED, help="the sample's seed")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="policy steps per variant (default: the benchmark's)")
    parser.add_argument("--reload-policy-s", type=float, default=0.0,
                        help="also run the loop charging this stand-in model load (a sleep) per variant")
    parser.add_argument("--modes", default="loop,w1", help=f"a subset of {','.join(MODES)}")
    parser.add_argument("--out", default=str(REPO / "results" / "bench_libero_plus.json"))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    categories = [c for c in args.categories.split(",") if c]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: a comma-separated subset of {','.join(MODES)}")
    if not categories or any(c not in plus.CATEGORIES for c in categories):
        parser.error(f"--categories: a comma-separated subset of {','.join(plus.CATEGORIES)}")
    if args.per_category < 1 or (args.max_steps is not None and args.max_steps < 1) or args.reload_policy_s < 0:
        parser.error("--per-category and --max-steps must be >= 1, --reload-policy-s >= 0")
    variants = sample(args.benchmark, categories, args.per_category, args.seed)
    if args.reload_policy_s > 0 and "loop" in modes:
        modes.insert(modes.index("loop") + 1, "loop_reload")

    start_load = uptime()
    print(f"start: {start_load}  ({os.cpu_count()} CPUs); {len(variants)} variants: "
          + ", ".join(f"{v.category}:{v.name[-40:]}" for v in variants), flush=True)
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_libero_plus_") as tmp:
        for mode in modes:
            load = uptime()
            print(f"{mode}: {load}", flush=True)
            if mode.startswith("loop"):
                reload_s = args.reload_policy_s if mode == "loop_reload" else 0.0
                run = run_loop(variants, args.max_steps, reload_s, Path(tmp) / f"{mode}.json")
                run.pop("raw")
            else:
                os.environ["SIMEVAL_LIBERO_RENDER_THREADS"] = ""
                run = run_simeval(variants, args.max_steps, int(mode[1]), Path(tmp) / mode)
            run["load_before"] = load.split("load average:")[-1].strip()
            runs[mode] = run
            summarize(mode, run)
    outcomes, frames = compare(runs, modes[0])
    found = ratios(runs)
    for key, value in found.items():
        print(f"{key}: {value}")
    print(f"outcomes identical to {modes[0]}: {outcomes}; decision frames identical: {frames}")
    end_load = uptime()
    print(f"end: {end_load}")
    report = {"args": vars(args), "cpu_count": os.cpu_count(), "load_at_start": start_load, "load_at_end": end_load,
              "sample": [{"task": v.task, "category": v.category, "level": v.level} for v in variants],
              "sample_rule": "simeval.suites_plus.select (a libero_plus suite's per_category): "
                             "random.Random(f'{seed}/{benchmark}/{category}') over simeval.libero.plus.variants",
              "reload_policy": "a stand-in: the loop sleeps --reload-policy-s per variant (wall, no CPU), no model",
              "cpu_accounting": "getrusage user+sys: loop = RUSAGE_CHILDREN delta across its subprocess; simeval = "
                                "RUSAGE_SELF delta + RUSAGE_CHILDREN delta across execute()",
              "env_steps": "every env.step, the 10 wait steps per variant included",
              "modes": {m: _row(r) for m, r in runs.items()}, "ratios": found,
              "outcomes_identical": outcomes, "decision_frames_identical": frames,
              "episodes": {n: {"success": e["success"], "steps": e["steps"], "decisions": len(e["agentview"]),
                               "frames_sha1": frames_digest(e)} for n, e in runs[modes[0]]["episodes"].items()}}
    write_report(report, Path(args.out), outcomes, frames)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as err:  # the loop or simeval failed: what it said, not a traceback
        sys.exit(str(err))
