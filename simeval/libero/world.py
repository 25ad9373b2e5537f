"""A pool worker's LIBERO worlds: its side process, spoken to with the pool's own commands.

An env worker (a local worker process or a Ray actor) runs in simeval's interpreter, where LIBERO
cannot be imported. On its first LIBERO episode it starts one side process, LIBERO's side
environment's interpreter running ``envs/libero/worker.py``, and from then on hands it each
``Reset`` and ``Chunk`` of its LIBERO slots as one plain message (``envs.libero.wire``) and turns the
answer into the pool's :class:`~simeval.pools.commands.Reply` and images. A whole chunk is one
message each way, so the hop costs once per policy decision, not once per step. Everything above
the worker (the runner, records, resume, faults, Ray) sees a LIBERO slot like any other.

LIBERO-Plus's variants (world ``libero_plus``) run in a second side process of the same side
environment, ``worker.py FD plus``, which imports ``liberoplus`` instead of ``libero`` (the two
register robosuite classes under the same names); its reset replies carry the variant's instruction
(a language variant's is rewritten), which is what the policy is sent.

If the side process dies, the worker dies with it (:class:`WorldLost`): the pool replaces the
worker and the runner re-runs its episodes, as for any worker death.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from envs.libero import wire
from envs.robots.base import R_DOWN
from simeval.libero import catalog, plus

WORKER = Path(__file__).resolve().parents[2] / "envs" / "libero" / "worker.py"
COMMAND_TIMEOUT_S = 600.0  # one reset or chunk takes seconds; a side process silent this long is hung
NOMINAL = {"variant": "nominal", "seed": None, "params": {}}  # LIBERO's own scenes: no perturbation
FINGER_OPEN_M = 0.04  # each Panda finger's joint position when open


class WorldLost(RuntimeError):
    """The side process is gone: the worker cannot go on (the pool replaces it)."""


def simeval_state(native: dict[str, np.ndarray]) -> np.ndarray:
    """simeval's 8-D state from LIBERO's proprioception: tcp position, orientation as a quaternion
    (w, x, y, z) relative to gripper-down with w >= 0, gripper opening in [0, 1]."""
    rotation = Rotation.from_matrix(R_DOWN).inv() * Rotation.from_quat(native["robot0_eef_quat"])  # xyzw
    x, y, z, w = rotation.as_quat()
    quat = np.array([w, x, y, z]) * (1.0 if w >= 0 else -1.0)
    fingers = native["robot0_gripper_qpos"]
    opening = np.clip((fingers[0] - fingers[1]) / (2 * FINGER_OPEN_M), 0.0, 1.0)
    return np.concatenate([native["robot0_eef_pos"], quat, [opening]]).astype(np.float32)


class LiberoWorlds:
    """One worker's side process and the messages for its LIBERO slots."""

    def __init__(self, image_size: int, cameras: tuple[str, ...], per_step: bool, render_threads: int = 1,
                 privileged: bool = False) -> None:
        self.image_size, self.cameras, self.per_step = image_size, cameras, per_step
        self.privileged = privileged  # every reply carries LIBERO's simulator truth (envs/libero/privileged.py)
        self.render_threads = render_threads  # Mesa llvmpipe's threads (frames are the same for any number)
        self._procs: dict[str, tuple[subprocess.Popen, socket.socket]] = {}  # flavour -> its side process
        self._flavour: dict[int, str] = {}  # slot -> the flavour of its episode
        self._instruction: dict[int, str] = {}  # slot -> its task's instruction, as openpi's client sends it
        self._perturbation: dict[int, dict] = {}  # slot -> its episode's perturbation, as the records hold it
        self.last_built: bool | None = None

    def _start(self, flavour: str) -> None:
        from simeval.libero.sideenv import ensure_side_env

        side = ensure_side_env(progress=False)
        ours, theirs = socket.socketpair()
        # LIBERO prints to stdout at import; simeval's own output must not carry it
        environ = {**side.environ(plus=flavour == "plus"), "LP_NUM_THREADS": str(self.render_threads)}
        proc = subprocess.Popen([str(side.python), str(WORKER), str(theirs.fileno()), flavour], env=environ,
                                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        theirs.close()
        ours.settimeout(COMMAND_TIMEOUT_S)
        self._procs[flavour] = (proc, ours)
        self._exchange(flavour, None)  # its ready message

    def _exchange(self, flavour: str, message: dict | None) -> dict:
        proc, sock = self._procs[flavour]
        try:
            if message is not None:
                wire.send(sock, message)
            return wire.recv(sock)
        except TimeoutError:
            proc.kill()
            raise WorldLost(f"LIBERO's side process did not answer in {COMMAND_TIMEOUT_S:g} s (killed)") from None
        except (wire.WireClosed, OSError) as err:
            code = proc.poll()
            raise WorldLost(f"LIBERO's side process ended ({'exit code ' + str(code) if code is not None else err})") \
                from None

    def run(self, slot: int, command) -> tuple[Any, dict[str, np.ndarray]]:
        """The reply to a ``Reset`` or ``Chunk`` of a LIBERO slot, and the images it rendered."""
        from simeval.pools.commands import Reset

        if isinstance(command, Reset):
            spec = command.spec
            if spec.world == plus.WORLD:
                variant = plus.get_variant(spec.task)
                flavour, benchmark, wired, language = "plus", variant.benchmark, variant.wire(), None
                # what the variant's name says it is (view, start pose, noise kind and severity ...): the record's params
                self._perturbation[slot] = {"variant": spec.variant, "seed": None, "params": dict(variant.params)}
            else:
                task = catalog.get_task(spec.world, spec.task)
                flavour, benchmark, wired, language = "libero", spec.world, task.wire(), task.language
                self._perturbation[slot] = {**NOMINAL, "params": {}}
            message = {"op": "reset", "slot": slot, "benchmark": benchmark, "task": wired, "init": spec.index,
                       "seed": spec.seed, "max_steps": spec.max_steps, "wait_steps": catalog.wait_steps(),
                       "image_size": self.image_size, "cameras": list(self.cameras), "frames": command.frames,
                       "per_step": self.per_step, "privileged": self.privileged}
            self._flavour[slot], self._instruction[slot] = flavour, language
        else:
            message = {"op": "chunk", "slot": slot, "actions": np.asarray(command.actions, np.float64)}
        flavour = self._flavour[slot]
        if flavour not in self._procs:
            self._start(flavour)
        answer = self._exchange(flavour, message)
        if isinstance(command, Reset):  # LIBERO-Plus: whether that reset built its env (False: shared)
            self.last_built = answer.get("built")
        if isinstance(command, Reset) and answer.get("instruction"):  # LIBERO-Plus: the variant's own
            self._instruction[slot] = answer["instruction"]
        return self._reply(slot, answer, isinstance(command, Reset))

    def _reply(self, slot: int, answer: dict, reset: bool):
        from simeval.pools.commands import Reply

        if answer.get("error"):
            return Reply(slot, error=answer["error"]), {}
        native = answer["native"]
        info = None
        if reset:
            info = {"perturbation": self._perturbation[slot], "layout": {}}
        reply = Reply(slot, simeval_state(native), self._instruction[slot], steps=answer["steps"],
                      success=answer["success"], truncated=answer["truncated"], info=info, native=native,
                      frames=answer["frames"], privileged=answer.get("privileged"))
        return reply, answer["images"]

    def close(self) -> None:
        for proc, sock in self._procs.values():
            try:
                wire.send(sock, {"op": "close"})
            except OSError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            sock.close()
        self._procs.clear()


def lost(err: WorldLost) -> None:
    """The worker's end when its side process died: one line, and out (the pool replaces it)."""
    sys.stderr.write(f"simeval: env worker {os.getpid()}: {err}\n")
    sys.stderr.flush()
    os._exit(70)
