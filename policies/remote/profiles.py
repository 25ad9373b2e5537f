"""I/O profiles: how one slot's observation and a policy's action chunk look on the wire.

A profile is a small frozen dataclass with four conversions, used by both directions: the client
(:mod:`policies.remote.client`) encodes simeval observations and decodes the server's actions, the
server (:mod:`simeval.serve`) decodes requests into simeval observations and encodes its policy's
actions. Add a profile by writing one more dataclass here and an entry in :data:`PROFILES`.

- ``simeval``: native keys and arrays, nothing converted, so a simeval policy served and evaluated
  remotely gives exactly its local actions; the images at the size the server's metadata asks for.
- ``libero``: what openpi's LIBERO example client sends and what LIBERO-trained policies answer
  (see :class:`LiberoProfile`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from policies.base import CAMERAS, EpisodeStart, ObservationSpec

ACTION_DIM = 7
STATE_DIM = 8
# simeval's action space (envs/controller.py, ControllerConfig) and its gripper-down orientation
# (envs/robots/base.py, R_DOWN: a half turn about x), restated so that policies do not import the
# worlds; tests/test_remote_profiles.py checks that they agree.
SIM_POS_M, SIM_ROT_RAD = 0.02, 0.15
R_DOWN = np.diag([1.0, -1.0, -1.0])
MAX_SUITE_IMAGE = 1024  # the largest image_size a suite may ask for (simeval/suites.py), restated likewise
REQUEST_SLACK = 1 << 20  # bytes beyond the images: state, instruction, privileged state, msgpack framing


@dataclass
class SlotObservation:
    """One slot's observation in simeval's own terms (what a :class:`policies.base.Batch` row holds).

    ``start`` is set on the first observation of an episode, so a server can reset the slot."""

    state: np.ndarray  # (8,) float32: tcp position, quaternion relative to gripper-down (w >= 0), opening
    instruction: str
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (H, W, 3) uint8
    privileged: dict[str, Any] | None = None
    start: EpisodeStart | None = None
    native: dict[str, Any] | None = None  # a LIBERO world's own proprioception (robot0_eef_pos, ...)


class ProfileError(ValueError):
    """A request or reply that does not fit the profile: the message names the field."""


def _field(message: Mapping, key: str) -> Any:
    if key not in message:
        raise ProfileError(f"field {key!r} missing (the request has {', '.join(map(str, message)) or 'no fields'})")
    return message[key]


def _array(message: Mapping, key: str, dtype: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """``message[key]`` as an array of ``dtype``'s kind with ``shape`` (None: any length)."""
    value = _as_array(_field(message, key), f"field {key!r}")
    kind_ok = value.dtype == np.uint8 if dtype == "uint8" else value.dtype.kind in "fiu"
    if not kind_ok or value.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, value.shape)):
        wanted = "x".join("N" if n is None else str(n) for n in shape)
        raise ProfileError(f"field {key!r}: expected {dtype} of shape {wanted}, got {value.dtype} {value.shape}")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ProfileError(f"field {key!r} contains NaN or inf")
    return value


def _as_array(raw: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(raw)
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
        raise ProfileError(f"{what}: not an array ({type(raw).__name__} of mixed items)") from None


def _square(image: np.ndarray, key: str) -> np.ndarray:
    if image.shape[0] != image.shape[1]:
        raise ProfileError(f"field {key!r}: expected a square image, got {image.shape[0]}x{image.shape[1]}")
    return image


def _text(message: Mapping, key: str) -> str:
    value = _field(message, key)
    if not isinstance(value, str):
        raise ProfileError(f"field {key!r}: expected a string, got {type(value).__name__}")
    return value


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """A square uint8 image resized to ``size`` (PIL bilinear, as openpi's image tools)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR))


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """openpi's ``resize_with_pad``: keep the aspect ratio, bilinear, pad with black to size x size."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    ratio = max(width / size, height / size)
    new_w, new_h = int(width / ratio), int(height / ratio)
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), Image.BILINEAR))
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


