"""Check that a cheap (soft) LIBERO reset reproduces the hard reset bit for bit.

LIBERO's ``env.reset()`` rebuilds the MuJoCo model and sim from XML (seconds); a soft
reset is ~100x cheaper, and ``cheap_reset`` lists what it must also replay to match.

Per task (env built once): A = ``env.seed(7)``; per episode k a hard reset,
``set_init_state(inits[k])``, 10 waits ``[0]*6+[-1]``, S fixed pseudo-random steps (arm
moves, gripper flips every 8 steps), as in openpi's LIBERO eval; B = the same from a fresh
seed(7) with cheap resets; C ("RNG position alone") = fresh seed(7), k bare cheap resets,
then episode k=2 as in A. Recorded after set_init_state and each step: flat sim state,
ctrl, eef pos/quat, gripper qpos, done, sha1 of both cameras at steps 10/15/20, model
body_pos/body_quat (fixture placements). A vs B and A[k] vs C must match byte for byte.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from typing import Any

import mujoco
import numpy as np
from libero.libero import benchmark, get_libero_path
from libero.libero.envs import OffScreenRenderEnv
from robosuite.utils.errors import RandomizationError

WAIT = [0.0] * 6 + [-1.0]
IMG_STEPS = (10, 15, 20)
CAMS = ("agentview_image", "robot0_eye_in_hand_image")
EEF = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
RECIPE = ("env.env.hard_reset=False; per attempt: object_property_initializers.extend(<1st load's>), model body_pos/"
          "quat = compiled XML's, env.env.reset() (retry on RandomizationError); gripper.current_action = zeros")
Record = dict[str, list[Any]]


def actions(steps: int, seed: int = 0) -> np.ndarray:
    """Deterministic arm actions in [-1, 1]; gripper +1/-1 flipping every 8 steps."""
    a = np.random.RandomState(seed).uniform(-1.0, 1.0, (steps, 7))
    a[:, 6] = [1.0 if (t // 8) % 2 == 0 else -1.0 for t in range(steps)]
    return a


def pristine(env: OffScreenRenderEnv) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Call right after construction: body_pos/body_quat of the compiled XML (what a hard
    reset starts from) and the property samplers that each _load_model appends."""
    e = env.env
    if not hasattr(e, "_pristine"):
        m = mujoco.MjModel.from_xml_string((e._xml_processor or (lambda x: x))(e.model.get_xml()))
        e._pristine = (m.body_pos.copy(), m.body_quat.copy(), list(e.object_property_initializers))
    return e._pristine


def cheap_reset(env: OffScreenRenderEnv) -> None:
    """Soft reset that replays what a hard reset changes besides rebuilding the XML:
    (1) LIBERO's _load_model APPENDS its Open/Close/TurnOnOff samplers to
    object_property_initializers without clearing it (one extra np.random draw per
    predicate per hard reset), so append them too; (2) restore fixture poses in the model
    (samplers run mj_step1 and read the sim before fixtures are placed); (3) retry on
    RandomizationError like ControlEnv.reset; (4) zero each gripper's integrated action."""
    e, (pos, quat, per_load) = env.env, pristine(env)
    e.hard_reset, ok = False, False
    while not ok:
        e.object_property_initializers.extend(per_load)
        e.sim.model.body_pos[:], e.sim.model.body_quat[:] = pos, quat
        try:
            e.reset(); ok = True  # noqa: E702
        except RandomizationError:
            pass
    for robot in e.robots:  # robosuite 1.4: robot.gripper is the GripperModel
        robot.gripper.current_action = np.zeros(robot.gripper.dof)


def fresh(env: OffScreenRenderEnv) -> None:
    """seed(7) + rewind the sampler list to construction time: replay a freshly built env."""
    env.seed(7); env.env.object_property_initializers[:] = pristine(env)[2]  # noqa: E702


def hard_reset(env: OffScreenRenderEnv) -> None:
    env.env.hard_reset = True; env.reset()  # noqa: E702


def snap(env: OffScreenRenderEnv, obs: dict[str, Any], done: bool, t: int, rec: Record) -> None:
    vals = {"sim_state": env.get_sim_state(), "ctrl": env.sim.data.ctrl, "done": [bool(done)]}
    for key, v in {**vals, **{k: obs[k] for k in EEF}}.items():
        rec[key].append(np.array(v, copy=True))
    for key in CAMS if t in IMG_STEPS else ():
        rec[f"{key}_sha1@{t}"].append(hashlib.sha1(np.ascontiguousarray(obs[key]).tobytes()).hexdigest())


def set_cams(env: OffScreenRenderEnv, on: bool) -> None:
    """Rendering (llvmpipe) is ~95% of step time and never touches physics: render only
    at IMG_STEPS, forced after the step (= always-on bytes, checked; enabling before it isn't)."""
    for key in CAMS:
        env.env.modify_observable(key, "enabled", on)


