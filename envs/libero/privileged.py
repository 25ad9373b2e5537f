"""LIBERO's simulator truth as plain data, for privileged experts (``policies/libero_expert.py``).

Runs in LIBERO's side environment (imported by ``worker.py`` as the sibling module ``privileged``):
the standard library, numpy and mujoco only. Everything is read from the env at run time, nothing
per task: the goal is the BDDL problem's own ``goal_state`` (as LIBERO parsed it), the objects and
fixtures are LIBERO's ``objects_dict`` / ``fixtures_dict``, the regions its ``object_sites_dict``,
what opens or turns its objects' ``articulation`` ranges (the ones its Open/Close/TurnOn predicates use),
and each object's extent is the box around its collision geoms (MuJoCo's ``geom_aabb``) in its own
root body's frame, so an expert can tell a bottle's narrow side from a bowl's rim.

Names are turned into ids once per env (:class:`SceneIndex`); a state is then a few array reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

CORNERS = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)


@dataclass
class _Body:
    body: int  # the object's root body
    geoms: list[int]  # its (and its descendants') collision geoms


def _descendants(model, root: int) -> list[int]:
    out = [root]
    for b in range(root + 1, model.nbody):
        if model.body_parentid[b] in out:
            out.append(b)
    return out


def _collision_geoms(model, bodies: list[int]) -> list[int]:
    return [g for b in bodies for g in range(model.body_geomadr[b], model.body_geomadr[b] + model.body_geomnum[b])
            if model.geom_contype[g] or model.geom_conaffinity[g]]


class SceneIndex:
    """One LIBERO env's names as MuJoCo ids, looked up once (the model is never rebuilt: cheap resets)."""

    def __init__(self, env) -> None:
        model = env.sim.model._model
        self.env, self.model = env, model
        self.objects: dict[str, _Body] = {}
        for name, obj in {**env.objects_dict, **env.fixtures_dict}.items():
            root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, obj.root_body)
            self.objects[name] = _Body(root, _collision_geoms(model, _descendants(model, root)))
        self.sites = {name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, name) for name in env.object_sites_dict}
        self.sites = {name: i for name, i in self.sites.items() if i >= 0}
        robot = env.robots[0]
        self.eef_site = robot.eef_site_id
        self.fingers = [model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)]
                        for j in robot.gripper.joints]
        robot_joints = set(robot.robot_joints) | set(robot.gripper.joints)
        self.joints = {}  # the scene's own hinges and slides: drawers, knobs, doors
        for j in range(model.njnt):
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
            if name and name not in robot_joints and model.jnt_type[j] in (mujoco.mjtJoint.mjJNT_HINGE,
                                                                            mujoco.mjtJoint.mjJNT_SLIDE):
                self.joints[name] = (int(model.jnt_qposadr[j]), [float(v) for v in model.jnt_range[j]])
        self.robot_base = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, robot.robot_model.root_body)
        # the arm and its hand (the robot's bodies less its mount, which stands on the floor by design)
        self.arm = frozenset(b for b in _descendants(model, self.robot_base)
                             if not (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) or "").startswith("mount"))
        self.articulated = self._articulated(env)
        problem = env.parsed_problem
        self.goal = [[str(term) for term in predicate] for predicate in problem["goal_state"]]
        self.of_interest = [str(name) for name in problem.get("obj_of_interest", [])]


    def _articulated(self, env) -> dict[str, dict]:
        """Everything a goal can open, close or turn (a region site on a drawer, a stove): its joints
        (id, the body they move, that body's collision geoms) and LIBERO's own ranges for the states."""
        out = {}
        things = {**{n: (o.joints, n) for n, o in {**env.objects_dict, **env.fixtures_dict}.items()},
                  **{n: (s.joints, s.parent_name) for n, s in env.object_sites_dict.items()}}
        for name, (joints, owner) in things.items():
            owner_obj = env.objects_dict.get(owner) or env.fixtures_dict.get(owner)
            ranges = getattr(owner_obj, "object_properties", {}).get("articulation") if owner_obj else None
            if not joints or not ranges:
                continue
            ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
            out[name] = {"joints": [(j, int(self.model.jnt_bodyid[j]),
                                     _collision_geoms(self.model, [int(self.model.jnt_bodyid[j])])) for j in ids],
                         "ranges": {k.removeprefix("default_").removesuffix("_ranges"): [float(v) for v in r]
                                    for k, r in ranges.items() if r}}
        return out


