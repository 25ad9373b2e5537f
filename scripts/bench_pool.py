"""Benchmark of the env pool: 1 vs 2 workers, against gymnasium's AsyncVectorEnv and the limit.

    python scripts/bench_pool.py [--episodes 4] [--steps 60] [--json results/bench_pool.json]

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
from simeval.runner import rollout  # noqa: E402
from simeval.suites import Suite  # noqa: E402

TASKS, ROBOTS = ("PutCubeOnPlate", "OpenDrawer"), ("Panda", "Piper")


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


def bench_limit() -> float:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_env import bench_robot

    return bench_robot("PutCubeOnPlate", "Panda", 128, 200, 2, 0)["limit_steps_per_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4, help="episodes per task x robot (default 4)")
    parser.add_argument("--steps", type=int, default=60, help="steps per episode (default 60)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.episodes < 1 or args.steps < 1:
        parser.error("--episodes and --steps must be >= 1")
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
