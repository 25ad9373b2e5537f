"""LIBERO's worlds, served to one simeval env worker: runs in LIBERO's side environment only.

simeval's pool worker (``simeval.libero.world``) starts this script with the side environment's
interpreter and a socket, then sends it its slots' commands as plain messages (``wire``): ``reset``
a slot onto one LIBERO task and init state, run a ``chunk`` of actions, ``close``. Every reply
carries the slot's step count and flags, LIBERO's own proprioception (``robot0_eef_pos``,
``robot0_eef_quat``, ``robot0_gripper_qpos``) and, when the policy reads them, the camera images; when the policy reads
simulator truth (a privileged expert), the scene's objects, regions, joints and goal (``privileged``).

An episode runs exactly as openpi's LIBERO example runs it: one ``OffScreenRenderEnv`` per task,
``env.seed(seed)``, then per episode ``reset``, ``set_init_state``, ``wait_steps`` steps of
``[0]*6 + [-1]`` (their successes ignored), then the policy's steps until ``done`` or
``max_steps``. Two things make it cheaper without changing a bit of it:

- **Rendering on demand.** robosuite renders every camera inside every step (its camera
  observables sample once per control step). Each camera's sensor is wrapped in a gate: it renders
  with LIBERO's own sensor on the steps whose observation someone reads (the step before a policy
  decision, every step of a video's agentview) and returns a placeholder otherwise. The physics and
  the frames read are untouched.
- **A cheap reset.** LIBERO's reset rebuilds the MuJoCo model from XML (seconds). A soft reset
  (``hard_reset = False``: ``mj_resetData`` and LIBERO's own ``_reset_internal``, which draws the
  placements from ``np.random``) gives bit-identical episodes (``scripts/libero_reset_check.py``:
  40 of 40 tasks) once it also renews what a rebuild renews: the gripper's integrated
  ``current_action``, the compiled body poses, and one more copy of the open/close and on/off
  samplers (each of LIBERO's model loads appends them to a list it never clears, so every reset
  draws once more per such predicate than the one before). The draws come from the global
  ``np.random`` seeded once per task, so episode k of a task is the (k+1)-th reset after the seed:
  this worker replays the resets of the episodes it skipped (no steps), so every episode is the
  same whichever worker runs it and in which order.

**LIBERO-Plus** (``worker.py FD plus``): the same loop with ``liberoplus`` imported instead of
``libero`` (both register robosuite classes under the same names: one package per process). A
variant's env is LIBERO-Plus's ``OffScreenRenderEnv`` on the variant's BDDL path, whose name its
``ControlEnv`` parses (camera, robot class, image noise). Its wrapper degrades agentview in every
step and reset, drawing from the global ``np.random``; where agentview is not read the worker makes
the same draws without the image work (``plus_side.draw_plan``: recorded off the wrapper's own step,
self-checked, else the wrapper runs on the placeholder), so the frames read are LIBERO-Plus's.
Variants that share a model (``plus_side``: noise and language variants of one task) share one env;
the reply's ``instruction`` is the variant's.

Imports: the standard library, numpy and LIBERO (or LIBERO-Plus) only (never simeval), as the side
environment has nothing else that simeval uses.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import traceback
import warnings
from collections import OrderedDict
from typing import Any

import numpy as np

import plus_side  # the sibling modules: this script's directory is sys.path[0]
import privileged
import wire

CAMERA_NAMES = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}  # simeval's name -> LIBERO's
WAIT_ACTION = [0.0] * 6 + [-1.0]
ENVS_PER_SLOT = 1  # a LIBERO env holds its meshes and a GL context: one per slot
MAX_PLACEMENT_TRIES = 1000  # LIBERO retries a failed random placement without end
TRACE = "SIMEVAL_LIBERO_TRACE"  # a directory: every episode's per-step simulator states go there (fidelity tests)
NATIVE = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
PACKAGES = {"libero": "libero.libero", "plus": "liberoplus.liberoplus"}  # flavour -> the package it imports
FLAVOUR = "libero"  # main() sets it from argv[2]


class Gate:
    """A camera sensor that renders only while ``on``; a placeholder image otherwise."""

    def __init__(self, sensor, shape: tuple[int, int, int]) -> None:
        self.sensor, self.on = sensor, False
        self.blank = np.zeros(shape, np.uint8)
        self.__modality__ = sensor.__modality__  # robosuite's observables read it off their sensor

    def __call__(self, obs_cache: dict) -> np.ndarray:
        return self.sensor(obs_cache) if self.on else self.blank


class World:
    """One LIBERO task's env, its camera gates and its place in the placement draws."""

    def __init__(self, bddl: str, size: int) -> None:
        import importlib

        import mujoco

        envs = importlib.import_module(PACKAGES[FLAVOUR] + ".envs")
        self.env = envs.OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=size, camera_widths=size)
        self.bddl = bddl  # the variant it is set up for now (LIBERO-Plus envs are shared: plus_side.switch)
        inner = self.env.env
        inner.hard_reset = False  # the cheap reset (see the module docstring)
        # what every hard reset starts from: the compiled XML's body poses, and the property samplers
        # (open/close, on/off) that each of LIBERO's model loads appends to its list
        xml = (inner._xml_processor or (lambda x: x))(inner.model.get_xml())
        compiled = mujoco.MjModel.from_xml_string(xml)
        self.body_pos, self.body_quat = compiled.body_pos.copy(), compiled.body_quat.copy()
        self.samplers_per_load = list(inner.object_property_initializers)
        self.gates: dict[str, Gate] = {}
        for cam, name in CAMERA_NAMES.items():
            observable = self.env.env._observables[f"{name}_image"]
            self.gates[cam] = Gate(observable._sensor, (size, size, 3))
            observable._sensor = self.gates[cam]
        self.seed: int | None = None
        self.scene: privileged.SceneIndex | None = None  # names as ids, for privileged replies (on first use)
        self.draws = 0  # resets since the env was seeded
        self.rng: tuple | None = None  # this env's np.random state (the worker's other slots draw too)
        self.plan: list | None = None  # the noise's draws per unread image, for self.plan_for's variant
        self.plan_for: str | None = None

    def _reset(self) -> None:
        """LIBERO's ``ControlEnv.reset``, whose retry loop also swallows every other exception (its
        ``finally: continue``) and would spin forever on one: here only a failed placement retries."""
        from robosuite.utils.errors import RandomizationError

        inner = self.env.env
        for _ in range(MAX_PLACEMENT_TRIES):
            inner.object_property_initializers.extend(self.samplers_per_load)  # as a model load does
            inner.sim.model.body_pos[:], inner.sim.model.body_quat[:] = self.body_pos, self.body_quat
            try:
                obs = inner.reset()
                break
            except RandomizationError:
                continue
        else:
            raise RuntimeError(f"no valid placement in {MAX_PLACEMENT_TRIES} tries")
        # the wrapper's own reset on that (unread) observation: LIBERO-Plus's noise draws here, the same as in
        # its step (only the draws where they can be had without the image work); LIBERO's does nothing
        if getattr(self.env, "noise", 0) and self._plan() is not None:
            plus_side.replay(self.plan)
        else:
            inner.reset = lambda: obs
            try:
                self.env.reset()
            finally:
                del inner.reset
        for robot in self.env.env.robots:  # what a rebuilt gripper model starts with
            robot.gripper.current_action = np.zeros(robot.gripper.dof)
        self.draws += 1

    @contextlib.contextmanager
    def _own_rng(self):
        """LIBERO draws from the global ``np.random``, which every env of this process shares: each
        World keeps its own state of it, as if it were alone (as in LIBERO's loop)."""
        if self.rng is not None:
            np.random.set_state(self.rng)
        try:
            yield
        finally:
            self.rng = np.random.get_state()

    def start(self, seed: int, init: np.ndarray, draw: int, bddl: str) -> dict:
        """Reset onto ``init`` as the ``draw``-th episode after ``seed`` (0 = the first) of ``bddl``'s variant."""
        with self._own_rng():
            if bddl != self.bddl:  # another variant of the same model: as freshly built for it
                plus_side.switch(self.env, bddl)
                self.bddl, self.seed = bddl, None
            if self.seed != seed or self.draws > draw:  # start over as a freshly built env
                self.env.seed(seed)
                self.env.env.object_property_initializers[:] = self.samplers_per_load
                self.seed, self.draws = seed, 0
            self._open()
            while self.draws < draw:  # the placements of the episodes before it, drawn and dropped
                self._reset()
            self._reset()
            return self.env.set_init_state(init)

    def _open(self, *cams: str) -> None:
        for cam, gate in self.gates.items():
            gate.on = cam in cams

    def step(self, action, render: tuple[str, ...]) -> tuple[dict, bool]:
        self._open(*render)
        with self._own_rng():
            if "agentview" in render or not getattr(self.env, "noise", 0) or self._plan() is None:
                obs, _, done, _ = self.env.step(list(map(float, action)))
            else:  # LIBERO-Plus's noise on an image nobody reads: only its draws (plus_side.draw_plan)
                obs, _, done, _ = self.env.env.step(list(map(float, action)))
                plus_side.replay(self.plan)
        return obs, bool(done)

    def _plan(self) -> list | None:
        if self.plan_for != self.bddl:
            self.plan, self.plan_for = plus_side.draw_plan(self.env, self.gates["agentview"].blank), self.bddl
        return self.plan

    def privileged(self) -> dict:
        if self.scene is None:
            self.scene = privileged.SceneIndex(self.env.env)
        return privileged.privileged_state(self.scene)

    def close(self) -> None:
        self.env.close()


