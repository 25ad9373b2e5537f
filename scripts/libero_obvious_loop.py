"""LIBERO's evaluation loop written the obvious way, with the probe policy: the reference simeval is checked against.

Runs in LIBERO's side environment (its interpreter and ``SideEnv.environ()``), e.g.::

    python - <<'EOF'
    import subprocess
    from simeval.libero.sideenv import ensure_side_env
    side = ensure_side_env()
    subprocess.run([str(side.python), "scripts/libero_obvious_loop.py", "--benchmark", "libero_spatial",
                    "--tasks", "0,1", "--episodes", "2", "--out", "/tmp/obvious.json"], env=side.environ(), check=True)
    EOF

Exactly openpi's LIBERO example (examples/libero/main.py) and nothing clever: per task one plain
``OffScreenRenderEnv(bddl_file_name=..., camera_heights=256, camera_widths=256)``, ``env.seed(7)``; per
episode k (init states 0..N-1, in order) LIBERO's hard ``env.reset()``, ``obs = env.set_init_state(init_states[k])``,
then ``while t < max_steps + 10``: 10 wait steps of ``[0]*6 + [-1]``, then the policy's steps, asking it
(``probe_policy.probe_chunk`` on ``agentview_image[::-1]``, ``robot0_eye_in_hand_image[::-1]``,
``robot0_eef_pos``) whenever the action plan is empty and taking the chunk's first 5 actions, until
``done`` (success) or ``max_steps`` policy steps. Every step renders both cameras (robosuite's default).

``--states DIR`` saves each episode's flattened simulator states (``env.get_sim_state()`` after
set_init_state, after each wait step and after each policy step) to
``DIR/<benchmark>__<task name>__<init:02d>.npy``, the format of ``envs/libero/worker.py``'s trace
(``SIMEVAL_LIBERO_TRACE``). The JSON written to ``--out``: per episode the success, policy steps, env steps,
the sha1 of both images at every decision, wall and CPU seconds; and the totals.

Imports only the standard library, numpy, LIBERO and ``probe_policy`` (never simeval).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

_started = time.perf_counter()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "envs", "libero"))

import numpy as np  # noqa: E402

import probe_policy  # noqa: E402

MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
NUM_STEPS_WAIT = 10
REPLAN_STEPS = 5
SEED = 7
RESOLUTION = 256
WAIT_ACTION = [0.0] * 6 + [-1.0]


def sha1(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def run_episode(env, init_state: np.ndarray, max_steps: int, states: list | None) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    env.reset()
    obs = env.set_init_state(init_state)
    if states is not None:
        states.append(env.get_sim_state().copy())
    t, steps, success, plan = 0, 0, False, []
    agentview_sha1, wrist_sha1 = [], []
    while t < max_steps + NUM_STEPS_WAIT:
        if t < NUM_STEPS_WAIT:
            obs, reward, done, info = env.step(WAIT_ACTION)
            if states is not None:
                states.append(env.get_sim_state().copy())
            t += 1
            continue
        if not plan:
            agentview = obs["agentview_image"][::-1]
            wrist = obs["robot0_eye_in_hand_image"][::-1]
            agentview_sha1.append(sha1(agentview))
            wrist_sha1.append(sha1(wrist))
            chunk = probe_policy.probe_chunk(agentview, wrist, obs["robot0_eef_pos"], REPLAN_STEPS)
            plan.extend(chunk[:REPLAN_STEPS])
        action = plan.pop(0)
        obs, reward, done, info = env.step(action.tolist())
        steps += 1
        if states is not None:
            states.append(env.get_sim_state().copy())
        if done:
            success = True
            break
        t += 1
    return {"success": success, "steps": steps, "env_steps": steps + NUM_STEPS_WAIT,
            "agentview_sha1": agentview_sha1, "wrist_sha1": wrist_sha1,
            "wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="libero_spatial", choices=sorted(MAX_STEPS))
    parser.add_argument("--tasks", default="0", help="comma-separated task indices in the benchmark")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per task: init states 0..N-1, in order")
    parser.add_argument("--max-steps", type=int, default=None, help="policy steps per episode (default: openpi's)")
    parser.add_argument("--states", default=None, help="directory for each episode's per-step simulator states")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    args = parser.parse_args()

    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    imported = time.perf_counter()
    max_steps = args.max_steps or MAX_STEPS[args.benchmark]
    suite = benchmark.get_benchmark_dict()[args.benchmark]()
    if args.states:
        os.makedirs(args.states, exist_ok=True)
    episodes, build_s = [], 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for task_id in [int(t) for t in args.tasks.split(",")]:
        task = suite.get_task(task_id)
        init_states = suite.get_task_init_states(task_id)
        bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        built = time.perf_counter()
        env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=RESOLUTION, camera_widths=RESOLUTION)
        env.seed(SEED)
        build_s += time.perf_counter() - built
        for k in range(args.episodes):
            states = [] if args.states else None
            row = run_episode(env, init_states[k], max_steps, states)
            name = f"{args.benchmark}__{task.name}__{k:02d}"
            if states is not None:
                np.save(os.path.join(args.states, name + ".npy"), np.array(states))
            episodes.append({"benchmark": args.benchmark, "task_index": task_id, "task": task.name, "init": k,
                             "name": name, **row})
            print(f"{name}: success={row['success']} steps={row['steps']} wall={row['wall_s']:.1f}s", file=sys.stderr,
                  flush=True)
        env.close()
    out = {"benchmark": args.benchmark, "tasks": args.tasks, "episodes_per_task": args.episodes,
           "max_steps": max_steps, "episodes": episodes,
           "env_steps": sum(e["env_steps"] for e in episodes),  # every env.step, the wait steps included
           "policy_steps": sum(e["steps"] for e in episodes),
           "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "build_s": build_s,
           "import_s": imported - _started, "process_cpu_s": time.process_time()}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
