"""Camera, light and background: what the third-person camera sees changes, the physics does not.

Each level draws its magnitude from a band of its own (``[a*L, b*L]``), so a harder level is never
milder than an easier one; signs and directions are random.
"""

from __future__ import annotations

import mujoco
import numpy as np

from envs.perturbations.base import Context, Episode, Params, rounded, shape_rng, unit_vector
from envs.scene import SCENE_CENTRE, lookat_quat
from envs.textures import TEXTURES


def _band(rng: np.random.Generator, level: int, low: float, high: float) -> float:
    return float(rng.uniform(low * level, high * level))


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _axis_quat(axis, degrees: float) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, np.asarray(axis, float), np.deg2rad(degrees))
    return quat


class Camera:
    """Orbit the agentview camera about the scene centre (LIBERO-Plus: azimuth up to +/-75 deg,
    elevation up to 15 deg, distance x1 to x2, in-place yaw and pitch up to 10 deg)."""

    name = "camera"

    def sample(self, level: int, rng: np.random.Generator, ctx: Context, episode: Episode) -> Params:
        shape = shape_rng(episode.seed, self.name)
        signs = [_sign(shape) for _ in range(3)]
        return {"azimuth_deg": round(signs[0] * _band(rng, level, 12.0, 15.0), 3),
                "elevation_deg": round(_band(rng, level, 2.0, 3.0), 3),
                "distance_scale": round(1.0 + _band(rng, level, 0.16, 0.2), 4),
                "yaw_deg": round(signs[1] * _band(rng, level, 1.5, 2.0), 3),
                "pitch_deg": round(signs[2] * _band(rng, level, 1.5, 2.0), 3)}

    def apply(self, ctx: Context, params: Params, episode: Episode) -> None:
        centre = np.asarray(SCENE_CENTRE)
        offset = ctx.nominal["cam_pos"][ctx.camera] - centre
        radius = np.linalg.norm(offset) * params["distance_scale"]
        azimuth = np.arctan2(offset[1], offset[0]) + np.deg2rad(params["azimuth_deg"])
        elevation = np.arcsin(offset[2] / np.linalg.norm(offset)) + np.deg2rad(params["elevation_deg"])
        pos = centre + radius * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                          np.sin(elevation)])
        quat = np.asarray(lookat_quat(tuple(pos), SCENE_CENTRE))
        for axis, angle in (((0, 1, 0), params["yaw_deg"]), ((1, 0, 0), params["pitch_deg"])):
            mujoco.mju_mulQuat(quat, quat.copy(), _axis_quat(axis, angle))  # in the camera's own frame
        ctx.model.cam_pos[ctx.camera] = pos
        ctx.model.cam_quat[ctx.camera] = quat


class Light:
    """Direction, intensity and colour of the lights, and how many there are (shadows follow the
    render profile: the key light casts them in ``full``)."""

    name = "light"

    def sample(self, level: int, rng: np.random.Generator, ctx: Context, episode: Episode) -> Params:
        shape = shape_rng(episode.seed, self.name)
        tilt_axis, sign, tint = unit_vector(shape, 2), _sign(shape), unit_vector(shape, 3)
        extra = []
        for _ in range(max(0, level - 3)):
            colour = 0.6 + 0.4 * shape.random(3)
            extra.append({"pos": rounded([shape.uniform(-0.2, 0.8), shape.uniform(-0.8, 0.8), shape.uniform(0.8, 1.6)]),
                          "diffuse": rounded(0.35 * colour)})
        return {"tilt_deg": round(_band(rng, level, 7.0, 9.0), 3), "tilt_axis": rounded([*tilt_axis, 0.0]),
                "intensity": round(max(0.3, 1.0 + sign * _band(rng, level, 0.1, 0.13)), 4),
                "tint": rounded(1.0 + 0.08 * level * tint), "extra_lights": extra}

    def apply(self, ctx: Context, params: Params, episode: Episode) -> None:
        m, n = ctx.model, ctx.nominal
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, _axis_quat(params["tilt_axis"], params["tilt_deg"]))
        rot = rot.reshape(3, 3)
        scale = params["intensity"] * np.clip(np.asarray(params["tint"]), 0.0, 2.0)
        for light in ctx.lights.values():
            m.light_dir[light] = rot @ n["light_dir"][light]
            m.light_pos[light] = np.asarray(SCENE_CENTRE) + rot @ (n["light_pos"][light] - np.asarray(SCENE_CENTRE))
            m.light_diffuse[light] = np.clip(n["light_diffuse"][light] * scale, 0.0, 1.0)
        m.vis.headlight.ambient[:] = np.clip(n["headlight_ambient"] * scale, 0.0, 1.0)
        m.vis.headlight.diffuse[:] = np.clip(n["headlight_diffuse"] * scale, 0.0, 1.0)
        for light, spec in zip(ctx.extra_lights, params["extra_lights"]):
            m.light_active[light] = 1
            m.light_pos[light] = spec["pos"]
            direction = np.asarray(SCENE_CENTRE) - np.asarray(spec["pos"])
            m.light_dir[light] = direction / np.linalg.norm(direction)
            m.light_diffuse[light] = spec["diffuse"]


