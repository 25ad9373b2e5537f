"""The seven perturbation dimensions: parsing, determinism, what each level changes, composition."""

from __future__ import annotations

import numpy as np
import pytest

from envs.perturbations import DIMENSIONS, parse_variant
from envs.registration import env_id

VISUAL = ("camera", "light", "background", "noise")
SEEDS = (0, 1, 2, 3)


def _reset(env, seed: int, variant: str):
    return env.reset(seed=seed, options={"perturbation": variant})


@pytest.fixture
def piper(make_env):
    return make_env(env_id("PutCubeOnPlate", "Piper"))


# ------------------------------------------------------------------------------------ parsing
def test_parse_canonical_order_and_nominal():
    assert str(parse_variant("light:3,camera:2")) == "camera:2,light:3"
    assert parse_variant("camera:0").nominal and parse_variant("").nominal and parse_variant("nominal").nominal
    assert parse_variant(" layout:5 , noise:1 ").levels == (("noise", 1), ("layout", 5))
    assert len(DIMENSIONS) == 7


@pytest.mark.parametrize("text, words", [
    ("lighting:3", ["unknown perturbation dimension 'lighting'", "camera", "robot_init", "layout"]),
    ("camera:6", ["out of range", "0-5"]),
    ("camera:-1", ["out of range", "0-5"]),
    ("camera:high", ["not an integer", "0-5"]),
    ("camera", ["malformed", "dimension:level", "camera"]),
    ("camera:2,,light:1", ["malformed"]),
    ("camera:2,camera:3", ["given twice"]),
])
def test_bad_variants_are_one_line_errors(text, words):
    with pytest.raises(ValueError) as err:
        parse_variant(text)
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_bad_variant_through_the_env(make_env):
    env = make_env(env_id("PushButton", "Panda"), cameras=())
    with pytest.raises(ValueError, match="unknown perturbation dimension"):
        env.reset(seed=0, options={"perturbation": "gravity:2"})
    with pytest.raises(ValueError, match="out of range"):
        make_env(env_id("PushButton", "Panda"), perturbation="light:9")


# -------------------------------------------------------------------------------- determinism
def test_same_seed_and_variant_same_images_state_and_info(piper, make_env):
    variant = "camera:2,robot_init:3,light:4,background:3,noise:3,layout:4,language:2"
    obs1, info1 = _reset(piper, 7, variant)
    qpos1 = piper.unwrapped.data.qpos.copy()
    _reset(piper, 8, "light:5,noise:5")
    obs2, info2 = _reset(piper, 7, variant)
    assert np.array_equal(qpos1, piper.unwrapped.data.qpos)
    assert info1["perturbation"] == info2["perturbation"] and info1["layout"] == info2["layout"]
    for key in ("agentview", "wrist", "state", "instruction"):
        assert np.array_equal(obs1[key], obs2[key]), key
    other = make_env(env_id("PutCubeOnPlate", "Piper"))
    obs3, info3 = _reset(other, 7, variant)
    assert np.array_equal(obs1["agentview"], obs3["agentview"]) and info3["perturbation"] == info1["perturbation"]
    step = np.array([0.3, 0.1, -0.2, 0, 0, 0.1, 1.0])
    a, b = piper.step(step)[0], other.step(step)[0]
    assert np.array_equal(a["agentview"], b["agentview"])  # per-frame noise is seeded too


def test_nominal_after_perturbed_is_nominal(piper, make_env):
    """Episodes never accumulate changes: every model field written is restored first."""
    fresh = make_env(env_id("PutCubeOnPlate", "Piper"))
    clean, _ = fresh.reset(seed=3)
    _reset(piper, 3, "camera:5,light:5,background:5,noise:5,layout:5,robot_init:5,language:5")
    again, info = piper.reset(seed=3)
    assert info["perturbation"]["variant"] == "nominal" and info["perturbation"]["params"] == {}
    for key in ("agentview", "wrist", "state", "instruction"):
        assert np.array_equal(clean[key], again[key]), key