def episode(env: OffScreenRenderEnv, init: np.ndarray, acts: np.ndarray) -> Record:
    rec: Record = {k: [] for k in ("sim_state", "ctrl", "done", *EEF, *(f"{c}_sha1@{t}" for t in IMG_STEPS for c in CAMS))}
    set_cams(env, False)
    obs = env.set_init_state(init)
    rec.update({k: [np.array(getattr(env.sim.model, k), copy=True)] for k in ("body_pos", "body_quat")})
    snap(env, obs, False, 0, rec)
    for t, a in enumerate([WAIT] * 10 + acts.tolist(), start=1):
        obs, _, done, _ = env.step(a)
        if t in IMG_STEPS:
            set_cams(env, True)
            obs = {**obs, **{k: v for k, v in env.env._get_observations(force_update=True).items() if k in CAMS}}
            set_cams(env, False)
        snap(env, obs, done, t, rec)
    return rec


def compare(ref: Record, other: Record) -> dict[str, Any] | None:
    """None if byte-identical, else earliest differing step (0 = set_init_state), quantity, max|diff|."""
    hits = []
    for key, rows in ref.items():
        pairs = list(zip(rows, other[key]))
        bad = [i for i, (x, y) in enumerate(pairs)
               if (x != y if isinstance(x, str) else x.shape != y.shape or x.tobytes() != y.tobytes())]
        if bad:
            d = {"step": int(key.split("@")[1]) if "@" in key else bad[0], "quantity": key}
            if not isinstance(rows[0], str):
                d["max_abs_diff"] = max((float(np.max(np.abs(np.asarray(x, float) - y)))
                                         for x, y in pairs if x.shape == y.shape), default=None)
            hits.append(d)
    return min(hits, key=lambda d: d["step"]) if hits else None


def run_task(suite: str, ti: int, episodes: int, steps: int, k_dep: int = 2) -> dict[str, Any]:
    bench = benchmark.get_benchmark_dict()[suite]()
    task, inits = bench.get_task(ti), bench.get_task_init_states(ti)
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    t0, env = time.perf_counter(), OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=256, camera_widths=256)
    build_s, acts, _ = time.perf_counter() - t0, actions(steps), pristine(env)  # pristine: right after build
    runs, times = {}, {"hard": [], "cheap": []}  # type: dict[str, list[Record]], dict[str, list[float]]
    for name, reset in (("hard", hard_reset), ("cheap", cheap_reset)):
        fresh(env); runs[name] = []  # noqa: E702
        for k in range(episodes):
            t0 = time.perf_counter()
            reset(env)
            times[name].append(time.perf_counter() - t0)
            runs[name].append(episode(env, inits[k], acts))
    diffs = [(k, compare(runs["hard"][k], runs["cheap"][k])) for k in range(episodes)]
    first = next(({"episode": k, **d} for k, d in diffs if d is not None), None)
    row: dict[str, Any] = {"suite": suite, "task_index": ti, "task": task.name, "identical": first is None,
                           "first_diff": first, "n_property_samplers": len(pristine(env)[2]), "build_s": build_s,
                           "hard_reset_s": statistics.mean(times["hard"]), "cheap_reset_s": statistics.mean(times["cheap"])}
    row["body_pos_varies_across_episodes"] = any(not np.array_equal(runs["hard"][0]["body_pos"][0],
                                                     runs["hard"][k]["body_pos"][0]) for k in range(1, episodes))
    k_dep = min(k_dep, episodes - 1)
    if k_dep > 0:
        fresh(env)
        for _ in range(k_dep + 1):  # only the last reset gets set_init_state + steps
            cheap_reset(env)
        d = compare(runs["hard"][k_dep], episode(env, inits[k_dep], acts))
        row["rng_position_only"] = {"episode": k_dep, "identical": d is None, "first_diff": d}
    env.close()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suites", default="libero_spatial,libero_object,libero_goal,libero_10")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--out", default="results/libero_reset_check.json")
    p.add_argument("--key", default=None, help="key in the JSON (default: from the args)")
    p.add_argument("--tasks", default=None, help="comma list of task indices (default: all)")
    args = p.parse_args()
    key = args.key or f"{args.suites.replace(',', '+')}_e{args.episodes}_s{args.steps}"
    data: dict[str, Any] = json.load(open(args.out)) if os.path.exists(args.out) else {}
    rows: list[dict[str, Any]] = []
    t_start, bd = time.perf_counter(), benchmark.get_benchmark_dict()
    for suite in args.suites.split(","):
        for ti in [int(i) for i in args.tasks.split(",")] if args.tasks else range(bd[suite]().get_num_tasks()):
            try:
                row = run_task(suite, ti, args.episodes, args.steps)
            except Exception as e:  # record and continue
                row = {"suite": suite, "task_index": ti, "identical": None, "error": repr(e)}
            rows.append(row)
            print(json.dumps({k: row.get(k) for k in ("suite", "task_index", "identical",
                  "first_diff", "hard_reset_s", "cheap_reset_s", "rng_position_only")}), flush=True)
            ok = [r for r in rows if "error" not in r]
            summary = {"tasks_checked": len(ok), "tasks_errored": len(rows) - len(ok),
                       "tasks_identical": sum(bool(r["identical"]) for r in ok),
                       "tasks_rng_position_only": sum(bool(r.get("rng_position_only", {}).get("identical")) for r in ok),
                       **{f"median_{k}": statistics.median(r[k] for r in ok) if ok else None
                          for k in ("hard_reset_s", "cheap_reset_s")}, "cheap_recipe": RECIPE}
            data[key] = {"args": vars(args), "wall_s": round(time.perf_counter() - t_start, 1),
                         "summary": summary, "tasks": rows}
            with open(args.out, "w") as f:
                json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
