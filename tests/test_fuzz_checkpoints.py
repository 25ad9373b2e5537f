"""Fuzzing the checkpoint loaders: damaged checkpoints end in a one-line ValueError or a policy.

Valid checkpoints of each kind (the committed reference VLA, copied; tiny LoRA, CapVector and
CLP adapted checkpoints) are truncated, bit-flipped, given config fields of other JSON types,
forged (weights rewritten and their recorded hash updated, so that the parsers are reached) and
oversized, then loaded with ``policies.loader.load_policy``. Any other exception fails the test, and
so does any change to the checkpoint directory (loading must never write). Deterministic:
hypothesis runs derandomized, without an example database.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load as load_safetensors
from safetensors.torch import save

from policies.finetune import VECTOR_FILE
from policies.integrity import MAX_JSON_BYTES
from policies.loader import load_policy
from policies.vla.policy import VLAPolicy
from tests.test_checkpoint_integrity import REFERENCE, build_checkpoints

HUGE = "x" * 1_000_000
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from([0, 1, -1, 2**63, 10**30, 1e308, float("nan"), float("inf"), HUGE, "", "\x00", "../config.json",
                     "lora", "lora_sp", "gse", "clp", "capvector", "full", "last_k", "simeval_vla",
                     "simeval_adapted", VECTOR_FILE, "adapter_model.safetensors", "0" * 64]))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pristine")
    kinds = build_checkpoints(root)
    kinds["reference"] = Path(shutil.copytree(REFERENCE, root / "reference"))
    return kinds


# ---------------------------------------------------------------------------------- checking
def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content's hash (or link target): what loading may not change."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = "link:" + os.readlink(path)
        elif path.is_file():
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[key] = "dir"
    return out


def outcome(directory: Path) -> str:
    """Load ``directory``: a one-line ValueError or a policy, nothing else, and no file written."""
    before = snapshot(directory)
    try:
        policy = load_policy(str(directory))
    except ValueError as err:
        message = str(err)
        assert message and "\n" not in message and len(message) < 2000, message[:3000]
        result = message
    else:
        assert isinstance(policy, VLAPolicy)
        result = "loaded"
    assert snapshot(directory) == before, "loading changed the checkpoint directory"
    return result


# --------------------------------------------------------------------------------- mutations
def rehash(root: Path) -> None:
    """Record the current weights' hashes, as a forger would: the loaders' parsers must then cope."""
    for config in root.rglob("*config.json"):
        try:
            meta = json.loads(config.read_text())
        except (ValueError, UnicodeDecodeError, OSError, RecursionError):
            continue
        if not isinstance(meta, dict):
            continue
        weights = config.parent / "model.safetensors"
        if config.name == "config.json" and "weights_sha256" in meta and weights.is_file():
            meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        section = meta.get("simeval")
        hashes = section.get("sha256") if isinstance(section, dict) else None
        if config.name == "adapter_config.json" and isinstance(hashes, dict):
            for name in hashes:
                if (config.parent / name).is_file():
                    hashes[name] = hashlib.sha256((config.parent / name).read_bytes()).hexdigest()
        config.write_text(json.dumps(meta))


def json_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path into a parsed JSON value (the root included)."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            paths += json_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            paths += json_paths(item, prefix + (i,))
    return paths


def replace_field(data: st.DataObject, path: Path) -> None:
    meta = json.loads(path.read_text())
    paths = json_paths(meta)
    where = paths[data.draw(st.integers(0, len(paths) - 1), label="field")]
    delete = bool(where) and data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(VALUES, label="value")
    if not where:
        meta = value
    else:
        parent = meta
        for key in where[:-1]:
            parent = parent[key]
        if delete:
            del parent[where[-1]]
        else:
            parent[where[-1]] = value
    path.write_text(json.dumps(meta))


def forge_tensors(data: st.DataObject, path: Path) -> None:
    """A well-formed safetensors file that differs from the saved one in names, shapes or dtypes."""
    state = dict(load_safetensors(path.read_bytes()))
    name = data.draw(st.sampled_from(sorted(state)), label="tensor")
    how = data.draw(st.sampled_from(["drop", "rename", "flatten", "float64", "int32", "bfloat16", "extra", "empty"]))
    if how == "drop":
        del state[name]
    elif how == "rename":
        state[name + ".x"] = state.pop(name)
    elif how == "flatten":
        state[name] = state[name].flatten().contiguous()
    elif how in ("float64", "int32", "bfloat16"):
        state[name] = state[name].to(getattr(torch, how))
    elif how == "extra":
        state["base_model.model.extra"] = torch.zeros(3)
    else:
        state = {}
    path.write_bytes(save(state))


def mutate(data: st.DataObject, root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    weights = [p for p in files if p.suffix == ".safetensors"]
    configs = [p for p in files if p.suffix == ".json"]
    how = data.draw(st.sampled_from(["truncate", "flip", "replace", "header", "forge", "garbage"]), label="how")
    target = data.draw(st.sampled_from(configs if how == "replace" else weights if how in ("header", "forge")
                                       else files), label="file")
    raw = target.read_bytes()
    if how == "truncate":
        target.write_bytes(raw[: data.draw(st.integers(0, max(0, len(raw) - 1)), label="length")])
    elif how == "flip":
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        target.write_bytes(raw[:at] + bytes([raw[at] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[at + 1:])
    elif how == "replace":
        replace_field(data, target)
    elif how == "header":  # the 8-byte header length claims more than the file holds
        claim = data.draw(st.sampled_from([2**64 - 1, 2**63, 2**40, len(raw), len(raw) - 7, 0, 1]), label="claim")
        target.write_bytes(struct.pack("<Q", claim) + raw[8:])
    elif how == "forge":
        forge_tensors(data, target)
    else:
        target.write_bytes(data.draw(st.binary(max_size=64), label="bytes"))
    if how in ("truncate", "flip", "header", "forge", "garbage") and data.draw(st.booleans(), label="rehash"):
        rehash(root)


def fuzz_kind(pristine: dict[str, Path], kind: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(pristine[kind], Path(tmp) / kind))
        mutate(data, root)
        outcome(root)


@settings(FUZZ, max_examples=50)
@given(data=st.data())
def test_fuzz_reference_vla_checkpoint(pristine, data):
    fuzz_kind(pristine, "reference", data)


@settings(FUZZ, max_examples=80)
@given(data=st.data())
def test_fuzz_lora_adapted_checkpoint(pristine, data):
    fuzz_kind(pristine, "lora", data)


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_fuzz_capvector_adapted_checkpoint(pristine, data):
    fuzz_kind(pristine, "capvector", data)


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_fuzz_clp_adapted_checkpoint(pristine, data):
    fuzz_kind(pristine, "clp", data)


# ------------------------------------------------------------------------ chosen, by hand
def pad_json(path: Path, size: int) -> None:
    """The same JSON object with ``size`` more bytes (an extra field, which the loaders ignore)."""
    path.write_text(json.dumps({**json.loads(path.read_text()), "pad": " " * size}))


CASES = {
    "header claims 2**63 bytes, hash updated": ("reference", "model.safetensors", "header", "not a readable"),
    "adapter header claims 2**63 bytes, hash updated": ("lora", "adapter_model.safetensors", "header",
                                                        "not a readable"),
    "config.json over the size limit": ("reference", "config.json", "oversize", "bytes allowed"),
    "tokenizer.json over the size limit": ("lora", "base/tokenizer.json", "oversize", "bytes allowed"),
    "adapter config padded to 2 MB": ("capvector", "adapter_config.json", "pad", "loaded"),
    "weights are a link to /dev/zero": ("reference", "model.safetensors", "devzero", "not a regular file"),
    "config.json is a link to /dev/zero": ("clp", "config.json", "devzero", "not a regular file"),
    "empty adapter weights, hash updated": ("lora", "adapter_model.safetensors", "empty", "not a readable"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_chosen_damage(pristine, tmp_path, case):
    kind, name, how, expected = CASES[case]
    root = Path(shutil.copytree(pristine[kind], tmp_path / kind))
    target = root / name
    if how == "header":
        target.write_bytes(struct.pack("<Q", 2**63) + target.read_bytes()[8:])
    elif how == "oversize":
        pad_json(target, MAX_JSON_BYTES)
    elif how == "pad":
        pad_json(target, 2 << 20)
    elif how == "devzero":
        target.unlink()
        target.symlink_to("/dev/zero")
    else:
        target.write_bytes(b"")
    if how in ("header", "empty"):
        rehash(root)
    assert expected in outcome(root)
