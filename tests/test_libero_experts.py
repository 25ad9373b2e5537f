"""LIBERO's privileged experts (``--policy scripted-libero``): their grasp geometry (no LIBERO needed),
the refusals of an expert whose simulator truth a world lacks, and (where LIBERO's side environment
is built) a spatial and an object task solved through ``simeval run``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policies.base import ObservationSpec
from policies.libero_expert import LiberoExpert
from policies.libero_plan import R_DOWN, LiberoExpertConfig, hand_yaw, rot_z, rotation_error
from simeval.cli import main
from simeval.libero import sideenv
from simeval.records import read_records

_WHY = sideenv.incomplete(sideenv.SideEnv.at(sideenv.default_home()))  # builds nothing
needs_side_env = pytest.mark.skipif(_WHY is not None, reason=f"LIBERO's side environment is not built here ({_WHY}); "
                                                             f"build it with simeval setup libero")


def _object(pos, yaw, size) -> dict:
    """A privileged object entry: upright, turned ``yaw``, a box of ``size`` standing on z = pos[2]."""
    mat = rot_z(yaw)
    half = np.array(size) / 2
    lo, hi = np.array([-half[0], -half[1], 0.0]), np.array([half[0], half[1], size[2]])
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    world = np.asarray(pos) + corners @ mat.T
    return {"pos": np.asarray(pos, float), "mat": mat, "lo": lo, "hi": hi, "world_lo": world.min(0),
            "world_hi": world.max(0)}


def _priv(obj: dict) -> dict:
    return {"eef_pos": np.array([-0.2, 0.0, 1.17]), "eef_mat": R_DOWN.copy(), "gripper_qpos": np.array([0.04, -0.04]),
            "robot_base": np.array([-0.66, 0.0, 0.91]), "objects": {"thing_1": obj}, "sites": {}, "joints": {},
            "goal": [["on", "thing_1", "thing_1"]], "of_interest": []}


def test_controller_conventions():
    """Yaw 0 is LIBERO's start pose; the rotation error is OSC_POSE's world-frame delta (target = R(err) current)."""
    assert hand_yaw(R_DOWN) == pytest.approx(0.0, abs=1e-12)
    assert hand_yaw(rot_z(0.7) @ R_DOWN) == pytest.approx(0.7)
    err = rotation_error(rot_z(0.3) @ R_DOWN, R_DOWN)
    np.testing.assert_allclose(err, [0.0, 0.0, 0.3], atol=1e-9)


@pytest.mark.parametrize("yaw", [0.0, 0.4, -1.2])
def test_grasp_closes_across_the_narrow_side(yaw):
    """A 3 x 8 cm box is gripped across its 3 cm side (the fingers close along the hand's x axis)."""
    box = _object([0.05, 0.1, 0.9], yaw, (0.03, 0.08, 0.06))
    point, hand = LiberoExpert()._grasp(_priv(box), "thing_1")
    closing = (rot_z(hand) @ R_DOWN)[:, 0]
    narrow = rot_z(yaw)[:, 0]
    assert abs(abs(closing @ narrow) - 1) < 1e-6
    np.testing.assert_allclose(point[:2], [0.05, 0.1], atol=1e-9)
    assert 0.9 + 0.01 < point[2] < 0.96


def test_grasp_pinches_the_rim_of_what_the_hand_cannot_span():
    """A 10 cm bowl: the fingers close radially on its rim, on the side facing the robot, below its top."""
    bowl = _object([0.0, 0.2, 0.9], 0.0, (0.10, 0.10, 0.05))
    cfg = LiberoExpertConfig()
    point, hand = LiberoExpert(cfg)._grasp(_priv(bowl), "thing_1")
    toward = np.array([-0.66, -0.2]) / np.hypot(0.66, 0.2)
    np.testing.assert_allclose(point[:2], np.array([0.0, 0.2]) + toward * (0.05 - cfg.rim_inset), atol=1e-9)
    assert point[2] == pytest.approx(0.95 - cfg.rim_depth)
    closing = (rot_z(hand) @ R_DOWN)[:2, 0]
    assert abs(abs(closing @ toward) - 1) < 1e-6


def test_config_and_spec_validate():
    with pytest.raises(ValueError, match="hand_opening"):
        LiberoExpertConfig(hand_opening=0)
    with pytest.raises(ValueError, match="privileged_world"):
        ObservationSpec(privileged=True, privileged_world="mujoco")


def test_experts_refused_where_their_truth_is_missing(tmp_path, capsys):
    """scripted-libero on simeval's worlds and scripted on LIBERO's: one line each, exit 2, nothing written."""
    for policy, suite, words in (("scripted-libero", "smoke", ["LIBERO's simulator state", "libero_spatial",
                                                                "scripted"]),
                                 ("scripted", "libero_spatial", ["simeval's simulator state", "scripted-libero"])):
        out = tmp_path / policy
        assert main(["run", "--policy", policy, "--suite", suite, "--out", str(out), "--video", "none",
                     "--episodes", "1", "--workers", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and all(w in err for w in words), err
        assert not out.exists()


@pytest.mark.libero
@needs_side_env
@pytest.mark.parametrize("suite", ["libero_spatial", "libero_object"])
def test_expert_solves_a_libero_task_through_simeval_run(tmp_path, suite):
    """Task 0, init state 0 of a suite, solved well inside the step limit, through the CLI."""
    out = tmp_path / suite
    assert main(["run", "--policy", "scripted-libero", "--suite", suite, "--tasks", "0", "--episodes", "1",
                 "--workers", "1", "--video", "none", "--out", str(out)]) == 0
    (record,) = read_records(out / "episodes.jsonl")
    assert record["success"] and record["error"] is None and record["steps"] < 200, record
    assert json.loads((out / "results.json").read_text())["counts"]["episodes"] == 1


def test_a_goal_without_a_skill_fails_that_slot_alone():
    """An unknown predicate (or a hinged door to close) is a SlotError naming it, not a crashed run."""
    from policies.base import Batch, EpisodeStart, SlotError
    from policies.libero_expert import LiberoExpertPolicy

    box = _object([0.05, 0.1, 0.9], 0.0, (0.03, 0.08, 0.06))
    good, bad = _priv(box), _priv(box)
    bad["goal"] = [["up", "thing_1"]]
    policy = LiberoExpertPolicy()
    policy.reset([0, 1], [EpisodeStart(f"e{i}", "t", "Panda", 7) for i in range(2)])
    out = policy.act(Batch(slots=[0, 1], state=np.zeros((2, 8), np.float32), instruction=["", ""],
                           privileged=[good, bad]))
    assert out[0].shape == (7,) and np.all(np.abs(out[0]) <= 1)
    assert isinstance(out[1], SlotError) and "(up thing_1)" in out[1].reason and not out[1].retry
