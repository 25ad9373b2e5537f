"""LIBERO-Plus's own loop, written the obvious way (the reference simeval's plus worker is tested against).

Runs in LIBERO's side environment with LIBERO-Plus's config (``SideEnv.environ(plus=True)``): per variant a
fresh ``OffScreenRenderEnv`` on its BDDL path, ``seed(7)``, ``reset``, ``set_init_state`` with LIBERO-Plus's
own ``get_task_init_states``, ``--wait`` steps of ``[0]*6 + [-1]`` with every camera rendered. Writes, per
variant, the simulator states (after set_init_state and each step), the last agentview and wrist images
(upright), the robot's joint positions after set_init_state and after the steps, and the env's instruction.

    python scripts/libero_plus_loop.py --out DIR BENCHMARK/VARIANT ...
"""

from __future__ import annotations

import argparse
import json
import os
import time
import types

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--wait", type=int, default=10)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("variants", nargs="+")
    args = parser.parse_args()
    from liberoplus.liberoplus import get_libero_path
    from liberoplus.liberoplus.benchmark import Benchmark
    from liberoplus.liberoplus.envs import OffScreenRenderEnv

    summary = {}
    for i, task in enumerate(args.variants):
        benchmark, name = task.split("/")
        entry = types.SimpleNamespace(problem_folder=benchmark, init_states_file=f"{name}.pruned_init")
        inits = Benchmark.get_task_init_states(types.SimpleNamespace(tasks=[entry]), 0)
        start = time.perf_counter()
        env = OffScreenRenderEnv(bddl_file_name=os.path.join(get_libero_path("bddl_files"), benchmark, f"{name}.bddl"),
                                 camera_heights=args.size, camera_widths=args.size)
        built = time.perf_counter() - start
        env.seed(7)
        env.reset()
        env.set_init_state(inits[0])
        joints = env.env.robots[0]._ref_joint_pos_indexes
        q_init = env.env.sim.data.qpos[joints].tolist()
        states, obs = [env.get_sim_state().copy()], None
        start = time.perf_counter()
        for _ in range(args.wait):
            obs, _, _, _ = env.step([0.0] * 6 + [-1.0])
            states.append(env.get_sim_state().copy())
        step_ms = (time.perf_counter() - start) / max(args.wait, 1) * 1000
        np.savez(os.path.join(args.out, f"{i}.npz"), states=np.array(states),
                 agentview=np.ascontiguousarray(obs["agentview_image"][::-1]),
                 wrist=np.ascontiguousarray(obs["robot0_eye_in_hand_image"][::-1]))
        summary[task] = {"q_init": q_init, "q_wait": env.env.sim.data.qpos[joints].tolist(), "build_s": built,
                         "step_ms": step_ms, "instruction": env.language_instruction,
                         "robot": type(env.env.robots[0].robot_model).__name__}
        env.close()
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