@dataclass(frozen=True)
class IOProfile(ABC):
    """The conversions one wire format needs; a profile implements all of them."""

    name: str = "base"
    carries_privileged: bool = False  # whether simulator state (the scripted experts' input) goes across

    def max_request_bytes(self, spec: ObservationSpec) -> int:
        """The largest request a legitimate client sends to a server of ``spec``: its images at the
        largest size it may send, plus :data:`REQUEST_SLACK`; the server refuses larger frames."""
        images, side = self.request_images(spec)
        return images * side * side * 3 + REQUEST_SLACK

    @abstractmethod
    def request_images(self, spec: ObservationSpec) -> tuple[int, int]:
        """How many RGB images a request carries for a server of ``spec``, and the largest side of one."""

    @abstractmethod
    def observation_spec(self, metadata: Mapping) -> ObservationSpec:
        """What the client renders for a server with ``metadata``."""

    @abstractmethod
    def encode(self, obs: SlotObservation) -> dict:
        """Client: the request for one slot."""

    @abstractmethod
    def decode(self, request: Mapping, spec: ObservationSpec) -> SlotObservation:
        """Server: a request as simeval's observation, images at ``spec``'s size."""

    @abstractmethod
    def actions_to_wire(self, chunk: np.ndarray) -> np.ndarray:
        """Server: a (H, 7) simeval chunk as the reply's ``actions``."""

    @abstractmethod
    def actions_from_wire(self, actions: np.ndarray, native: bool = False) -> np.ndarray:
        """Client: the reply's ``actions`` as a (H, 7) chunk in the world's units; ``ProfileError``
        naming a bad shape. ``native``: the observation came from a LIBERO world, whose actions are
        LIBERO's own units."""


@dataclass(frozen=True)
class SimevalProfile(IOProfile):
    """simeval's own observation keys, unconverted: ``state`` (8 float32), ``instruction``, one
    (H, W, 3) uint8 image per camera the server's policy reads (named in its metadata), ``privileged``
    for a policy that reads simulator truth, and ``episode`` (id, task, robot, seed) on an episode's
    first request. Actions are (H, 7) as the policy returned them."""

    name: str = "simeval"
    carries_privileged: bool = True

    def request_images(self, spec: ObservationSpec) -> tuple[int, int]:
        return len(spec.cameras), spec.image_size or MAX_SUITE_IMAGE  # None: the client's suite's size

    def observation_spec(self, metadata: Mapping) -> ObservationSpec:
        spec = metadata.get("observation_spec") if isinstance(metadata, Mapping) else None
        if not isinstance(spec, Mapping):
            raise ProfileError("the server's metadata has no simeval observation_spec, so it is not a simeval "
                               "server; pass --io libero (or another profile) for an openpi policy server")
        try:
            return ObservationSpec(cameras=tuple(spec.get("cameras", ())), image_size=spec.get("image_size"),
                                   privileged=bool(spec.get("privileged", False)))
        except (TypeError, ValueError) as err:
            raise ProfileError(f"the server's observation_spec is not valid: {err}") from None

    def encode(self, obs: SlotObservation) -> dict:
        request: dict[str, Any] = {"state": obs.state, "instruction": obs.instruction, **obs.images}
        if obs.privileged is not None:
            request["privileged"] = obs.privileged
        if obs.start is not None:
            s = obs.start
            request["episode"] = {"id": s.episode_id, "task": s.task, "robot": s.robot, "seed": int(s.seed)}
        return request

    def decode(self, request: Mapping, spec: ObservationSpec) -> SlotObservation:
        state = _array(request, "state", "float", (STATE_DIM,)).astype(np.float32)
        size = spec.image_size  # None: any square size (the suite's, in a local run)
        images = {cam: _square(_array(request, cam, "uint8", (size, size, 3)), cam) for cam in spec.cameras}
        start = None
        if "episode" in request:
            episode = request["episode"]
            try:
                start = EpisodeStart(str(episode["id"]), str(episode["task"]), str(episode["robot"]), int(episode["seed"]))
            except (KeyError, TypeError, ValueError):
                raise ProfileError("field 'episode': expected a map with id, task, robot and an integer seed") from None
        privileged = request.get("privileged")
        if spec.privileged and not isinstance(privileged, Mapping):
            raise ProfileError("field 'privileged' missing: the served policy reads simulator state")
        return SlotObservation(state, _text(request, "instruction"), images, privileged, start)

    def actions_to_wire(self, chunk: np.ndarray) -> np.ndarray:
        return chunk

    def actions_from_wire(self, actions: np.ndarray, native: bool = False) -> np.ndarray:
        actions = _as_array(actions, "reply 'actions'")
        if actions.dtype.kind not in "fiu" or actions.ndim != 2 or actions.shape[1] != ACTION_DIM or not len(actions):
            raise ProfileError(f"reply 'actions' has shape {actions.shape} ({actions.dtype}); expected (H, {ACTION_DIM})")
        return actions


