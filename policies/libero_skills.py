"""The LIBERO expert's skills for what opens, closes and turns (``Open``, ``Close``, ``TurnOn``, ``TurnOff``).

Each is planned from LIBERO's own description of the thing (``privileged["articulated"]``): its joint
(slide or hinge, its world axis and anchor, the collision boxes of the part it moves) and the qpos
ranges LIBERO's predicates test. A drawer is opened by pinching its handle (the moving part's box
furthest out along the opening direction) with the hand turned level, fingers closing vertically,
and pulling it the missing travel; it is closed by pushing that handle back with the closed hand. A
knob on a vertical hinge is pinched across its tallest part and turned about the hinge's anchor.
"""

from __future__ import annotations

import numpy as np

from policies.libero_plan import CLOSE, OPEN, Priv, Skill, Waypoint, hand_yaw, rot_z, rotation_error, wrap_half

TURN_STEPS = 8  # waypoints along a knob's arc


def _target(ranges: dict[str, list[float]], state: str) -> float:
    """A qpos well inside LIBERO's range for ``state`` (``open``, ``close``, ``turnon``, ``turnoff``)."""
    lo, hi = min(ranges[state]), max(ranges[state])
    return lo + 0.5 * (hi - lo) if state in ("open", "close") else lo + 0.35 * (hi - lo)


def opening(thing: Priv) -> np.ndarray:
    """The horizontal world direction a sliding part moves as it opens."""
    ranges = thing["ranges"]
    out = np.asarray(thing["joints"][0]["axis"], float) * np.sign(_target(ranges, "open") - _target(ranges, "close"))
    out[2] = 0.0
    return out / max(np.linalg.norm(out), 1e-9)


def is_open(thing: Priv) -> bool:
    """Whether the part is in LIBERO's open range (or has none: nothing to open)."""
    if "open" not in thing["ranges"]:
        return True
    lo, hi = min(thing["ranges"]["open"]), max(thing["ranges"]["open"])
    q = thing["joints"][0]["qpos"]
    return lo - 1e-3 <= q <= hi + 1e-3 or abs(q - _target(thing["ranges"], "open")) < \
        abs(q - _target(thing["ranges"], "close")) - 0.5 * (hi - lo)


