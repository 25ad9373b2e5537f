"""Scripted-expert success over N seeds on every task x robot pair (the issue asks for >= 95% over 50).

    python scripts/expert_sweep.py --seeds 50 --out results/expert_sweep

writes ``<out>.json`` (per pair: successes, seeds, failed seeds, mean steps) and ``<out>.md`` (a table),
and exits 1 if any pair is below ``--threshold``. State-only rollouts (no cameras): the experts read
privileged state, and success is the goal predicate on the simulator state.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym

import envs  # noqa: F401  (registers the ids)
from envs.registration import env_id
from envs.robots import ROBOTS
from envs.tasks.library import TASKS
from policies.scripted import ScriptedExpert, rollout


def sweep(seeds: int, first_seed: int) -> list[dict]:
    rows = []
    for task in TASKS:
        for robot in ROBOTS:
            env = gym.make(env_id(task.name, robot), cameras=())
            expert = ScriptedExpert(env.unwrapped.task)
            start = time.perf_counter()
            results = [rollout(env, expert, s) for s in range(first_seed, first_seed + seeds)]
            env.close()
            rows.append({
                "task": task.name, "family": task.family, "robot": robot, "seeds": seeds,
                "successes": sum(r.success for r in results),
                "failed_seeds": [r.seed for r in results if not r.success],
                "mean_steps": round(sum(r.steps for r in results) / seeds, 1),
                "max_steps": task.max_steps, "seconds": round(time.perf_counter() - start, 1),
            })
            print(f"{robot:6s} {task.name:30s} {rows[-1]['successes']}/{seeds}", flush=True)
    return rows


def to_markdown(rows: list[dict], command: str) -> str:
    lines = [f"Scripted-expert success, `{command}`", "",
             "| task | family | robot | success | mean steps (limit) | failed seeds |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        rate = 100.0 * r["successes"] / r["seeds"]
        lines.append(f"| {r['task']} | {r['family']} | {r['robot']} | {r['successes']}/{r['seeds']} ({rate:.0f}%) | "
                     f"{r['mean_steps']} ({r['max_steps']}) | {', '.join(map(str, r['failed_seeds'])) or '-'} |")
    total = sum(r["successes"] for r in rows), sum(r["seeds"] for r in rows)
    lines += ["", f"Overall: {total[0]}/{total[1]} ({100.0 * total[0] / total[1]:.1f}%)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--out", type=Path, default=Path("results/expert_sweep"))
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    rows = sweep(args.seeds, args.first_seed)
    command = "python scripts/expert_sweep.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(to_markdown(rows, command.strip()))
    worst = min(r["successes"] / r["seeds"] for r in rows)
    print(f"lowest pair success {worst:.0%}; wrote {args.out.with_suffix('.md')}")
    return 0 if worst >= args.threshold else 1


if __name__ == "__main__":
    raise SystemExit(main())