@dataclass(frozen=True)
class LiberoProfile(IOProfile):
    """openpi's LIBERO example, both ways.

    - Images: ``observation/image`` (agentview) and ``observation/wrist_image``, 224 x 224 uint8.
      simeval renders 256 x 256, as LIBERO's cameras are set up; the rows are then put in LIBERO's
      raw order (robosuite's OpenGL convention: bottom row first, ``opengl_rows``), the client's
      180-degree rotation is applied (``rotate_180``), and the result is resized with padding. The
      two steps together mirror simeval's upright image left to right, which is what a
      LIBERO-trained model saw in training.
    - State: ``observation/state``, 8 floats: tcp position (m, world), tcp orientation as an
      axis-angle (robosuite's ``robot0_eef_quat`` convention: gripper-down is a half turn about x;
      the quaternion's sign is taken with x >= 0, continuous around gripper-down, and the angle is
      LIBERO's ``2 acos(w)``), and the two Panda finger positions (+q, -q; 0.04 m each when open,
      from simeval's opening in [0, 1] whatever the robot).
    - ``prompt``: the instruction.
    - In a LIBERO world (simeval.libero: the observation carries LIBERO's own proprioception) it is
      exactly openpi's client: the state is ``robot0_eef_pos``, ``_quat2axisangle(robot0_eef_quat)``
      and ``robot0_gripper_qpos`` as LIBERO reports them (float64), the images LIBERO's renders
      turned as above, and the actions go to LIBERO unconverted: they are its own units.
    - Actions: the first 7 of each row, LIBERO's normalised delta pose (robosuite OSC limits:
      ``libero_pos_m`` per unit of position, ``libero_rot_rad`` per unit of rotation, both in the
      world frame, as simeval's) rescaled to simeval's 0.02 m and 0.15 rad per unit (values beyond
      +-1 are clipped by the harness). The gripper keeps its sign: -1 opens and +1 closes in both.
    """

    name: str = "libero"
    image_key: str = "observation/image"
    wrist_key: str = "observation/wrist_image"
    state_key: str = "observation/state"
    prompt_key: str = "prompt"
    render_size: int = 256
    wire_size: int = 224
    opengl_rows: bool = True
    rotate_180: bool = True
    libero_pos_m: float = 0.05
    libero_rot_rad: float = 0.5
    finger_open_m: float = 0.04

    @property
    def _keys(self) -> dict[str, str]:
        return {"agentview": self.image_key, "wrist": self.wrist_key}

    def request_images(self, spec: ObservationSpec) -> tuple[int, int]:
        # openpi's client sends both images whatever the policy reads, at 224 (256 if it skips the pad)
        return len(self._keys), max(self.wire_size, self.render_size)

    def observation_spec(self, metadata: Mapping) -> ObservationSpec:
        return ObservationSpec(cameras=CAMERAS, image_size=self.render_size)

    def _to_wire_image(self, image: np.ndarray) -> np.ndarray:
        if self.opengl_rows:
            image = image[::-1]
        if self.rotate_180:
            image = image[::-1, ::-1]
        return resize_with_pad(np.ascontiguousarray(image), self.wire_size)

    def _from_wire_image(self, image: np.ndarray, size: int) -> np.ndarray:
        if self.rotate_180:
            image = image[::-1, ::-1]
        if self.opengl_rows:
            image = image[::-1]
        return resize(np.ascontiguousarray(image), size)

    def encode(self, obs: SlotObservation) -> dict:
        if obs.native is not None:  # a LIBERO world: what openpi's client builds from LIBERO's obs
            native = obs.native
            state = np.concatenate([native["robot0_eef_pos"], openpi_quat2axisangle(native["robot0_eef_quat"]),
                                    native["robot0_gripper_qpos"]])
        else:
            rel = obs.state[3:7].astype(np.float64)  # (w, x, y, z) relative to gripper-down
            absolute = Rotation.from_matrix(R_DOWN) * Rotation.from_quat([*rel[1:], rel[0]])
            state = np.concatenate([obs.state[:3], quat_to_libero_axis_angle(absolute.as_quat()),
                                    self.finger_open_m * float(obs.state[7]) * np.array([1.0, -1.0])]).astype(np.float32)
        request = {self.state_key: state, self.prompt_key: obs.instruction}
        for cam, key in self._keys.items():
            request[key] = self._to_wire_image(obs.images[cam])
        return request

    def decode(self, request: Mapping, spec: ObservationSpec) -> SlotObservation:
        wire = _array(request, self.state_key, "float", (STATE_DIM,)).astype(np.float64)
        relative = Rotation.from_matrix(R_DOWN).inv() * Rotation.from_rotvec(wire[3:6])
        x, y, z, w = relative.as_quat()
        quat = np.array([w, x, y, z]) * (1.0 if w >= 0 else -1.0)
        opening = (abs(wire[6]) + abs(wire[7])) / (2 * self.finger_open_m)
        state = np.concatenate([wire[:3], quat, [opening]]).astype(np.float32)
        size = spec.image_size or self.wire_size  # None: as sent
        images = {cam: self._from_wire_image(_array(request, key, "uint8", (None, None, 3)), size)
                  for cam, key in self._keys.items() if cam in spec.cameras}
        return SlotObservation(state, _text(request, self.prompt_key), images)

    @property
    def _scale(self) -> np.ndarray:
        """simeval units per LIBERO unit, for each of the 7 action dimensions."""
        pos, rot = self.libero_pos_m / SIM_POS_M, self.libero_rot_rad / SIM_ROT_RAD
        return np.array([pos, pos, pos, rot, rot, rot, 1.0])

    def actions_to_wire(self, chunk: np.ndarray) -> np.ndarray:
        return (np.asarray(chunk, np.float64) / self._scale).astype(np.float32)

    def actions_from_wire(self, actions: np.ndarray, native: bool = False) -> np.ndarray:
        actions = _as_array(actions, "reply 'actions'")
        if actions.dtype.kind not in "fiu" or actions.ndim != 2 or actions.shape[1] < ACTION_DIM or not len(actions):
            raise ProfileError(f"reply 'actions' has shape {actions.shape} ({actions.dtype}); expected (H, D) with "
                               f"D >= {ACTION_DIM} (LIBERO's first 7 are used)")
        actions = actions[:, :ACTION_DIM].astype(np.float64)
        return actions if native else actions * self._scale


def openpi_quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """openpi's LIBERO example's ``_quat2axisangle`` (from robosuite), as it is: (x, y, z, w) in."""
    quat = np.array(quat, dtype=np.float64)
    if quat[3] > 1.0:
        quat[3] = 1.0
    elif quat[3] < -1.0:
        quat[3] = -1.0
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * math.acos(quat[3])) / den


def quat_to_libero_axis_angle(xyzw: np.ndarray) -> np.ndarray:
    """LIBERO's ``_quat2axisangle`` on a unit quaternion (x, y, z, w), with its sign chosen so that
    x >= 0: the angle ``2 acos(w)`` then runs smoothly through pi around the gripper-down pose."""
    q = np.asarray(xyzw, np.float64)
    if q[0] < 0 or (q[0] == 0 and q[3] < 0):
        q = -q
    w = float(np.clip(q[3], -1.0, 1.0))
    den = np.sqrt(1.0 - w * w)
    if np.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * np.arccos(w) / den


PROFILES: dict[str, IOProfile] = {p.name: p for p in (SimevalProfile(), LiberoProfile())}


def get_profile(name: str) -> IOProfile:
    if name not in PROFILES:
        raise ValueError(f"unknown --io profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[name]
