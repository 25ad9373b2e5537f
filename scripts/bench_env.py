"""Benchmark: control steps per second of a simeval env against its own limit and robosuite.

For one task on each robot, with both cameras (``agentview``, ``wrist``) at ``--size``:

* **env**: ``gymnasium.make(f"simeval/{task}-{robot}-v0", image_size=size)`` stepped with a fixed,
  seeded sequence of small random actions (gripper included). Only ``env.step`` is timed; when an
  episode ends, the reset happens outside the timer.
* **limit**: the SAME compiled model and data (``env.unwrapped.model`` / ``.data``), with no Python
  controller around them: ``mj_step(nstep=SUBSTEPS)`` plus one ``mujoco.Renderer`` drawing both
  cameras with the env's fast-profile flags (no shadow / reflection / skybox, sites hidden). It
  replays the actuator targets (``data.ctrl``) recorded in an untimed env pass from the same reset,
  so the arm follows the same path (it does not fall, and the cameras see the same pictures: a
  software rasteriser's cost depends on what is in view). This is what one control step costs at
  best, so env / limit says what the env's own Python (IK controller, goals, observation) costs.
* **robosuite**: robosuite's ``Lift`` (Panda, default controller, same cameras and size) for scale.

Each measurement is warmed up, then timed ``--rounds`` times, env and limit interleaved, and the
best round is kept (the machine is shared and noisy: ratios within one run are what matter).
With Mesa's llvmpipe a ratio slightly above 1 can occur: back-to-back renders in the bare loop wait
a little longer on llvmpipe's worker threads than the env's (gone with ``LP_NUM_THREADS=0``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from typing import Any, Callable

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402,F401  (registers the simeval ids)
from envs.perturbations import parse_variant  # noqa: E402
from envs.robots import ROBOTS  # noqa: E402
from envs.scene import MAX_RENDER_SIZE, SUBSTEPS  # noqa: E402
from envs.tasks.library import TASKS  # noqa: E402

WARMUP = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="PutCubeOnPlate", help="task name (default: PutCubeOnPlate)")
    p.add_argument("--robots", default="Panda,Piper", help="comma-separated robots (default: Panda,Piper)")
    p.add_argument("--steps", type=int, default=300, help="timed steps per measurement round (default: 300)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per measurement, best kept (default: 3)")
    p.add_argument("--size", type=int, default=128, help="image height and width (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of the actions and resets (default: 0)")
    p.add_argument("--robosuite-steps", type=int, default=40, help="timed robosuite steps (default: 40)")
    p.add_argument("--no-robosuite", action="store_true", help="skip the robosuite Lift measurement")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    p.add_argument("--perturbation", action="append", default=None, metavar="VARIANT",
                   help="perturbation variant of the env, e.g. 'camera:3,light:3' (repeat to measure several; "
                        "default: nominal)")
    args = p.parse_args(argv)
    args.robots = [r.strip() for r in args.robots.split(",") if r.strip()]
    if not args.robots:
        p.error("--robots: give at least one robot")
    for name in ("steps", "rounds", "robosuite_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 16 <= args.size <= MAX_RENDER_SIZE:
        p.error(f"--size must be in 16..{MAX_RENDER_SIZE}, got {args.size}")
    if args.task not in {t.name for t in TASKS}:
        p.error(f"--task: unknown task {args.task!r}; valid: {', '.join(t.name for t in TASKS)}")
    bad = [r for r in args.robots if r not in ROBOTS]
    if bad:
        p.error(f"--robots: unknown robot(s) {', '.join(bad)}; valid: {', '.join(ROBOTS)}")
    try:
        args.perturbation = [str(parse_variant(v)) for v in (args.perturbation or ["nominal"])]
    except ValueError as err:
        p.error(f"--perturbation: {err}")
    return args


def timed(step: Callable[[], None], n: int) -> float:
    """Steps per second of ``n`` calls of ``step`` after a warm-up."""
    for _ in range(WARMUP):
        step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return n / (time.perf_counter() - t0)


def bench_robot(task: str, robot: str, size: int, steps: int, rounds: int, seed: int,
                variant: str = "nominal") -> dict[str, float]:
    """Best-of-``rounds`` env and limit steps/s for one robot, on one compiled model.

    With a perturbation the env resets into it, and the limit runs on the model as perturbed (same
    camera, lights, textures, layout); per-frame image noise is env work the limit does not do.
    """
    env = gym.make(f"simeval/{task}-{robot}-v0", image_size=size, perturbation=variant)
    base = env.unwrapped
    model, data = base.model, base.data
    cams = [base._camera_ids["agentview"], base._camera_ids["wrist"]]
    renderer = mujoco.Renderer(model, size, size)
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
        renderer.scene.flags[flag] = 0
    opt = mujoco.MjvOption()
    opt.sitegroup[:] = 0
    actions = np.random.default_rng(seed).uniform(-0.3, 0.3, (steps + WARMUP, 7)).astype(np.float32)
    actions[:, 6] = np.where(np.arange(len(actions)) % 40 < 20, -1.0, 1.0)  # open / close the gripper

    def env_rate(record: list[np.ndarray] | None = None) -> float:
        env.reset(seed=seed)
        elapsed, n = 0.0, 0
        for k, action in enumerate(actions):
            t0 = time.perf_counter()
            _, _, term, trunc, _ = env.step(action)
            if k >= WARMUP:
                elapsed += time.perf_counter() - t0
                n += 1
            if record is not None:
                record.append(data.ctrl.copy())
            if term or trunc:
                env.reset()  # outside the timer
        return n / elapsed

    ctrls: list[np.ndarray] = []  # the actuator targets of an env pass, replayed by the limit

    def limit_rate() -> float:
        env.reset(seed=seed)  # same start as the env rounds
        targets = iter(ctrls)

        def limit_step() -> None:
            data.ctrl[:] = next(targets)  # same trajectory, so the same contacts and the same pictures
            mujoco.mj_step(model, data, nstep=SUBSTEPS)
            for cam in cams:
                renderer.update_scene(data, camera=cam, scene_option=opt)
                renderer.render()
        return timed(limit_step, steps)

    best = {"env": 0.0, "limit": 0.0}
    order: list[tuple[str, Callable[[], float]]] = [("env", env_rate), ("limit", limit_rate)]
    try:
        env_rate(ctrls)  # untimed pass that records them
        for r in range(rounds):  # interleaved, order alternating, so drifts in machine load hit both
            for name, rate in order if r % 2 == 0 else order[::-1]:
                best[name] = max(best[name], rate())
    finally:
        renderer.close()
        env.close()
    return {"env_steps_per_s": best["env"], "limit_steps_per_s": best["limit"], "ratio": best["env"] / best["limit"]}


ROBOSUITE_WARMUP = """
import os; os.environ.setdefault("MUJOCO_GL", "egl")
import numpy as np, robosuite
env = robosuite.make("Lift", robots="Panda", has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False)
env.reset(); env.step(np.zeros(env.action_dim)); env.close()
"""


def warm_robosuite_jit() -> None:
    """Compile robosuite's numba functions into their on-disk cache in a separate process.

    Measured here: when numba JIT-compiles in the same process as Mesa's llvmpipe (both use LLVM),
    later renders return in 0.06 ms instead of 29 ms and robosuite's figure is 200 steps/s instead
    of 12; with the cache warm, no compilation happens in the measuring process.
    """
    subprocess.run([sys.executable, "-c", ROBOSUITE_WARMUP], check=True, capture_output=True)


def bench_robosuite(size: int, steps: int, seed: int) -> dict[str, float]:
    """robosuite Lift (Panda, default controller) steps/s and reset seconds, same cameras and size."""
    warm_robosuite_jit()
    import robosuite

    env = robosuite.make("Lift", robots="Panda", has_renderer=False, has_offscreen_renderer=True,
                         use_camera_obs=True, camera_names=["agentview", "robot0_eye_in_hand"],
                         camera_heights=size, camera_widths=size, control_freq=20, seed=seed)
    try:
        low, high = env.action_spec
        t0 = time.perf_counter()
        env.reset()
        reset_s = time.perf_counter() - t0
        rng = np.random.default_rng(seed)
        actions = rng.uniform(-0.3, 0.3, (steps + WARMUP, len(low))) * (high - low) / 2 + (high + low) / 2
        it = iter(actions)
        last: list[dict[str, Any]] = []
        rate = timed(lambda: last.append(env.step(next(it))[0]), steps)
    finally:
        env.close()
    cams = ("agentview_image", "robot0_eye_in_hand_image")
    if any(float(np.std(last[-1][c])) < 1.0 for c in cams):  # a blank image would mean nothing was drawn
        print("warning: robosuite returned a blank camera image; its figure is suspect", file=sys.stderr)
    if rate > 100:  # two 128x128 renders of its scene cost ~60 ms on a CPU: this fast, nothing was rasterised
        print(f"warning: robosuite at {rate:.0f} steps/s cannot have rendered its cameras; figure is suspect",
              file=sys.stderr)
    return {"steps_per_s": rate, "reset_s": reset_s, "action_dim": int(env.action_dim)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"task {args.task}, cameras agentview+wrist at {args.size}x{args.size}, {SUBSTEPS} substeps/step, "
          f"best of {args.rounds} rounds x {args.steps} timed steps (env: step time only, resets excluded)")
    results: dict[str, Any] = {"command": sys.argv, "task": args.task, "size": args.size, "steps": args.steps,
                               "rounds": args.rounds, "seed": args.seed, "substeps": SUBSTEPS, "robots": {}}
    results["perturbations"] = args.perturbation
    for variant in args.perturbation:
        for robot in args.robots:
            key = robot if variant == "nominal" else f"{robot} [{variant}]"
            results["robots"][key] = bench_robot(args.task, robot, args.size, args.steps, args.rounds, args.seed,
                                                 variant)
    width = max(len(k) for k in results["robots"])
    print(f"\n{'robot':<{width}} | {'env steps/s':>11} | {'limit steps/s':>13} | {'env/limit':>9}")
    print("-" * (width + 43))
    for robot, r in results["robots"].items():
        flag = "" if r["ratio"] >= 0.70 else "  (< 0.70 target)"
        print(f"{robot:<{width}} | {r['env_steps_per_s']:>11.1f} | {r['limit_steps_per_s']:>13.1f} | "
              f"{r['ratio']:>9.2f}{flag}")
    if not args.no_robosuite:
        rs = results["robosuite"] = bench_robosuite(args.size, args.robosuite_steps, args.seed)
        print(f"\nrobosuite Lift-Panda (agentview+robot0_eye_in_hand, {args.size}x{args.size}, action dim "
              f"{rs['action_dim']}): {rs['steps_per_s']:.1f} steps/s over {args.robosuite_steps} steps, "
              f"reset {rs['reset_s']:.2f} s")
        for robot, r in results["robots"].items():
            r["vs_robosuite"] = r["env_steps_per_s"] / rs["steps_per_s"]
            print(f"  {robot}: env / robosuite = {r['vs_robosuite']:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