class Server:
    """The slots of one simeval worker: a World per slot (per task), and each slot's episode."""

    def __init__(self) -> None:
        self.worlds: dict[int, OrderedDict[tuple, World]] = {}
        self.running: dict[int, dict[str, Any]] = {}
        self._inits: dict[tuple[str, str], np.ndarray] = {}

    def _paths(self, benchmark: str, task: dict) -> tuple[str, np.ndarray]:
        if FLAVOUR == "plus":
            key = (benchmark, task["name"])
            if key not in self._inits:
                self._inits[key] = plus_side.paths(benchmark, task)
            return self._inits[key]
        from libero.libero import get_libero_path

        bddl = os.path.join(get_libero_path("bddl_files"), task["problem_folder"], task["bddl_file"])
        key = (benchmark, task["name"])
        if key not in self._inits:
            import torch  # LIBERO stores init states as torch pickles

            path = os.path.join(get_libero_path("init_states"), task["problem_folder"], task["init_states_file"])
            self._inits[key] = np.asarray(torch.load(path, weights_only=False))
        return bddl, self._inits[key]

    def _world(self, slot: int, message: dict) -> tuple[World, np.ndarray, str, bool]:
        """The slot's env for the message's variant (built, or a cached one it shares), its init states, the
        variant's BDDL path and whether the env was built now."""
        bddl, inits = self._paths(message["benchmark"], message["task"])
        key = (plus_side.model_key(bddl) if FLAVOUR == "plus" else bddl, message["image_size"])
        cache = self.worlds.setdefault(slot, OrderedDict())
        if key in cache and cache[key].bddl != bddl and not plus_side.shares_model(cache[key].bddl, bddl):
            key = (bddl, message["image_size"])  # a language rewrite whose BDDL differs in more than its words
        built = key not in cache
        if built:
            while len(cache) >= ENVS_PER_SLOT:
                cache.popitem(last=False)[1].close()
            cache[key] = World(bddl, message["image_size"])
        cache.move_to_end(key)
        return cache[key], inits, bddl, built

    def reset(self, message: dict) -> dict:
        slot = message["slot"]
        world, inits, bddl, built = self._world(slot, message)
        index = message["init"]
        if not 0 <= index < len(inits):
            raise ValueError(f"init state {index} of task {message['task']['name']}: it has {len(inits)}")
        world.start(message["seed"], inits[index], index, bddl)
        wait, cams = message["wait_steps"], tuple(message["cameras"])
        video = ("agentview",) if message["frames"] else ()
        trace = [world.env.get_sim_state().copy()] if os.environ.get(TRACE) else None
        obs, frames = None, []
        for t in range(wait):  # openpi's wait steps: the objects settle, the gripper opens
            obs, _ = world.step(WAIT_ACTION, cams + video if t == wait - 1 else video)
            if video:
                frames.append(_upright(obs["agentview_image"]))
            if trace is not None:
                trace.append(world.env.get_sim_state().copy())
        if obs is None:  # no wait steps: the observation set_init_state makes, rendered
            world._open(*cams)
            obs = world.env.env._get_observations(force_update=True)
        self.running[slot] = {"world": world, "steps": 0, "max_steps": message["max_steps"], "cams": cams,
                              "video": video, "per_step": message["per_step"], "trace": trace,
                              "privileged": bool(message.get("privileged")),
                              "name": f"{message['benchmark']}__{message['task']['name']}__{index:02d}"}
        reply = self._reply(slot, obs, cams, frames, steps=0, success=False, truncated=False)
        if FLAVOUR == "plus":
            reply["instruction"] = plus_side.instruction(message["benchmark"], bddl)
            reply["built"] = built  # a new env (False: a shared one switched to this variant)
        return reply

    def chunk(self, message: dict) -> dict:
        slot = message["slot"]
        run = self.running[slot]
        world, actions = run["world"], message["actions"]
        frames, steps, success, obs = [], 0, False, None
        for i, action in enumerate(actions):
            last = i == len(actions) - 1 or run["steps"] + 1 >= run["max_steps"]
            render = run["cams"] if (last or run["per_step"]) else ()
            obs, success = world.step(action, render + run["video"])
            steps, run["steps"] = steps + 1, run["steps"] + 1
            if run["video"]:
                frames.append(_upright(obs["agentview_image"]))
            if run["trace"] is not None:
                run["trace"].append(world.env.get_sim_state().copy())
            if success or run["steps"] >= run["max_steps"]:
                break
        truncated = not success and run["steps"] >= run["max_steps"]
        ended = success or truncated
        if ended and run["trace"] is not None:
            np.save(os.path.join(os.environ[TRACE], run["name"] + ".npy"), np.array(run["trace"]))
        cams = run["cams"] if (run["per_step"] or not ended) else ()
        return self._reply(slot, obs, cams, frames, steps=steps, success=success, truncated=truncated)

    def _reply(self, slot: int, obs: dict, cams: tuple[str, ...], frames: list, **flags) -> dict:
        images = {cam: _upright(obs[f"{CAMERA_NAMES[cam]}_image"]) for cam in cams}
        native = {key: np.asarray(obs[key], np.float64) for key in NATIVE}
        run = self.running[slot]
        truth = run["world"].privileged() if run["privileged"] else None
        return {"slot": slot, "native": native, "images": images, "frames": frames, "privileged": truth, **flags}

    def close(self) -> None:
        for cache in self.worlds.values():
            for world in cache.values():
                world.close()
        self.worlds.clear()


