"""The wire format and the I/O profiles, on hand-made cases."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from envs.controller import ControllerConfig
from envs.robots.base import R_DOWN as ENV_R_DOWN
from policies.base import EpisodeStart, ObservationSpec
from policies.remote import profiles
from policies.remote.profiles import (LiberoProfile, ProfileError, SimevalProfile, SlotObservation, get_profile,
                                      quat_to_libero_axis_angle, resize_with_pad)
from policies.remote.wire import WireError, pack, unpack

C = np.cos(np.pi / 4)


# --- wire ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64", "int64", "bool", "<U5"])
def test_arrays_round_trip_with_dtype_and_shape(dtype):
    array = np.arange(24).reshape(2, 3, 4).astype(dtype)
    back = unpack(pack({"a": array, "n": [array[0]]}))
    assert back["a"].dtype == array.dtype and back["a"].shape == (2, 3, 4)
    np.testing.assert_array_equal(back["a"], array)
    np.testing.assert_array_equal(back["n"][0], array[0])


def test_the_tags_are_openpis_binary_keys_and_scalars_keep_their_dtype():
    raw = msgpack.unpackb(pack({"x": np.zeros(2, np.float32), "s": np.float32(1.5)}))
    assert raw["x"][b"__ndarray__"] is True and raw["x"][b"dtype"] == "<f4" and raw["x"][b"shape"] == [2]
    assert raw["s"] == {b"__npgeneric__": True, b"data": 1.5, b"dtype": "<f4"}
    scalar = unpack(pack(np.int16(-3)))
    assert isinstance(scalar, np.int16) and scalar == -3


@pytest.mark.parametrize("bad", [np.array([object()]), np.zeros(2, "complex64"), np.zeros(2, [("a", "f4")]),
                                 np.complex128(1j)])
def test_object_void_and_complex_are_refused_on_send(bad):
    with pytest.raises(WireError, match="refused|cannot send"):
        pack({"x": bad})


@pytest.mark.parametrize("dtype", ["|O", "<c8", "|V8", "not-a-dtype"])
def test_object_void_and_complex_are_refused_on_receive(dtype):
    frame = msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 16, b"dtype": dtype, b"shape": [2]})
    with pytest.raises(WireError, match="dtype"):
        unpack(frame)


def test_an_array_must_hold_exactly_its_bytes_and_frames_must_be_msgpack():
    frame = msgpack.packb({b"__ndarray__": True, b"data": b"\0" * 7, b"dtype": "<f4", b"shape": [2]})
    with pytest.raises(WireError, match="needs 8 bytes"):
        unpack(frame)
    with pytest.raises(WireError, match="not a msgpack frame"):
        unpack(pack({"a": np.zeros(3)})[:-5])


# --- constants restated in the profiles ----------------------------------------------------------

def test_the_profiles_restate_the_worlds_action_space_and_gripper_down_pose():
    config = ControllerConfig()
    assert (profiles.SIM_POS_M, profiles.SIM_ROT_RAD) == (config.pos_scale, config.rot_scale)
    np.testing.assert_array_equal(profiles.R_DOWN, ENV_R_DOWN)


def test_profiles_are_found_by_name_and_an_unknown_one_is_one_line():
    assert isinstance(get_profile("libero"), LiberoProfile) and isinstance(get_profile("simeval"), SimevalProfile)
    with pytest.raises(ValueError, match="unknown --io profile 'openvla'; valid profiles: simeval, libero"):
        get_profile("openvla")


# --- libero: state -------------------------------------------------------------------------------

def _obs(state, size=256) -> SlotObservation:
    images = {cam: np.zeros((size, size, 3), np.uint8) for cam in ("agentview", "wrist")}
    return SlotObservation(np.asarray(state, np.float32), "put the cube on the plate", images)


@pytest.mark.parametrize("state, expected", [
    # gripper straight down (relative quaternion 1): robosuite's half turn about x; fingers half open
    ([0.1, -0.2, 0.3, 1, 0, 0, 0, 0.5], [0.1, -0.2, 0.3, np.pi, 0, 0, 0.02, -0.02]),
    # turned 90 degrees about the gripper's axis: R = Rx(pi) Rz(pi/2), a half turn about (1, -1, 0)/sqrt 2
    ([0, 0, 0, C, 0, 0, C, 1], [0, 0, 0, np.pi * C, -np.pi * C, 0, 0.04, -0.04]),
    # closed gripper
    ([0, 0, 0, 1, 0, 0, 0, 0], [0, 0, 0, np.pi, 0, 0, 0, 0]),
])
def test_libero_state_by_hand(state, expected):
    wire = LiberoProfile().encode(_obs(state))["observation/state"]
    assert wire.dtype == np.float32 and wire.shape == (8,)
    np.testing.assert_allclose(wire, expected, atol=1e-6)


def test_libero_axis_angle_follows_robosuites_sign_past_a_half_turn():
    # measured on robosuite's Panda: x stays positive near gripper-down while w changes sign, and
    # LIBERO's 2 acos(w) then exceeds pi; the quaternion (-x, ..., +w) is the same rotation
    q = np.array([0.867, -0.137, 0.072, -0.473])
    q /= np.linalg.norm(q)
    angle = 2 * np.arccos(q[3])
    np.testing.assert_allclose(quat_to_libero_axis_angle(q), q[:3] / np.linalg.norm(q[:3]) * angle)
    np.testing.assert_allclose(quat_to_libero_axis_angle(-q), quat_to_libero_axis_angle(q))
    assert angle > np.pi


def test_libero_state_round_trips_through_the_server_side():
    profile, spec = LiberoProfile(), ObservationSpec(image_size=128)
    rng = np.random.default_rng(0)
    for _ in range(50):
        quat = rng.normal(size=4)
        quat = quat / np.linalg.norm(quat) * np.sign(quat[0])
        state = np.concatenate([rng.uniform(-0.5, 0.5, 3), quat, [rng.uniform(0, 1)]]).astype(np.float32)
        back = profile.decode(profile.encode(_obs(state)), spec)
        np.testing.assert_allclose(back.state, state, atol=2e-6)
        assert back.instruction == "put the cube on the plate"


# --- libero: actions -----------------------------------------------------------------------------

@pytest.mark.parametrize("libero, simeval", [
    # 2 cm forward is 0.4 of LIBERO's 5 cm unit and one whole simeval unit; gripper -1 opens in both
    ([0.4, 0, 0, 0, 0, 0, -1], [1, 0, 0, 0, 0, 0, -1]),
    # 0.15 rad about z is 0.3 of LIBERO's 0.5 rad unit; +1 closes in both
    ([0, 0, 0, 0, 0, 0.3, 1], [0, 0, 0, 0, 0, 1, 1]),
    # 1 cm down, 0.075 rad about x
    ([0, 0, -0.2, 0.15, 0, 0, 1], [0, 0, -0.5, 0.5, 0, 0, 1]),
    # a full LIBERO unit is 2.5 simeval units (the harness clips it to 1)
    ([1, -1, 0, 0, 0, 0, -1], [2.5, -2.5, 0, 0, 0, 0, -1]),
])
def test_libero_actions_by_hand(libero, simeval):
    profile = LiberoProfile()
    chunk = profile.actions_from_wire(np.array([libero] * 3, np.float32))
    assert chunk.shape == (3, 7)
    np.testing.assert_allclose(chunk, [simeval] * 3, atol=1e-6)
    np.testing.assert_allclose(profile.actions_to_wire(np.array([simeval])), [libero], atol=1e-6)


def test_libero_replies_keep_the_first_seven_dimensions_and_bad_shapes_are_named():
    profile = LiberoProfile()
    wide = np.zeros((10, 32), np.float32)
    wide[:, 6] = 1
    assert profile.actions_from_wire(wide).shape == (10, 7)
    for bad in (np.zeros((10, 6)), np.zeros(7), np.zeros((0, 7)), np.array([["a"] * 7])):
        with pytest.raises(ProfileError, match="reply 'actions' has shape"):
            profile.actions_from_wire(bad)


# --- libero: images ------------------------------------------------------------------------------

def test_libero_images_are_mirrored_as_robosuite_rows_rotated_180_degrees_then_224_px():
    image = np.zeros((256, 256, 3), np.uint8)
    image[:32, :32] = (255, 0, 0)  # red in simeval's top-left corner
    image[-32:, :32] = (0, 0, 255)  # blue bottom-left
    obs = _obs([0, 0, 0, 1, 0, 0, 0, 1])
    obs.images["agentview"] = image
    wire = LiberoProfile().encode(obs)["observation/image"]
    assert wire.shape == (224, 224, 3) and wire.dtype == np.uint8
    # robosuite's rows come bottom first (upside down); openpi's client turns them 180 degrees:
    # together, a left-right mirror of the upright picture
    np.testing.assert_array_equal(wire[5, -5], (255, 0, 0))
    np.testing.assert_array_equal(wire[-5, -5], (0, 0, 255))
    assert wire[5, 5].sum() == 0 and wire[-5, 5].sum() == 0
    back = LiberoProfile().decode(LiberoProfile().encode(obs), ObservationSpec(image_size=256)).images["agentview"]
    assert np.abs(back.astype(int) - image).mean() < 2  # the server side undoes it (up to resampling)


def test_resize_with_pad_keeps_the_aspect_and_pads_black():
    image = np.full((100, 200, 3), 200, np.uint8)
    out = resize_with_pad(image, 224)
    assert out.shape == (224, 224, 3)
    assert out[:50].sum() == 0 and out[-50:].sum() == 0 and (out[112] == 200).all()


# --- simeval profile -----------------------------------------------------------------------------

def test_simeval_profile_is_the_identity_and_carries_the_episode_start():
    profile, spec = SimevalProfile(), ObservationSpec(cameras=("wrist",), image_size=64, privileged=True)
    obs = SlotObservation(np.arange(8, dtype=np.float32), "push the button",
                          {"wrist": np.full((64, 64, 3), 7, np.uint8)}, {"tcp_pos": np.ones(3)},
                          EpisodeStart("s/PushButton-Panda/nominal/0000", "PushButton", "Panda", 42))
    back = profile.decode(unpack(pack(profile.encode(obs))), spec)
    np.testing.assert_array_equal(back.state, obs.state)
    np.testing.assert_array_equal(back.images["wrist"], obs.images["wrist"])
    assert back.start == obs.start and back.instruction == obs.instruction
    np.testing.assert_array_equal(back.privileged["tcp_pos"], np.ones(3))
    chunk = np.random.default_rng(1).uniform(-1, 1, (4, 7)).astype(np.float32)
    np.testing.assert_array_equal(profile.actions_from_wire(unpack(pack(profile.actions_to_wire(chunk)))), chunk)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("state"), "field 'state' missing"),
    (lambda r: r.update(state=np.zeros(7, np.float32)), "field 'state': expected float of shape 8"),
    (lambda r: r.update(state=np.full(8, np.nan, np.float32)), "field 'state' contains NaN"),
    (lambda r: r.update(wrist=np.zeros((32, 32, 3), np.uint8)), "field 'wrist': expected uint8 of shape 64x64x3"),
    (lambda r: r.update(instruction=3), "field 'instruction': expected a string"),
    (lambda r: r.update(episode={"id": "x"}), "field 'episode'"),
])
def test_simeval_profile_names_the_bad_field(change, message):
    request = {"state": np.zeros(8, np.float32), "instruction": "hi", "wrist": np.zeros((64, 64, 3), np.uint8)}
    change(request)
    with pytest.raises(ProfileError, match=message):
        SimevalProfile().decode(request, ObservationSpec(cameras=("wrist",), image_size=64))


def test_simeval_profile_needs_a_simeval_servers_metadata():
    with pytest.raises(ProfileError, match="pass --io libero"):
        SimevalProfile().observation_spec({"some": "openpi metadata"})
    spec = SimevalProfile().observation_spec({"observation_spec": {"cameras": ["agentview"], "image_size": 96}})
    assert spec == ObservationSpec(cameras=("agentview",), image_size=96)


def test_a_policy_that_reads_the_suites_size_takes_any_square_image():
    spec = ObservationSpec(cameras=("agentview",), image_size=None)
    for size in (32, 128):
        request = {"state": np.zeros(8, np.float32), "instruction": "x", "agentview": np.zeros((size, size, 3), np.uint8)}
        assert SimevalProfile().decode(request, spec).images["agentview"].shape == (size, size, 3)
    request["agentview"] = np.zeros((32, 48, 3), np.uint8)
    with pytest.raises(ProfileError, match="field 'agentview': expected a square image, got 32x48"):
        SimevalProfile().decode(request, spec)
