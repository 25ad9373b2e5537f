"""Benchmark of the env pool: 1 vs 2 workers, against gymnasium's AsyncVectorEnv and the limit;
and the local pool against the Ray pool.

    python scripts/bench_pool.py [--episodes 4] [--steps 60] [--json results/bench_pool.json]
    python scripts/bench_pool.py --backends [--episodes 4] [--rounds 2] [--json results/bench_pool_ray.json]

One run, the same episodes everywhere: PutCubeOnPlate and OpenDrawer on both robots, nominal, both
cameras at 128x128, random actions from a policy that receives the images (so image transport is
part of the cost), every episode run to the step limit. Measured:
* the pool (``simeval.pools`` + ``simeval.runner.rollout``) with 1 and then 2 workers, and 2 workers
  with 2 slots each;
* ``gymnasium.vector.AsyncVectorEnv`` with 2 envs per (task, robot), stepped with random batches
  until the same number of episodes ended -- "the obvious way" (its shared memory cannot hold the
  text instruction, so observations are pickled);
* the single-process limit from ``scripts/bench_env.py``: bare physics + renders on one model.
Ratios within this run are what matter (the machine is shared and noisy). "Cores busy" is the CPU
time of the process and its workers over wall time x cores (``getrusage``).

``--backends``: the reference (both cameras at 128x128, chunks of 4) and the scripted experts on
the same episodes (the four task x robot pairs above, nominal, ``--episodes`` each, the tasks' own
step limits capped at 120), 2 workers, on the local pool and on the Ray pool, alternating, for
``--rounds`` rounds (the scripted experts on 4x the episodes: theirs are short); every Ray round
must give the local per-episode records. Each case's time is reported whole (``episodes_per_s``,
the pool's start included) and once running (``running_episodes_per_s``: from the first commands
to the last episode's end). Ray's start-up
(``ray.init`` with 2 CPUs) is timed apart; the actors' start is inside each Ray case, as the worker
processes' start is inside each local one. Also: the bytes that cross Ray's object store per env
step and per chunk (replies with their images, and commands), what a multi-node run pays on the
network.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402,F401
from envs.registration import env_id  # noqa: E402
from policies.base import Batch, Policy  # noqa: E402
from simeval.pools import PoolConfig  # noqa: E402
from simeval.runner import Observer, rollout  # noqa: E402
from simeval.suites import Suite  # noqa: E402

TASKS, ROBOTS = ("PutCubeOnPlate", "OpenDrawer"), ("Panda", "Piper")
ROOT = Path(__file__).resolve().parents[1]


class ImageRandomPolicy(Policy):
    """Random actions, but it asks for both images and reads them, as a vision policy would."""

    def act(self, batch: Batch) -> np.ndarray:
        assert batch.agentview is not None and batch.wrist is not None
        seed = int(batch.agentview[:, :2, :2].sum() + batch.wrist[:, :2, :2].sum())
        return np.random.default_rng(seed).uniform(-0.3, 0.3, (len(batch), 7))


def bench_pool(episodes: int, steps: int, workers: int, slots: int = 1) -> dict:
    suite = Suite(name="bench", tasks=list(TASKS), robots=list(ROBOTS), perturbations=["nominal"],
                  episodes=episodes, max_steps=steps, seed=0)
    specs = suite.episode_specs()
    cpu = _cpu()
    outcome = rollout(specs, ImageRandomPolicy(), PoolConfig(workers=workers, slots_per_worker=slots))
    return {"episodes": len(specs), "env_steps": outcome.env_steps, "wall_s": outcome.wall_s,
            "episodes_per_s": len(specs) / outcome.wall_s, "steps_per_s": outcome.env_steps / outcome.wall_s,
            "cores_busy": (_cpu() - cpu) / (outcome.wall_s * (os.cpu_count() or 1))}


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the pool's workers, the vector envs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_async(episodes: int, steps: int, n_envs: int = 2) -> dict:
    """AsyncVectorEnv per (task, robot); episodes end at the same step limit as the pool's."""
    total_steps, total_episodes, wall, cpu = 0, 0, 0.0, _cpu()
    rng = np.random.default_rng(0)
    for task in TASKS:
        for robot in ROBOTS:
            start = time.perf_counter()
            vec = gym.vector.AsyncVectorEnv([lambda t=task, r=robot: gym.make(env_id(t, r), max_episode_steps=steps)
                                             for _ in range(n_envs)], shared_memory=False)
            vec.reset(seed=0)
            done = 0
            while done < episodes:
                _, _, terminated, truncated, _ = vec.step(rng.uniform(-0.3, 0.3, (n_envs, 7)).astype(np.float32))
                total_steps += n_envs
                done += int(np.sum(terminated | truncated))
            vec.close()
            wall += time.perf_counter() - start
            total_episodes += done
    return {"episodes": total_episodes, "env_steps": total_steps, "wall_s": wall,
            "episodes_per_s": total_episodes / wall, "steps_per_s": total_steps / wall,
            "cores_busy": (_cpu() - cpu) / (wall * (os.cpu_count() or 1))}