def test_no_recompilation(piper):
    piper.reset(seed=0)
    model = piper.unwrapped.model
    _reset(piper, 0, "background:5,layout:5,light:5")
    assert piper.unwrapped.model is model


# ----------------------------------------------------------------- each level does what it says
def _image_gap(env, dimension: str, level: int) -> float:
    gaps = []
    for seed in SEEDS:
        nominal, _ = env.reset(seed=seed)
        perturbed, _ = _reset(env, seed, f"{dimension}:{level}")
        gaps.append(np.abs(perturbed["agentview"].astype(float) - nominal["agentview"]).mean())
    return float(np.mean(gaps))


@pytest.mark.parametrize("dimension", VISUAL)
def test_visual_levels_are_monotone(dimension, piper):
    gaps = [_image_gap(piper, dimension, level) for level in range(6)]
    assert gaps[0] == 0.0
    assert all(b > a for a, b in zip(gaps, gaps[1:])), gaps


@pytest.mark.parametrize("dimension", VISUAL + ("language",))
def test_what_a_policy_sees_changes_but_not_the_physics(dimension, piper):
    nominal, _ = piper.reset(seed=5)
    qpos = piper.unwrapped.data.qpos.copy()
    perturbed, info = _reset(piper, 5, f"{dimension}:4")
    assert np.array_equal(qpos, piper.unwrapped.data.qpos)
    assert np.array_equal(nominal["state"], perturbed["state"])
    assert set(info["perturbation"]["params"]) == {dimension}
    if dimension == "language":
        assert perturbed["instruction"] != nominal["instruction"]
        assert np.array_equal(nominal["agentview"], perturbed["agentview"])
    else:
        assert not np.array_equal(nominal["agentview"], perturbed["agentview"])
    if dimension in ("camera", "noise"):  # the wrist camera is untouched by these
        assert np.array_equal(nominal["wrist"], perturbed["wrist"])


@pytest.mark.parametrize("robot", ["Panda", "Piper"])
def test_robot_init_distance_grows_with_level(robot, make_env):
    env = make_env(env_id("PutRedCubeInBowl", robot), cameras=())
    home = np.asarray(env.unwrapped.robot.home_qpos)
    adr = env.unwrapped.controller.qpos_adr
    for seed in SEEDS:
        distances = []
        for level in range(6):
            _, info = _reset(env, seed, f"robot_init:{level}")
            start = env.unwrapped.data.qpos[adr]
            ranges = env.unwrapped.controller.ranges
            assert np.all(start >= ranges[:, 0] - 1e-3) and np.all(start <= ranges[:, 1] + 1e-3)
            distances.append(np.linalg.norm(start - home))
        assert distances[0] < 0.01
        for level in range(1, 6):  # 0.1 rad per level (the settle steps move it by a hair)
            assert abs(distances[level] - 0.1 * level) < 0.02, distances


def test_layout_shifts_and_distractors_grow_with_level(make_env):
    env = make_env(env_id("PutCubeOnPlateThenPushButton", "Panda"), cameras=())
    names = [o.name for o in env.unwrapped.task.scene.objects]
    for seed in SEEDS:
        _, nominal = env.reset(seed=seed)
        placed = []
        for level in range(1, 6):
            _, info = _reset(env, seed, f"layout:{level}")
            shift = [np.linalg.norm(np.subtract(info["layout"][n][:2], nominal["layout"][n][:2])) for n in names]
            assert all(0.008 * level <= s <= 0.0101 * level for s in shift), (level, shift)
            distractors = [k for k in info["layout"] if k.startswith("distractor")]
            placed.append(len(distractors))
            for d in distractors:  # on the table, clear of every task object
                spot = np.array(info["layout"][d][:2])
                assert min(np.linalg.norm(spot - np.array(info["layout"][n][:2])) for n in names) > 0.07
                assert env.unwrapped.data.body(d).xpos[2] > -0.01
        assert placed == sorted(placed) and placed[-1] >= 4 and placed[0] == 1, placed


