"""The Gymnasium environment: one task on one robot, compiled once, reset by writing state."""

from __future__ import annotations

import atexit
import string
import weakref
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from envs.controller import ControllerConfig, EndEffectorController
from envs.objects import DISTRACTORS
from envs.perturbations import Context, Episode, Perturber, corrupt, parse_variant
from envs.robots import get_robot
from envs.robots.base import PREFIX, R_DOWN
from envs.scene import MAX_RENDER_SIZE, PROFILES, SUBSTEPS, compile_scene
from envs.tasks.library import get_task
from envs.world import World

CAMERAS = ("agentview", "wrist")
RESET_OPTIONS: tuple[str, ...] = ("perturbation",)
INSTRUCTION_CHARSET = frozenset(string.ascii_letters + string.digits + " ,.;:'!?-()")
STATE_DIM = 8
SETTLE_STEPS = 2  # control steps of physics after placing objects, so contacts start at rest
MOVED = 0.03  # metres an object must travel to count as the first one the robot moved
_OPEN_ENVS: "weakref.WeakSet[TabletopEnv]" = weakref.WeakSet()


def _close_all() -> None:
    """Free GL contexts at exit, before EGL terminates (their destructors fail after it)."""
    for env in list(_OPEN_ENVS):
        env.close()


class TabletopEnv(gym.Env):
    """A LIBERO-style tabletop task on one robot.

    ## Description
    A robot on a table must reach the task's goal predicates (``envs/tasks/library.py``) in order,
    following a natural-language instruction.

    ## Action Space
    ``Box(-1, 1, (7,), float32)``: delta tcp position (x, y, z; 2 cm per step at 1), delta tcp
    rotation (axis-angle, world frame; 0.15 rad per step at 1), gripper (-1 open, +1 closed).

    ## Observation Space
    ``Dict``: one ``uint8`` image per camera (``agentview``, ``wrist``; H x W x 3), ``state``
    (float32, 8: tcp position in the world frame, tcp orientation as a quaternion relative to the
    gripper-down pose with w >= 0, gripper opening in [0, 1]) and ``instruction`` (text).

    ## Rewards
    1.0 on the step the task succeeds, 0.0 otherwise (sparse).

    ## Starting State
    The arm at its home pose with the gripper open; objects at positions and yaws sampled uniformly
    from their regions with ``self.np_random`` (regions of a shuffle group are permuted).

    ``info["first_moved"]`` names the first movable task object displaced by more than 3 cm (None
    before that): on tasks that name one object among several, it tells whether the policy acted on
    the named one (the grounding rate of ``simeval run``).

    ## Episode End
    Terminated on success; truncated at the task's step limit (registered ``max_episode_steps``).

    ## Arguments
    ``task``, ``robot`` (``Panda`` or ``Piper``), ``render_mode`` (``rgb_array`` or None),
    ``image_size`` (int or (height, width), default 128), ``cameras`` (subset of
    ``("agentview", "wrist")``; empty for state-only rollouts), ``render_profile`` (``fast`` or
    ``full``), ``controller`` (:class:`ControllerConfig`), ``perturbation`` (the default variant,
    e.g. ``"light:3,camera:2"``; ``reset(options={"perturbation": ...})`` overrides it per episode).
    ``info["perturbation"]`` names the variant, its seed and every parameter it sampled.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: str, robot: str, render_mode: str | None = "rgb_array",
                 image_size: int | tuple[int, int] = 128, cameras: tuple[str, ...] = CAMERAS,
                 render_profile: str = "fast", controller: ControllerConfig | None = None,
                 perturbation: str | None = None) -> None:
        self.task = get_task(task)
        self.robot = get_robot(robot).info
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unknown render_mode {render_mode!r}; valid: 'rgb_array' or None")
        if render_profile not in PROFILES:
            raise ValueError(f"unknown render_profile {render_profile!r}; valid profiles: {', '.join(PROFILES)}")
        bad = [c for c in cameras if c not in CAMERAS]
        if bad or len(set(cameras)) != len(cameras):
            raise ValueError(f"invalid cameras {tuple(cameras)!r}; valid cameras: {', '.join(CAMERAS)} (each at most once)")
        self.height, self.width = _image_size(image_size)
        self.default_variant = parse_variant(perturbation)
        self.render_mode, self.cameras, self.render_profile = render_mode, tuple(cameras), render_profile

        self.model = compile_scene(self.task.scene, self.robot.name, render_profile)
        self.data = mujoco.MjData(self.model)
        self.world = World(self.model, self.data, self.task.scene)
        self.controller = EndEffectorController(self.model, self.robot, controller)
        self._camera_ids = {"agentview": self.model.camera("agentview").id,
                            "wrist": self.model.camera(self.robot.full(self.robot.wrist_camera)).id}
        self._free_qpos = {o.name: self.model.joint(f"{o.name}/free").qposadr[0]
                           for o in self.task.scene.objects if o.movable}
        self._grip_qpos = np.array([self.model.joint(self.robot.full(j)).qposadr[0] for j in self.robot.gripper_joints])
        self._distractor_qpos = {d.name: self.model.joint(f"{d.name}/free").qposadr[0] for d in DISTRACTORS}
        self._robot_geom = np.array([self.model.body(b).name.startswith(PREFIX) for b in self.model.geom_bodyid])
        self._scratch = mujoco.MjData(self.model)  # for checking perturbed start poses
        self.perturber = Perturber(Context(self.model, self.robot, self.task, self.width, self._arm_is_clear))
        self.instruction = self.task.instruction
        self._noise: dict | None = None
        self._materials_dirty = True
        self._noise_rng = np.random.default_rng(0)
        self.elapsed, self._noise_drawn = 0, 0  # control steps since reset; noise frames drawn
        self._frames: dict[str, tuple[int, np.ndarray]] = {}  # camera -> (step, image) rendered
        self._renderer: mujoco.Renderer | None = None
        self._scene_option = mujoco.MjvOption()
        self._scene_option.sitegroup[:] = 0  # sites are bookkeeping, never drawn
        self._stage = 0
        self.layout: dict[str, tuple[float, float, float]] = {}

        image = gym.spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        spaces: dict[str, gym.Space] = {cam: image for cam in self.cameras}
        # tcp position (m, world), orientation quaternion, gripper opening (1 = fully open)
        low = np.array([-2.0, -2.0, -1.0, -1.0, -1.0, -1.0, -1.0, 0.0], np.float32)
        high = np.array([2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.5], np.float32)
        spaces["state"] = gym.spaces.Box(low, high, (STATE_DIM,), np.float32)
        spaces["instruction"] = gym.spaces.Text(max_length=512, charset=INSTRUCTION_CHARSET)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)

    # ----------------------------------------------------------------------------------- episode
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid options: {', '.join(RESET_OPTIONS)}")
        variant = parse_variant(options["perturbation"]) if "perturbation" in options else self.default_variant
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        mujoco.mj_resetData(self.model, self.data)
        episode = Episode(seed=episode_seed, layout=self._sample_layout(), arm_qpos=np.asarray(self.robot.home_qpos, float),
                          instruction=self.task.instruction)
        params = self.perturber.perturb(variant, episode_seed, episode)
        self._place(episode, self.data)
        mujoco.mj_forward(self.model, self.data)
        self.controller.reset(self.data)
        mujoco.mj_step(self.model, self.data, nstep=SETTLE_STEPS * SUBSTEPS)
        self.layout, self.instruction, self._noise = episode.layout, episode.instruction, episode.image_noise
        self._materials_dirty = True
        if self._noise is not None:
            self._noise_rng = np.random.default_rng(self._noise["frame_seed"])
        self.elapsed, self._noise_drawn, self._frames = 0, 0, {}
        self._stage = 0
        self._advance_goals()
        self._start_pos = {name: self.data.qpos[adr:adr + 3].copy() for name, adr in self._free_qpos.items()}
        self.first_moved: str | None = None
        info = self._info()
        info["layout"] = {k: [round(float(v), 5) for v in p] for k, p in {**episode.layout, **episode.distractors}.items()}
        info["perturbation"] = {"variant": str(variant), "seed": episode_seed, "params": params}
        return self._observation(), info

    def step(self, action):
        success, reward = self.advance(action)
        return self._observation(), reward, success, False, self._info()

    def advance(self, action) -> tuple[bool, float]:
        """One control step without rendering: physics and goal checks; (success, reward).

        ``step`` is ``advance`` then ``observe``. The env pool calls ``advance`` through a chunk of
        actions and renders only where an image is read; physics never depends on rendering."""
        act = self._check_action(action)
        self.controller.apply(self.data, act, SUBSTEPS * self.model.opt.timestep)
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        self.elapsed += 1
        done_before = self._stage
        success = self._advance_goals()
        if self.first_moved is None:
            self._note_first_moved()
        return success, 1.0 if success and done_before < len(self.task.goals) else 0.0

    def observe(self, cameras: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The observation after the last step, with images of ``cameras`` only (default: the env's)."""
        return self._observation(self.cameras if cameras is None else cameras)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self._render("agentview")

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------------------------ pieces
    def _check_action(self, action) -> np.ndarray:
        act = np.asarray(action, dtype=np.float64)
        if act.shape != (7,):
            raise ValueError(f"action must have shape (7,) (dpos 3, drot 3, gripper 1), got shape {act.shape}")
        if not np.all(np.isfinite(act)):
            raise ValueError(f"action must be finite, got {act.tolist()}")
        return np.clip(act, -1.0, 1.0)

    def _sample_layout(self) -> dict[str, tuple[float, float, float]]:
        """Centre (x, y) and yaw of every object, drawn from ``self.np_random``."""
        scene, rng = self.task.scene, self.np_random
        regions = {o.name: o.region for o in scene.objects}
        for group in scene.shuffle:
            order = rng.permutation(len(group))
            regions.update({name: scene.object(group[i]).region for name, i in zip(group, order)})
        layout = {}
        for obj in scene.objects:
            x0, x1, y0, y1 = regions[obj.name]
            layout[obj.name] = (rng.uniform(x0, x1), rng.uniform(y0, y1), rng.uniform(*obj.yaw))
        return layout

    def _place(self, episode: Episode, data: mujoco.MjData) -> None:
        """Write an episode's set-up into ``data`` (fixed objects into ``model.body_pos``)."""
        for obj in self.task.scene.objects:
            x, y, yaw = episode.layout[obj.name]
            quat = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
            if obj.movable:
                adr = self._free_qpos[obj.name]
                data.qpos[adr:adr + 7] = [x, y, self.model.body(obj.name).pos[2], *quat]
            else:
                body = self.world.body_ids[obj.name]
                self.model.body_pos[body, :2] = (x, y)
                self.model.body_quat[body] = quat
        for item in DISTRACTORS:  # unplaced ones stay parked where they were compiled (qpos0)
            adr = self._distractor_qpos[item.name]
            if item.name in episode.distractors:
                x, y, yaw = episode.distractors[item.name]
                data.qpos[adr:adr + 7] = [x, y, item.half_height, np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
            else:
                data.qpos[adr:adr + 7] = self.model.qpos0[adr:adr + 7]
        data.qpos[self.controller.qpos_adr] = episode.arm_qpos
        data.qpos[self._grip_qpos] = self.robot.gripper_open_qpos

    def _arm_is_clear(self, arm_qpos: np.ndarray, episode: Episode) -> bool:
        """Whether the arm at ``arm_qpos`` starts above the table and touches nothing."""
        scratch = self._scratch
        mujoco.mj_resetData(self.model, scratch)
        self._place(episode, scratch)
        scratch.qpos[self.controller.qpos_adr] = arm_qpos
        mujoco.mj_forward(self.model, scratch)
        if scratch.site_xpos[self.controller.site][2] < 0.06:
            return False
        contacts = scratch.contact[: scratch.ncon]
        return not any(self._robot_geom[c.geom1] or self._robot_geom[c.geom2] for c in contacts)

    def _advance_goals(self) -> bool:
        """Latch goals that hold, in order; True once all have held."""
        goals = self.task.goals
        while self._stage < len(goals) and goals[self._stage].holds(self.world):
            self._stage += 1
        return self._stage == len(goals)

    def _render(self, camera: str) -> np.ndarray:
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.height, self.width)
            if not _OPEN_ENVS:  # registered after EGL's own exit hook, so it runs before it
                atexit.unregister(_close_all)
                atexit.register(_close_all)
            _OPEN_ENVS.add(self)
            if self.render_profile == "fast":
                for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                             mujoco.mjtRndFlag.mjRND_SKYBOX):
                    self._renderer.scene.flags[flag] = 0
        if self._materials_dirty:
            _sync_materials(self.model, self._renderer)
            self._materials_dirty = False
        self._renderer.update_scene(self.data, camera=self._camera_ids[camera], scene_option=self._scene_option)
        return self._renderer.render()

    def proprio(self) -> np.ndarray:
        """The 8-D proprioceptive state (see the class docstring)."""
        pos, mat = self.controller.tcp_pose(self.data)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, (R_DOWN.T @ mat).ravel())
        if quat[0] < 0:
            quat = -quat
        opening = np.abs(self.data.qpos[self._grip_qpos]).sum() / self.robot.gripper_open_width
        return np.concatenate([pos, quat, [opening]]).astype(np.float32)

    def _observation(self, cameras: tuple[str, ...] | None = None) -> dict[str, Any]:
        obs: dict[str, Any] = {cam: self.frame(cam) for cam in (self.cameras if cameras is None else cameras)}
        obs["state"] = self.proprio()
        obs["instruction"] = self.instruction
        return obs

    def frame(self, camera: str) -> np.ndarray:
        """The image of ``camera`` at this step, rendered once per step (and sensor-corrupted).

        The sensor noise of step k is the k-th draw of the episode's noise stream, whichever steps
        were rendered before: frames skipped inside an action chunk are drawn and discarded, so an
        image at a decision point is the same whether or not the steps before it were rendered."""
        cached = self._frames.get(camera)
        if cached is not None and cached[0] == self.elapsed:
            return cached[1]
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; valid cameras: {', '.join(CAMERAS)}")
        image = self._render(camera)
        if self._noise is not None and camera == "agentview":
            if self._noise["kind"] == "gaussian_noise":  # the only kind that draws per frame
                for _ in range(self.elapsed - self._noise_drawn):
                    self._noise_rng.standard_normal(image.shape, dtype=np.float32)
                self._noise_drawn = self.elapsed + 1
            image = corrupt(image, self._noise, self._noise_rng)
        self._frames[camera] = (self.elapsed, image)
        return image

    def _note_first_moved(self) -> None:
        """Remember the first movable object displaced by more than ``MOVED`` (grounding)."""
        moved = {name: float(np.linalg.norm(self.data.qpos[adr:adr + 3] - self._start_pos[name]))
                 for name, adr in self._free_qpos.items()}
        name, distance = max(moved.items(), key=lambda kv: kv[1], default=(None, 0.0))
        if distance > MOVED:
            self.first_moved = name

    def _info(self) -> dict[str, Any]:
        return {"success": self._stage == len(self.task.goals), "stage": self._stage,
                "task": self.task.name, "robot": self.robot.name,
                "first_moved": getattr(self, "first_moved", None)}

    def privileged_state(self) -> dict[str, Any]:
        """Simulator truth for scripted experts: tcp pose, gripper, object poses, handles, joints."""
        pos, mat = self.controller.tcp_pose(self.data)
        objects = {}
        for obj in self.task.scene.objects:
            entry: dict[str, Any] = {"kind": obj.kind, "pos": self.world.pos(obj.name).copy(),
                                     "quat": self.world.quat(obj.name).copy(), "size": obj.size}
            for site in ("top", "handle", "gap"):
                key = f"{obj.name}/{site}"
                if key in self.world.site_ids:
                    entry[site] = self.world.site(key).copy()
            if f"{obj.name}/joint" in self.world.joint_ids:
                entry["joint"] = self.world.joint(f"{obj.name}/joint")
            objects[obj.name] = entry
        return {"tcp_pos": pos, "tcp_mat": mat, "gripper": float(self.proprio()[7]), "objects": objects,
                "robot_base": np.asarray(self.robot.base_pos), "approach_tilt": self.robot.approach_tilt,
                "stage": self._stage}


def _sync_materials(model: mujoco.MjModel, renderer: mujoco.Renderer) -> None:
    """Copy material texture choices into the GL context, which keeps its own copy from creation
    (without this, a texture switched between episodes is never drawn)."""
    context = renderer._mjr_context
    n = model.nmat
    context.mat_texid[: model.mat_texid.size] = model.mat_texid.ravel()
    context.mat_texrepeat[: 2 * n] = model.mat_texrepeat.ravel()
    context.mat_texuniform[:n] = model.mat_texuniform


def _image_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int or a pair, validated against the offscreen buffer."""
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and 16 <= v <= MAX_RENDER_SIZE for v in pair):
        raise ValueError(f"image_size must be an int or (height, width) with values in 16..{MAX_RENDER_SIZE}, got {size!r}")
    return int(pair[0]), int(pair[1])