class _Clock(Observer):
    """Notes when the first commands go out (the pool has started) and when the last episode ends
    (before the pool closes), and keeps the pool."""

    def __init__(self) -> None:
        self.pool, self.first_round, self.last_end = None, 0.0, 0.0

    def round(self, pool, index: int) -> None:
        if index == 0:
            self.pool, self.first_round = pool, time.perf_counter()
            pool.measure = True  # the Ray pool counts the bytes it moves only when asked

    def finished(self, slot, episode, record) -> None:
        self.last_end = time.perf_counter()


def bench_backend(policy_name: str, backend: str, episodes: int) -> dict:
    """One case through the harness (``run_episodes``), as ``simeval run --backend`` runs it."""
    import tempfile

    from policies.loader import load_policy
    from simeval.harness import RunRequest, run_episodes

    policy = load_policy(str(ROOT / "results" / "reference") if policy_name == "reference" else policy_name)
    clock = _Clock()
    suite = Suite(name="bench", tasks=list(TASKS), robots=list(ROBOTS), perturbations=["nominal"],
                  episodes=episodes, max_steps=120, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        request = RunRequest(suite=suite, policy=policy_name, out=Path(tmp) / "run", workers=2, video="none",
                             progress=False, backend=backend)
        start = time.perf_counter()
        run = run_episodes(request, policy, observers=[clock])
    outcome, pool, n = run.outcome, clock.pool, len(run.specs)
    row = {"episodes": n, "env_steps": outcome.env_steps, "wall_s": outcome.wall_s,
           "episodes_per_s": n / outcome.wall_s, "steps_per_s": outcome.env_steps / outcome.wall_s,
           "pool_start_s": clock.first_round - start,
           "running_episodes_per_s": n / (clock.last_end - clock.first_round),
           "records": {r["id"]: [r["success"], r["steps"]] for r in outcome.records}}
    if backend == "ray":
        row.update(replies=pool.replies, bytes_returned=pool.bytes_returned, bytes_sent=pool.bytes_sent,
                   bytes_per_env_step=(pool.bytes_returned + pool.bytes_sent) / outcome.env_steps,
                   bytes_per_reply=pool.bytes_returned / pool.replies)
    return row


def backends(args: argparse.Namespace) -> int:
    """Local against Ray, alternating; see the module docstring."""
    import statistics

    import ray

    load = os.getloadavg()
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    startup = time.perf_counter() - start
    rows: dict[str, list] = {}
    for round_ in range(args.rounds):
        for policy, episodes in (("reference", args.episodes), ("scripted", 4 * args.episodes)):
            local, remote = bench_backend(policy, "local", episodes), bench_backend(policy, "ray", episodes)
            assert local.pop("records") == remote.pop("records"), f"{policy}: Ray's records differ from the local pool's"
            rows.setdefault(f"{policy}, local", []).append(local)
            rows.setdefault(f"{policy}, ray", []).append(remote)
            print(f"round {round_ + 1} {policy}: local {local['episodes_per_s']:.2f} ep/s, ray "
                  f"{remote['episodes_per_s']:.2f} ep/s ({remote['episodes_per_s'] / local['episodes_per_s']:.2f}x), "
                  f"{remote['bytes_per_env_step']:.0f} B per env step, {remote['bytes_per_reply']:.0f} B per reply; "
                  f"pool start {local['pool_start_s']:.2f} s / {remote['pool_start_s']:.2f} s; once running "
                  f"{local['running_episodes_per_s']:.2f} / {remote['running_episodes_per_s']:.2f} ep/s", flush=True)
    ray.shutdown()
    median = {name: statistics.median(r["episodes_per_s"] for r in runs) for name, runs in rows.items()}
    ratios = {f"{policy} ({key})": statistics.median(r[key] / l[key] for l, r in zip(rows[f"{policy}, local"],
                                                                                     rows[f"{policy}, ray"]))
              for policy in ("reference", "scripted") for key in ("episodes_per_s", "running_episodes_per_s")}
    summary = {"command": sys.argv, "load_before": [round(v, 2) for v in load], "cpu_count": os.cpu_count(),
               "ray_init_s": startup, "median_episodes_per_s": median, "median_ray_over_local": ratios,
               "records_identical": True, "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def bench_limit() -> float:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_env import bench_robot

    return bench_robot("PutCubeOnPlate", "Panda", 128, 200, 2, 0)["limit_steps_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4, help="episodes per task x robot (default 4)")
    parser.add_argument("--steps", type=int, default=60, help="steps per episode (default 60)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--backends", action="store_true", help="the local pool against the Ray pool instead")
    parser.add_argument("--rounds", type=int, default=2, help="with --backends: rounds of alternating cases")
    args = parser.parse_args()
    if args.episodes < 1 or args.steps < 1:
        parser.error("--episodes and --steps must be >= 1")
    if args.backends:
        return backends(args)
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"{len(TASKS) * len(ROBOTS) * args.episodes} episodes of {args.steps} steps, both cameras at 128x128, "
          f"{os.cpu_count()} cores")
    rows = {"pool, 1 worker": bench_pool(args.episodes, args.steps, 1),
            "pool, 2 workers": bench_pool(args.episodes, args.steps, 2),
            "pool, 2 workers x 2 slots": bench_pool(args.episodes, args.steps, 2, slots=2),
            "AsyncVectorEnv, 2 envs": bench_async(args.episodes, args.steps)}
    limit = bench_limit()
    print(f"\n{'':<26} | {'episodes/s':>10} | {'env steps/s':>11} | {'cores busy':>10}")
    print("-" * 67)
    for name, row in rows.items():
        print(f"{name:<26} | {row['episodes_per_s']:>10.2f} | {row['steps_per_s']:>11.1f} | {row['cores_busy']:>10.0%}")
    print(f"{'limit, 1 process':<26} | {'':>10} | {limit:>11.1f} |")
    one, two, vec = rows["pool, 1 worker"], rows["pool, 2 workers"], rows["AsyncVectorEnv, 2 envs"]
    ratios = {"2 workers / 1 worker": two["steps_per_s"] / one["steps_per_s"],
              "pool (2) / AsyncVectorEnv (2)": two["steps_per_s"] / vec["steps_per_s"],
              "pool (2 x 2 slots) / AsyncVectorEnv (2)":
                  rows["pool, 2 workers x 2 slots"]["steps_per_s"] / vec["steps_per_s"],
              "pool (1) / limit": one["steps_per_s"] / limit}
    print()
    for name, value in ratios.items():
        print(f"{name:<32} {value:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"command": sys.argv, "rows": rows, "limit_steps_per_s": limit,
                                         "ratios": ratios}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
