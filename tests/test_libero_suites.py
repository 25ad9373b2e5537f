"""LIBERO's suites as simeval sees them without LIBERO: the catalogue, suite expansion and its
errors, the plain-data wire, and what the libero profile sends from a LIBERO world's observation."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from envs.libero import wire
from policies.remote.profiles import LiberoProfile, SlotObservation, openpi_quat2axisangle
from simeval import worlds
from simeval.cli import main
from simeval.libero import catalog
from simeval.libero.world import simeval_state
from simeval.suites import SuiteError, load_suite, parse_suite

PUBLISHED = {"libero_spatial": (10, 220), "libero_object": (10, 280), "libero_goal": (10, 300),
             "libero_10": (10, 520), "libero_90": (90, 400)}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_builtin_suites_are_the_published_protocol(name):
    suite = load_suite(name)
    specs = suite.episode_specs()
    tasks, limit = PUBLISHED[name]
    assert suite.world == name and suite.seed == 7 and suite.image_size == 256
    assert len(specs) == tasks * 50 and len({s.id for s in specs}) == len(specs)
    assert {s.max_steps for s in specs} == {limit} and {s.seed for s in specs} == {7}
    assert {s.robot for s in specs} == {"Panda"} and {s.variant for s in specs} == {"nominal"}
    first = [s for s in specs if s.task == specs[0].task]
    assert [s.index for s in first] == list(range(50))  # episode i runs init state i
    assert [t.name for t in catalog.tasks(name)] == suite.tasks  # LIBERO's task order


def test_episode_ids_are_stable():
    spec = load_suite("libero_spatial").episode_specs()[51]
    assert spec.id == ("libero_spatial/pick_up_the_black_bowl_next_to_the_ramekin_and_place_it_on_the_plate-Panda/"
                       "nominal/0001")


def test_task_names_are_unique_across_benchmarks():
    names = [t.name for b in catalog.benchmarks() for t in catalog.tasks(b)]
    assert len(names) == len(set(names)) == 130


@pytest.mark.parametrize("text, words", [
    ("world: libero_spatial\ntasks: [Juggle]\n", ["'tasks'", "unknown Juggle"]),
    ("world: libero_spatial\ntasks: all\nepisodes: 51\n", ["'episodes'", "50 init states"]),
    ("world: libero_spatial\ntasks: all\nperturbations: [light:2]\n", ["'perturbations'", "nominal"]),
    ("world: libero_spatial\ntasks: all\nrobots: [Piper]\n", ["'robots'", "unknown Piper", "Panda"]),
    ("world: libero_99\ntasks: all\n", ["'world'", "libero_99", "libero_spatial"]),
])
def test_bad_libero_suites(text, words):
    import yaml

    data = {"name": "x", "robots": ["Panda"], "perturbations": ["nominal"], **yaml.safe_load(text)}
    with pytest.raises(SuiteError) as err:
        parse_suite(data, "s.yaml")
    assert all(w in str(err.value) for w in words), err.value


def test_tasks_by_index_and_bad_flags(tmp_path, capsys):
    assert worlds.resolve_tasks("libero_goal", ["0", "open_the_top_drawer_and_put_the_bowl_inside"]) == [
        catalog.tasks("libero_goal")[0].name, "open_the_top_drawer_and_put_the_bowl_inside"]
    for argv, words in ((["--tasks", "10"], ["unknown task 10", "index 0..9"]),
                        (["--episodes", "60"], ["--episodes 60", "50 init states"]),
                        (["--policy", "scripted"], ["simulator state", "LIBERO"])):
        args = ["run", "--policy", "random", "--suite", "libero_spatial", "--out", str(tmp_path / "o"),
                "--video", "none", *argv]
        if argv[0] == "--policy":
            args[2] = argv[1]
            args = args[:-2]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and all(w in err for w in words), err
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_wire_round_trip_and_refuses_code():
    ours, theirs = socket.socketpair()
    message = {"op": "chunk", "actions": np.arange(14.0).reshape(2, 7), "images": {"agentview": np.ones((4, 4, 3),
               np.uint8)}, "n": np.int64(3), "flags": [True, None, "x"]}
    wire.send(ours, message)
    got = wire.recv(theirs)
    np.testing.assert_array_equal(got["actions"], message["actions"])
    assert got["images"]["agentview"].dtype == np.uint8 and got["n"] == 3 and got["flags"] == [True, None, "x"]
    import pickle

    evil = pickle.dumps(np.zeros(2))  # a numpy pickle names numpy's reconstructor: refused
    ours.sendall(wire.HEADER.pack(len(evil)) + evil)
    with pytest.raises(pickle.UnpicklingError, match="only plain data"):
        wire.recv(theirs)
    ours.close()
    with pytest.raises(wire.WireClosed):
        wire.recv(theirs)


def test_openpi_axis_angle_matches_the_formula():
    for quat in ([1.0, 0.0, 0.0, 0.0], [0.9990482, 0.0, 0.0436194, 0.0], [0.0, 0.0, 0.0, 1.0]):
        q = np.array(quat)
        got = openpi_quat2axisangle(q)
        w = min(max(q[3], -1.0), 1.0)
        den = math.sqrt(1 - w * w)
        want = np.zeros(3) if math.isclose(den, 0.0) else q[:3] * 2 * math.acos(w) / den
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(q, np.array(quat))  # the caller's array is not clipped in place


def test_libero_profile_sends_libero_state_and_keeps_actions():
    native = {"robot0_eef_pos": np.array([-0.2, 0.01, 1.17]), "robot0_eef_quat": np.array([0.9990482, 0.0, 0.0436194, 0.0]),
              "robot0_gripper_qpos": np.array([0.0393, -0.0391])}
    upright = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    obs = SlotObservation(simeval_state(native), "put it there", {"agentview": upright, "wrist": upright}, native=native)
    profile = LiberoProfile()
    request = profile.encode(obs)
    state = request["observation/state"]
    assert state.dtype == np.float64
    np.testing.assert_array_equal(state, np.concatenate([native["robot0_eef_pos"],
                                                         openpi_quat2axisangle(native["robot0_eef_quat"]),
                                                         native["robot0_gripper_qpos"]]))
    raw = upright[::-1]  # what LIBERO renders; openpi's client sends raw[::-1, ::-1], padded to 224
    from policies.remote.profiles import resize_with_pad

    np.testing.assert_array_equal(request["observation/image"], resize_with_pad(np.ascontiguousarray(raw[::-1, ::-1]), 224))
    chunk = np.array([[0.5, -0.3, 0.1, 0.02, 0.0, -0.01, 1.0]])
    np.testing.assert_array_equal(profile.actions_from_wire(chunk, native=True), chunk)  # LIBERO's own units
    assert not np.array_equal(profile.actions_from_wire(chunk), chunk)  # rescaled for simeval's worlds


def test_simeval_state_from_libero_proprioception():
    down = Rotation.from_matrix(np.diag([1.0, -1.0, -1.0])).as_quat()  # gripper-down, xyzw
    state = simeval_state({"robot0_eef_pos": np.array([0.1, 0.2, 0.3]), "robot0_eef_quat": down,
                           "robot0_gripper_qpos": np.array([0.04, -0.04])})
    np.testing.assert_allclose(state, [0.1, 0.2, 0.3, 1, 0, 0, 0, 1], atol=1e-6)
