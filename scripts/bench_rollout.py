"""Benchmark of the rollout engine: the same episodes on every engine, in one run.

    python scripts/bench_rollout.py [--episodes 2] [--video examples] [--json results/bench_rollout.json]

Episodes: PutCubeOnPlate and PickUpBlueCube on the Panda, nominal and camera:2, light:3, noise:3,
layout:2, ``--episodes`` per cell. Each case runs in a fresh process, so that thread settings and
caches do not carry over:
* the reference VLA on the per-step path (``PoolConfig.per_step``: both cameras after every step,
  one step per round) and on the chunk engine, each with 1 and 2 workers;
* "today's default": the per-step path with 2 workers and the thread setting it had (the workers'
  BLAS threads unlimited, torch's default threads in the main process);
* the scripted experts on both paths, 2 workers;
* ``gymnasium.vector.AsyncVectorEnv`` driven the obvious way, as LeRobot's eval loop does: 2 envs,
  one ``step`` per action, both cameras rendered every step, the policy called for all envs whenever
  its action queue runs out, every env stepped until the batch's episodes have all ended.
Reported: episodes/s, env steps/s (the episodes' own steps), CPU ms per env step of the env workers
and of the main process, the load before the run, and whether every case gave the same outcomes.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")

TASKS, ROBOT = ("PutCubeOnPlate", "PickUpBlueCube"), "Panda"
VARIANTS = ("nominal", "camera:2", "light:3", "noise:3", "layout:2")
REFERENCE = str(ROOT / "results" / "reference")
TODAY = "reference, today's default (per-step, 2 workers, old threads)"
# name: (policy, engine, workers)
CASES = {
    TODAY: ("reference", "per-step-old-threads", 2),
    "reference, per-step, 1 worker": ("reference", "per-step", 1),
    "reference, per-step, 2 workers": ("reference", "per-step", 2),
    "reference, chunks, 1 worker": ("reference", "chunks", 1),
    "reference, chunks, 2 workers": ("reference", "chunks", 2),
    "reference, AsyncVectorEnv, 2 envs": ("reference", "async", 2),
    "scripted, per-step, 2 workers": ("scripted", "per-step", 2),
    "scripted, chunks, 2 workers": ("scripted", "chunks", 2),
}


def suite(episodes: int):
    from simeval.suites import Suite

    return Suite(name="bench-rollout", tasks=list(TASKS), robots=[ROBOT], perturbations=list(VARIANTS),
                 episodes=episodes, seed=0)


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def run_pool(policy_name: str, engine: str, workers: int, episodes: int, video: str) -> dict:
    """One case on simeval's engine; ``{id: [success, steps]}`` and the costs."""
    import simeval.pools.threads
    from simeval.harness import RunRequest, run_episodes
    from simeval.video import VideoPolicy

    policy = _policy(policy_name)
    if engine == "per-step-old-threads":  # the thread setting before this engine
        import torch

        default = torch.get_num_threads()
        simeval.pools.threads.WORKER_THREADS = {"LP_NUM_THREADS": "1"}  # BLAS threads unlimited in the workers
        simeval.pools.threads.main_threads = lambda workers: default  # torch's default threads in the main process
    with tempfile.TemporaryDirectory() as tmp:
        request = RunRequest(suite=suite(episodes), policy=policy_name, out=Path(tmp) / "run", workers=workers,
                             video=video, per_step=engine.startswith("per-step"), progress=False,
                             slots_per_worker=int(os.environ.get("BENCH_SLOTS", "2")))
        cpu0, start = _cpu(), time.perf_counter()
        run = run_episodes(request, policy, video=VideoPolicy(video, request.suite.to_dict()))
        wall, cpu1 = time.perf_counter() - start, _cpu()
    records = run.records
    return _row(records, wall, cpu0, cpu1)


def run_async(policy_name: str, workers: int, episodes: int) -> dict:
    """The reference on ``AsyncVectorEnv``, the obvious way (one step per action, rendering every step)."""
    import gymnasium as gym
    import numpy as np

    import envs  # noqa: F401  (registers the envs)
    from envs.registration import env_id
    from policies.base import Batch, EpisodeStart

    policy = _policy(policy_name)
    specs = suite(episodes).episode_specs()
    records, cpu0, start = [], _cpu(), time.perf_counter()
    for task in TASKS:
        vec = gym.vector.AsyncVectorEnv([lambda: gym.make(env_id(task, ROBOT)) for _ in range(workers)],
                                        shared_memory=False)
        mine = [s for s in specs if s.task == task]
        for first in range(0, len(mine), workers):
            batch_specs = mine[first:first + workers]
            n = len(batch_specs)
            assert n == workers and len({s.variant for s in batch_specs}) == 1, "cells must fill whole batches"
            obs, _ = vec.reset(seed=[s.seed for s in batch_specs], options={"perturbation": batch_specs[0].variant})
            policy.reset(list(range(n)), [EpisodeStart(s.id, s.task, s.robot, s.seed) for s in batch_specs])
            ended, steps, success, queue = [False] * n, [0] * n, [False] * n, []
            while not all(ended):
                if not queue:
                    chunk = policy.act(Batch(slots=list(range(n)), state=obs["state"],
                                             instruction=list(obs["instruction"]), agentview=obs["agentview"],
                                             wrist=obs["wrist"]))
                    chunk = np.asarray(chunk).reshape(n, -1, 7)
                    queue = [chunk[:, k] for k in range(chunk.shape[1])]
                obs, _, terminated, truncated, _ = vec.step(np.clip(queue.pop(0), -1, 1).astype(np.float32))
                for i in range(n):
                    if not ended[i]:
                        steps[i] += 1
                        if terminated[i] or truncated[i]:
                            ended[i], success[i] = True, bool(terminated[i])
            records += [{"id": s.id, "success": ok, "steps": k} for s, ok, k in zip(batch_specs, success, steps)]
        vec.close()
    wall, cpu1 = time.perf_counter() - start, _cpu()
    return _row(records, wall, cpu0, cpu1)