def _handle(joint: Priv, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The moving part's box that sticks out furthest along ``direction``: (centre, lo, hi)."""
    lo, hi = np.asarray(joint["geoms_lo"]), np.asarray(joint["geoms_hi"])
    centers = (lo + hi) / 2
    best = int(np.argmax(centers @ direction))
    return centers[best], lo[best], hi[best]


def level_pinch(direction: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The hand pointing along ``-direction`` (horizontal), its fingers closing vertically: of the two
    such orientations (a pinch is the same turned half a turn), the one nearer ``current``."""
    approach = -np.asarray(direction, float)
    approach[2] = 0.0
    approach /= np.linalg.norm(approach)
    options = [np.column_stack([closing, np.cross(approach, closing), approach])
               for closing in (np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, -1.0]))]
    return min(options, key=lambda r: float(np.linalg.norm(rotation_error(r, current))))


def slide(expert, name: str, state: str) -> Skill:
    """Open (pull) or close (push) a sliding part to LIBERO's range for ``state``."""

    def make(priv: Priv) -> list[Waypoint]:
        thing = priv["articulated"][name]
        joint = thing["joints"][0]
        goal = _target(thing["ranges"], state)
        axis = np.asarray(joint["axis"], float)
        travel = goal - joint["qpos"]
        out = opening(thing)
        handle, _, _ = _handle(joint, out)
        moved = axis * travel  # where the part goes
        eef = np.asarray(priv["eef_pos"])
        if state == "open":
            rot = level_pinch(out, np.asarray(priv["eef_mat"]))
            front = handle + out * 0.12
            return [Waypoint(np.array([*front[:2], max(eef[2], front[2])]), 0.0, OPEN, tol=0.02, max_steps=50,
                             rot=rot, turn=0.6),
                    Waypoint(front, 0.0, OPEN, tol=0.015, max_steps=30, rot=rot),
                    Waypoint(handle, 0.0, OPEN, tol=0.006, max_steps=30, speed=0.4, rot=rot),
                    Waypoint(handle, 0.0, CLOSE, tol=1.0, min_steps=8, max_steps=8, rot=rot),
                    Waypoint(handle + moved * 1.1, 0.0, CLOSE, tol=0.008, max_steps=50, speed=0.4, rot=rot),
                    Waypoint(handle + moved * 1.1, 0.0, OPEN, tol=1.0, min_steps=5, max_steps=5, rot=rot),
                    Waypoint(handle + moved * 1.1 + out * 0.08, 0.0, OPEN, tol=0.02, max_steps=20, rot=rot),
                    Waypoint(handle + moved * 1.1 + out * 0.1 + [0, 0, 0.1], 0.0, OPEN, tol=0.03, max_steps=30,
                             turn=0.6)]  # the hand down again, clear of the part
        yaw = hand_yaw(np.asarray(priv["eef_mat"]))
        yaw = yaw + wrap_half(float(np.arctan2(out[1], out[0])) - yaw)  # the fingers' flat side to the push
        front = handle + out * 0.06
        return [Waypoint(np.array([*front[:2], max(eef[2], front[2] + 0.1)]), yaw, CLOSE, tol=0.02, max_steps=50),
                Waypoint(front, yaw, CLOSE, tol=0.01, max_steps=30),
                Waypoint(handle + moved * 1.1, yaw, CLOSE, tol=0.008, max_steps=50, speed=0.4),
                Waypoint(handle + moved * 1.1 + out * 0.08, yaw, CLOSE, tol=0.02, max_steps=20)]

    return Skill(f"{state} {name}", make)


def knob(expert, name: str, state: str) -> Skill:
    """Turn a part on a vertical hinge to LIBERO's range for ``state`` (pinch, turn about the anchor, let go)."""

    def make(priv: Priv) -> list[Waypoint]:
        thing = priv["articulated"][name]
        joint = thing["joints"][0]
        angle = (_target(thing["ranges"], state) - joint["qpos"]) * float(np.sign(joint["axis"][2]))
        lo, hi = np.asarray(joint["geoms_lo"]), np.asarray(joint["geoms_hi"])
        top = int(np.argmax(hi[:, 2]))  # the knob's grip: its tallest part
        center, size = (lo[top] + hi[top]) / 2, hi[top] - lo[top]
        across = np.array([1.0, 0.0]) if size[0] <= size[1] else np.array([0.0, 1.0])
        current = hand_yaw(np.asarray(priv["eef_mat"]))
        yaw = current + wrap_half(float(np.arctan2(across[1], across[0])) - np.pi / 2 - current)
        grip = np.array([center[0], center[1], max(hi[top, 2] - 0.015, lo[top, 2] + 0.01)])
        anchor = np.asarray(joint["anchor"], float)
        steps = [Waypoint(grip + [0, 0, 0.08], yaw, OPEN, tol=0.012, max_steps=60),
                 Waypoint(grip, yaw, OPEN, tol=0.006, max_steps=30, speed=0.5),
                 Waypoint(grip, yaw, CLOSE, tol=1.0, min_steps=8, max_steps=8)]
        for k in range(1, TURN_STEPS + 1):
            turn = angle * k / TURN_STEPS
            pos = anchor + rot_z(turn) @ (grip - anchor)
            pos[2] = grip[2]
            steps.append(Waypoint(pos, yaw + turn, CLOSE, tol=0.01, max_steps=12, turn=0.4))
        steps += [Waypoint(steps[-1].pos, yaw + angle, OPEN, tol=1.0, min_steps=5, max_steps=5),
                  Waypoint(steps[-1].pos + [0, 0, 0.08], yaw + angle, OPEN, tol=0.02, max_steps=20)]
        return steps

    return Skill(f"{state} {name}", make)


def _articulated_skill(state: str):
    def skill(expert, name: str, priv: Priv) -> Skill:
        joint = priv["articulated"][name]["joints"][0]
        if joint["type"] == "slide":
            return slide(expert, name, state)
        if state in ("turnon", "turnoff"):
            return knob(expert, name, state)
        raise ValueError(f"the LIBERO expert has no skill to {state} {name} (a {joint['type']} joint)")

    return skill


ARTICULATED = {"open": _articulated_skill("open"), "close": _articulated_skill("close"),
               "turnon": _articulated_skill("turnon"), "turnoff": _articulated_skill("turnoff")}
