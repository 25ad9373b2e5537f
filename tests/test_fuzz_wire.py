"""Fuzzing what a policy server or client receives: random, truncated and bit-flipped msgpack
frames, and well-formed frames with wrong-typed fields. Every input ends in a value, a
``WireError`` or a ``ProfileError`` (the one-line reasons the server sends back and the client
records), never in another exception."""

from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.base import ObservationSpec
from policies.remote.profiles import PROFILES, ProfileError
from policies.remote.wire import WireError, pack, unpack

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None)
SPEC = ObservationSpec(cameras=("agentview", "wrist"), image_size=16)
VALID = [
    pack({"state": np.zeros(8, np.float32), "instruction": "x", "agentview": np.zeros((16, 16, 3), np.uint8),
          "wrist": np.zeros((16, 16, 3), np.uint8), "episode": {"id": "a", "task": "b", "robot": "c", "seed": 1}}),
    pack({"observation/image": np.zeros((224, 224, 3), np.uint8), "observation/wrist_image": np.zeros((8, 8, 3), np.uint8),
          "observation/state": np.zeros(8), "prompt": "x"}),
    pack({"actions": np.zeros((10, 7), np.float32), "server_timing": {"infer_ms": np.float64(3.0)}}),
]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                    st.text(max_size=10), st.binary(max_size=20))
fields = st.sampled_from(["actions", "state", "instruction", "agentview", "wrist", "episode", "privileged", "observation/state",
                          "observation/image", "observation/wrist_image", "prompt", "__ndarray__", "data", "dtype",
                          "shape", "__npgeneric__"])
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.one_of(fields, st.binary(max_size=12)),
                                                                      inner, max_size=5)), max_leaves=10)


def _receive(frame: bytes) -> None:
    """What the server does with a request, and the client with a reply."""
    try:
        message = unpack(frame)
    except WireError:
        return
    for profile in PROFILES.values():
        if isinstance(message, dict):
            try:
                profile.decode(message, SPEC)
            except ProfileError:
                pass
            if "actions" in message:
                try:
                    profile.actions_from_wire(message["actions"])
                except ProfileError:
                    pass


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(data):
    _receive(data)


@FUZZ
@given(which=st.integers(0, len(VALID) - 1), cut=st.integers(0, 10**6), flips=st.lists(st.integers(0, 10**6), max_size=6))
def test_truncated_and_bit_flipped_frames(which, cut, flips):
    frame = bytearray(VALID[which][: max(1, cut % (len(VALID[which]) + 1))])
    for flip in flips:
        frame[flip % len(frame)] ^= 1 << (flip % 8)
    _receive(bytes(frame))


@FUZZ
@given(message=st.dictionaries(fields, values, max_size=8))
def test_wrong_typed_fields(message):
    _receive(msgpack.packb(message))
