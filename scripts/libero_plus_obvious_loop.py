"""LIBERO-Plus's per-variant evaluation loop written the obvious way, with the probe policy: the reference
simeval's ``libero_plus`` world is checked against.

Runs in LIBERO's side environment with LIBERO-Plus's config (its interpreter and
``SideEnv.environ(plus=True)``, whose ``LIBERO_CONFIG_PATH`` is ``<side home>/plus/config``), e.g.::

    python - <<'EOF'
    import subprocess
    from simeval.libero.sideenv import ensure_side_env
    side = ensure_side_env()
    subprocess.run([str(side.python), "scripts/libero_plus_obvious_loop.py", "--variants",
                    "libero_spatial/<variant name>,libero_spatial/<another>", "--out", "/tmp/plus.json"],
                   env=side.environ(plus=True), check=True)
    EOF

LIBERO-Plus's way, nothing clever: its benchmark (``liberoplus.liberoplus.benchmark``, task order 0) gives
each variant as a task; per variant a fresh ``OffScreenRenderEnv(bddl_file_name=<bddl_files>/<benchmark>/
<name>.bddl, camera_heights=256, camera_widths=256)`` (its ``ControlEnv`` parses the camera, the start
pose and the image noise off that name), ``env.seed(7)``, ``env.reset()``, ``obs = env.set_init_state(
init_states[0])`` with the init states from the benchmark's own ``get_task_init_states``; then openpi's
loop: 10 wait steps of ``[0]*6 + [-1]``, then the probe policy (``probe_policy.probe_chunk`` on
``agentview_image[::-1]``, ``robot0_eye_in_hand_image[::-1]``, ``robot0_eef_pos``, replanned every 5
steps) until ``done`` (success) or the benchmark's step limit (spatial 220, object 280, goal 300,
libero_10 520); every step renders both cameras (robosuite's default); ``env.close()``.

``--reload-policy-s S`` charges a model load per variant, as the frameworks that report LIBERO-Plus run
its loop (FastWAM#68 reloads the model for every variant). It is a STAND-IN: a ``time.sleep(S)`` before
each variant's env is built (wall time, no CPU), not a model; 0 (the default) charges nothing.

``--states DIR`` saves each variant's flattened simulator states (after set_init_state, each wait step,
each policy step) to ``DIR/<benchmark>__<variant name>__00.npy``, the format of ``envs/libero/worker.py``'s
trace (``SIMEVAL_LIBERO_TRACE``). The JSON written to ``--out``: per variant the success, policy steps,
env steps, the sha1 of both images at every decision, wall and CPU seconds; and the totals.

Imports only the standard library, numpy, LIBERO-Plus and ``probe_policy``, with openpi's episode loop from
``libero_obvious_loop`` (never simeval).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

_started = time.perf_counter()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "envs", "libero"))

import numpy as np  # noqa: E402

# openpi's episode loop and its constants, shared with LIBERO's obvious loop (which imports LIBERO only in its
# main, so this process imports LIBERO-Plus alone)
from libero_obvious_loop import RESOLUTION, SEED, run_episode  # noqa: E402

MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520}
INIT = 0  # LIBERO-Plus runs each variant once, from its first init state


def parse_variants(text: str) -> list[tuple[str, str]]:
    """``--variants``: comma-separated ``<benchmark>/<variant name>``; exits 2 with one line otherwise."""
    out = []
    for entry in (e.strip() for e in text.split(",")):
        benchmark, _, name = entry.partition("/")
        if benchmark not in MAX_STEPS or not name:
            sys.stderr.write(f"libero_plus_obvious_loop: --variants entry {entry[:160]!r}: give "
                             f"<benchmark>/<variant name>, benchmarks {', '.join(MAX_STEPS)}\n")
            sys.exit(2)
        out.append((benchmark, name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", required=True, help="comma-separated <benchmark>/<variant name>")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="policy steps per variant (default: the benchmark's)")
    parser.add_argument("--reload-policy-s", type=float, default=0.0,
                        help="a stand-in model load charged per variant: sleep this long before each env build")
    parser.add_argument("--states", default=None, help="directory for each variant's per-step simulator states")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    args = parser.parse_args()
    variants = parse_variants(args.variants)
    if args.max_steps is not None and args.max_steps < 1 or args.reload_policy_s < 0:
        sys.stderr.write("libero_plus_obvious_loop: --max-steps must be >= 1 and --reload-policy-s >= 0\n")
        sys.exit(2)

    from liberoplus.liberoplus import benchmark, get_libero_path
    from liberoplus.liberoplus.envs import OffScreenRenderEnv

    imported = time.perf_counter()
    suites: dict = {}
    if args.states:
        os.makedirs(args.states, exist_ok=True)
    episodes, build_s, reload_s = [], 0.0, 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for bench, name in variants:
        started, started_cpu = time.perf_counter(), time.process_time()
        if bench not in suites:
            suites[bench] = benchmark.get_benchmark_dict()[bench]()  # prints its task order to stdout
        suite = suites[bench]
        try:
            task_id = suite.get_task_names().index(name)
        except ValueError:
            sys.stderr.write(f"libero_plus_obvious_loop: {bench} has no variant {name[:160]!r}\n")
            sys.exit(2)
        task = suite.get_task(task_id)
        init_states = suite.get_task_init_states(task_id)
        bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        if args.reload_policy_s:
            time.sleep(args.reload_policy_s)  # the stand-in model load (see the module docstring)
            reload_s += args.reload_policy_s
        built = time.perf_counter()
        env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=RESOLUTION, camera_widths=RESOLUTION)
        env.seed(SEED)
        build_s += time.perf_counter() - built
        states = [] if args.states else None
        row = run_episode(env, init_states[INIT], args.max_steps or MAX_STEPS[bench], states)
        env.close()
        key = f"{bench}__{name}__{INIT:02d}"
        if states is not None:
            np.save(os.path.join(args.states, key + ".npy"), np.array(states))
        episodes.append({"benchmark": bench, "variant": name, "task": f"{bench}/{name}", "init": INIT, "name": key,
                         **row, "wall_s": time.perf_counter() - started, "cpu_s": time.process_time() - started_cpu})
        print(f"{key}: success={row['success']} steps={row['steps']} wall={episodes[-1]['wall_s']:.1f}s",
              file=sys.stderr, flush=True)
    out = {"variants": [f"{b}/{n}" for b, n in variants], "max_steps": args.max_steps,
           "reload_policy_s": args.reload_policy_s, "episodes": episodes,
           "env_steps": sum(e["env_steps"] for e in episodes),  # every env.step, the wait steps included
           "policy_steps": sum(e["steps"] for e in episodes),
           "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "build_s": build_s,
           "reload_s": reload_s, "import_s": imported - _started, "process_cpu_s": time.process_time()}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