def _articulation(model, data, thing: dict) -> dict:
    """One openable thing's joints now: position, world axis and anchor, and each geom's world box."""
    joints = []
    for j, body, geoms in thing["joints"]:
        mat = data.xmat[body].reshape(3, 3)
        boxes = [_box(model, data, [g]) for g in geoms]
        joints.append({"qpos": float(data.qpos[model.jnt_qposadr[j]]), "type": "slide" if model.jnt_type[j] ==
                       mujoco.mjtJoint.mjJNT_SLIDE else "hinge", "axis": mat @ model.jnt_axis[j],
                       "anchor": data.xanchor[j].copy(), "geoms_lo": np.array([b[0] for b in boxes]).reshape(-1, 3),
                       "geoms_hi": np.array([b[1] for b in boxes]).reshape(-1, 3)})
    return {"joints": joints, "ranges": {k: list(v) for k, v in thing["ranges"].items()}}


def _box(model, data, geoms: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The world box around ``geoms``."""
    points = [data.geom_xpos[g] + (model.geom_aabb[g][:3] + model.geom_aabb[g][3:] * CORNERS)
              @ data.geom_xmat[g].reshape(3, 3).T for g in geoms]
    world = np.concatenate(points)
    return world.min(0), world.max(0)


def _extent(model, data, item: _Body) -> dict:
    """The object's pose and the box around its collision geoms, in its body frame and in the world."""
    pos, mat = data.xpos[item.body].copy(), data.xmat[item.body].reshape(3, 3).copy()
    points = []
    for g in item.geoms:
        center, half = model.geom_aabb[g][:3], model.geom_aabb[g][3:]
        points.append(data.geom_xpos[g] + (center + half * CORNERS) @ data.geom_xmat[g].reshape(3, 3).T)
    if not points:  # an object without collision geoms: a point
        points = [pos[None]]
    world = np.concatenate(points)
    local = (world - pos) @ mat  # into the body frame
    return {"pos": pos, "mat": mat, "lo": local.min(0), "hi": local.max(0),
            "world_lo": world.min(0), "world_hi": world.max(0)}


def _arm_contacts(index: SceneIndex, data) -> list[list]:
    """The arm's contacts with the rest of the scene now: [arm body, other body, distance (m, < 0 overlaps)]
    (a start pose in collision shows here before the first action)."""
    model, out, n = index.model, [], int(data.ncon)
    for g1, g2, dist in zip(data.contact.geom1[:n], data.contact.geom2[:n], data.contact.dist[:n]):
        a, b = int(model.geom_bodyid[g1]), int(model.geom_bodyid[g2])
        if (a in index.arm) == (b in index.arm):
            continue
        arm, other = (a, b) if a in index.arm else (b, a)
        out.append([mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, arm),
                    mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, other), round(float(dist), 5)])
    return out


def privileged_state(index: SceneIndex) -> dict:
    """The plain-data truth an expert plans from: the end effector (LIBERO's controller's site), the
    fingers, every object's pose and extent, every region site, the scene's joints, the arm's contacts
    with the scene (for diagnosis) and the goal."""
    model, data = index.model, index.env.sim.data._data
    return {
        "eef_pos": data.site_xpos[index.eef_site].copy(),
        "eef_mat": data.site_xmat[index.eef_site].reshape(3, 3).copy(),
        "gripper_qpos": np.array([data.qpos[a] for a in index.fingers]),
        "robot_base": data.xpos[index.robot_base].copy(),
        "objects": {name: _extent(model, data, item) for name, item in index.objects.items()},
        "sites": {name: {"pos": data.site_xpos[s].copy(), "mat": data.site_xmat[s].reshape(3, 3).copy(),
                         "size": model.site_size[s].copy()} for name, s in index.sites.items()},
        "joints": {name: {"qpos": float(data.qpos[adr]), "range": rng} for name, (adr, rng) in index.joints.items()},
        "articulated": {name: _articulation(model, data, thing) for name, thing in index.articulated.items()},
        "arm_contacts": _arm_contacts(index, data),
        "goal": [list(p) for p in index.goal],
        "of_interest": list(index.of_interest),
    }