def _upright(image: np.ndarray) -> np.ndarray:
    """robosuite's OpenGL-order image (bottom row first) the right way up, as simeval's images are."""
    return np.ascontiguousarray(image[::-1])


def serve(sock: socket.socket) -> None:
    server = Server()
    try:
        while True:
            try:
                message = wire.recv(sock)
            except wire.WireClosed:
                break
            op = message.get("op")
            if op == "close":
                break
            try:
                reply = server.reset(message) if op == "reset" else server.chunk(message)
            except Exception as err:  # one episode's failure: the slot replies an error
                traceback.print_exc(file=sys.stderr)
                reply = {"slot": message.get("slot"), "error": f"{type(err).__name__}: {err}".splitlines()[0]}
            wire.send(sock, reply)
    finally:
        server.close()


def _import_libero() -> None:
    """Import LIBERO or LIBERO-Plus (seconds, once) with stderr held back: robosuite warns there at every
    import about a private macro file it does not need (and gym that it is old). The warnings are shown
    only if the import fails."""
    import importlib
    import tempfile

    saved, held = os.dup(2), tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    try:
        importlib.import_module(PACKAGES[FLAVOUR] + ".envs")
        if FLAVOUR == "plus":
            importlib.import_module(PACKAGES[FLAVOUR] + ".benchmark")
        import torch  # noqa: F401  (the init states are torch pickles)
    except BaseException:
        os.dup2(saved, 2)
        held.seek(0)
        sys.stderr.buffer.write(held.read())
        raise
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main() -> None:
    global FLAVOUR
    sock = socket.socket(fileno=int(sys.argv[1]))
    FLAVOUR = sys.argv[2] if len(sys.argv) > 2 else "libero"
    if FLAVOUR not in PACKAGES:
        raise SystemExit(f"worker.py: flavour {FLAVOUR!r}; valid: {', '.join(PACKAGES)}")
    _import_libero()
    # LIBERO-Plus's noise calls numpy's deprecated binary fromstring on every motion-blurred frame: numpy
    # warns once per process on the user's terminal about code neither the user nor simeval can change
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"liberoplus\.")
    wire.send(sock, {"ready": True, "pid": os.getpid()})
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # simeval's worker went away: nothing to answer
    finally:
        sock.close()
    sys.stderr.flush()
    os._exit(0)  # the envs are closed; EGL's destructors at interpreter exit only print errors


if __name__ == "__main__":
    main()