def _policy(name: str):
    from policies.loader import load_policy

    return load_policy(REFERENCE if name == "reference" else name)


def _row(records: list[dict], wall: float, cpu0: tuple, cpu1: tuple) -> dict:
    outcomes = {r["id"]: [r["success"], r["steps"]] for r in sorted(records, key=lambda r: r["id"])}
    steps = sum(v[1] for v in outcomes.values())
    return {"episodes": len(outcomes), "env_steps": steps, "wall_s": round(wall, 2),
            "episodes_per_s": round(len(outcomes) / wall, 3), "env_steps_per_s": round(steps / wall, 1),
            "main_cpu_ms_per_step": round(1000 * (cpu1[0] - cpu0[0]) / steps, 2),
            "worker_cpu_ms_per_step": round(1000 * (cpu1[1] - cpu0[1]) / steps, 2),
            "cores_busy": round((cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1]) / (wall * (os.cpu_count() or 1)), 3),
            "successes": sum(v[0] for v in outcomes.values()),
            "outcomes_sha": hashlib.sha256(json.dumps(outcomes).encode()).hexdigest()[:12], "outcomes": outcomes}


def run_case(name: str, episodes: int, video: str) -> dict:
    policy, engine, workers = CASES[name]
    if engine == "async":
        return run_async(policy, workers, episodes)
    return run_pool(policy, engine, workers, episodes, video)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2, help="episodes per (task, variant) cell, even (default 2)")
    parser.add_argument("--video", default="examples", help="video mode of the simeval cases (default examples)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # one case, in this process
    args = parser.parse_args()
    if args.episodes < 2 or args.episodes % 2:
        parser.error("--episodes must be an even number >= 2 (AsyncVectorEnv runs 2 episodes of a cell at a time)")
    if args.case:
        print(json.dumps(run_case(args.case, args.episodes, args.video)))
        return 0
    load = os.getloadavg()
    n = len(TASKS) * len(VARIANTS) * args.episodes
    print(f"command: {' '.join(['python', *sys.argv])}\n{n} episodes, {os.cpu_count()} cores, load {load[0]:.2f} "
          f"before the run, video {args.video}")
    rows = {}
    for name in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", name, "--episodes", str(args.episodes),
                              "--video", args.video], capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            raise SystemExit(f"case {name!r} failed")
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        row = rows[name]
        print(f"{name:<62} {row['episodes_per_s']:>6.2f} ep/s {row['env_steps_per_s']:>7.1f} steps/s  main "
              f"{row['main_cpu_ms_per_step']:>5.2f} ms/step  workers {row['worker_cpu_ms_per_step']:>5.2f} ms/step  "
              f"cores busy {row['cores_busy']:.0%}  outcomes {row['outcomes_sha']}", flush=True)

    def ratio(a: str, b: str) -> float:
        return round(rows[a]["episodes_per_s"] / rows[b]["episodes_per_s"], 2)

    ratios = {
        "reference: chunks (2) / today's default": ratio("reference, chunks, 2 workers", TODAY),
        "reference: chunks (2) / per-step (2)": ratio("reference, chunks, 2 workers", "reference, per-step, 2 workers"),
        "reference: chunks, 2 workers / 1 worker": ratio("reference, chunks, 2 workers", "reference, chunks, 1 worker"),
        "reference: per-step, 2 workers / 1 worker": ratio("reference, per-step, 2 workers",
                                                           "reference, per-step, 1 worker"),
        "reference: chunks (2) / AsyncVectorEnv (2)": ratio("reference, chunks, 2 workers",
                                                            "reference, AsyncVectorEnv, 2 envs"),
        "scripted: chunks / per-step": ratio("scripted, chunks, 2 workers", "scripted, per-step, 2 workers"),
    }
    same: dict = {policy: len({rows[n]["outcomes_sha"] for n, c in CASES.items()
                               if c[0] == policy and c[1] != "async"}) == 1 for policy in ("reference", "scripted")}
    ours = rows["reference, chunks, 2 workers"]["outcomes"]
    theirs = rows["reference, AsyncVectorEnv, 2 envs"]["outcomes"]
    same["AsyncVectorEnv: episodes that differ from simeval's"] = sorted(k for k in ours if ours[k] != theirs.get(k))
    print()
    for name, value in ratios.items():
        print(f"{name:<45} {value:.2f}x")
    print(f"identical outcomes across simeval's cases: {same}")
    if args.json:
        args.json.write_text(json.dumps({"command": ["python", *sys.argv], "load_before": load, "rows": rows,
                                         "ratios": ratios, "identical_outcomes": same}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