def test_language_keeps_meaning_and_grows_indirect(make_env):
    env = make_env(env_id("PutLeftCubeOnPlate", "Piper"), cameras=())
    original = set(env.unwrapped.task.instruction.split())
    overlaps = []
    for level in range(1, 6):
        scores = []
        for seed in range(8):
            obs, _ = _reset(env, seed, f"language:{level}")
            text = obs["instruction"]
            assert "left" in text and "right" not in text  # which cube never changes
            assert env.observation_space["instruction"].contains(text)
            words = set(text.lower().strip(".?").replace(",", "").split())
            scores.append(len(words & original) / len(words | original))
        overlaps.append(np.mean(scores))
    assert all(b < a for a, b in zip(overlaps, overlaps[1:])), overlaps


def test_noise_severity_grows_for_each_kind():
    from envs.perturbations.noise import KINDS, SEVERITY, corrupt

    image = np.zeros((128, 128, 3), np.uint8)  # a scene-like frame: gradient, a few solid shapes
    image[..., 0] = np.linspace(60, 200, 128)[None, :]
    image[..., 1] = np.linspace(90, 160, 128)[:, None]
    image[30:60, 20:50] = (220, 30, 30)
    image[80:110, 70:120] = (30, 30, 40)
    image[20:40, 90:100] = 250
    for kind in KINDS:
        gaps = []
        for level in range(1, 6):
            params = {"kind": kind, "value": SEVERITY[kind][level - 1], "angle_deg": 30.0}
            out = corrupt(image, params, np.random.default_rng(1))
            gaps.append(np.abs(out.astype(float) - image).mean())
        assert all(b > a for a, b in zip(gaps, gaps[1:])), (kind, gaps)


# -------------------------------------------------------------------------------- composition
def test_perturbations_compose(piper):
    both, info = _reset(piper, 2, "light:3,camera:2")
    assert info["perturbation"]["variant"] == "camera:2,light:3"
    assert set(info["perturbation"]["params"]) == {"camera", "light"}
    camera_only, camera_info = _reset(piper, 2, "camera:2")
    light_only, light_info = _reset(piper, 2, "light:3")
    assert camera_info["perturbation"]["params"]["camera"] == info["perturbation"]["params"]["camera"]
    assert light_info["perturbation"]["params"]["light"] == info["perturbation"]["params"]["light"]
    assert not np.array_equal(both["agentview"], camera_only["agentview"])
    assert not np.array_equal(both["agentview"], light_only["agentview"])


def test_constructor_default_and_option_override(make_env):
    env = make_env(env_id("PushButton", "Piper"), cameras=(), perturbation="layout:2,language:1")
    _, info = env.reset(seed=0)
    assert info["perturbation"]["variant"] == "language:1,layout:2"
    _, info = env.reset(seed=0, options={"perturbation": "light:1"})
    assert info["perturbation"]["variant"] == "light:1"
    _, info = env.reset(seed=0, options={"perturbation": "none"})
    assert info["perturbation"]["variant"] == "nominal"


def test_params_depend_only_on_level_and_seed(make_env):
    """The same (dimension, level, seed) samples the same parameters on any task and robot."""
    a = make_env(env_id("PushButton", "Piper"), cameras=())
    b = make_env(env_id("PutRedCubeInBowl", "Panda"), cameras=())
    for variant in ("camera:3", "light:4", "background:2", "noise:5"):
        _, info_a = _reset(a, 11, variant)
        _, info_b = _reset(b, 11, variant)
        params_a, params_b = info_a["perturbation"]["params"], info_b["perturbation"]["params"]
        if variant.startswith("noise"):
            params_a, params_b = dict(params_a["noise"]), dict(params_b["noise"])
        assert params_a == params_b, variant