# level -> {material: band of textures (0 = least unlike the nominal surface, 2 = most; None =
# recolour only)}, tint strength. Bands are thirds of the texture set ranked per material.
BACKGROUND_LEVELS = {
    1: ({"table_mat": None}, 0.25),
    2: ({"table_mat": 0}, 0.1),
    3: ({"table_mat": 1, "wall_mat": 1}, 0.15),
    4: ({"table_mat": 2, "wall_mat": 1, "floor_mat": 1}, 0.2),
    5: ({"table_mat": 2, "wall_mat": 2, "floor_mat": 2}, 0.35),
}
TEXREPEAT = {"table_mat": (3.0, 3.0), "wall_mat": (6.0, 4.0), "floor_mat": (8.0, 8.0)}
FLOOR_COLOUR = np.array([0.39, 0.39, 0.42])  # the nominal floor is a grey checker texture


def _bands(nominal: np.ndarray) -> list[list[str]]:
    """The texture set in thirds, from least to most unlike a surface of colour ``nominal``."""
    unlike = {t.name: float(np.abs(t.make().reshape(-1, 3) / 255.0 - nominal).mean()) for t in TEXTURES}
    ranked = sorted(unlike, key=unlike.get)  # per-pixel distance: a checker is far from its mean
    third = len(ranked) // 3
    return [ranked[:third], ranked[third:2 * third], ranked[2 * third:]]


class Background:
    """Table, wall and floor textures and colours, from the generated set in ``envs/textures.py``:
    level 1 recolours the table, 2 gives it a texture close to its own colour, 3 a less similar one and
    textures the walls, 4 gives the table one of the least similar and adds the floor, 5 the least
    similar textures everywhere, tinted harder."""

    name = "background"

    def __init__(self) -> None:
        self._bands: dict[tuple, list[list[str]]] = {}

    def sample(self, level: int, rng: np.random.Generator, ctx: Context, episode: Episode) -> Params:
        materials, tint = BACKGROUND_LEVELS[level]
        shape = shape_rng(episode.seed, self.name)
        out = {}
        for material in ("table_mat", "wall_mat", "floor_mat"):
            direction, pick = unit_vector(shape, 3), int(shape.integers(3))  # same draws at every level
            if material not in materials:
                continue
            band = materials[material]
            texture = None if band is None else self._band(ctx, material)[band][pick]
            out[material] = {"texture": texture, "tint": rounded(1.0 + tint * direction)}
        return out

    def _band(self, ctx: Context, material: str) -> list[list[str]]:
        colour = FLOOR_COLOUR if material == "floor_mat" else ctx.nominal["mat_rgba"][ctx.materials[material], :3]
        key = tuple(np.round(colour, 4))
        if key not in self._bands:  # ranked once per surface colour
            self._bands[key] = _bands(np.asarray(colour))
        return self._bands[key]

    def apply(self, ctx: Context, params: Params, episode: Episode) -> None:
        m, n = ctx.model, ctx.nominal
        for material, spec in params.items():
            mat = ctx.materials[material]
            base = n["mat_rgba"][mat, :3] if spec["texture"] is None else np.ones(3)
            m.mat_rgba[mat, :3] = np.clip(base * np.asarray(spec["tint"]), 0.0, 1.0)
            if spec["texture"] is not None:
                m.mat_texid[mat, mujoco.mjtTextureRole.mjTEXROLE_RGB] = ctx.textures[spec["texture"]]
                m.mat_texrepeat[mat] = TEXREPEAT[material]
