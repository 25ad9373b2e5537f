"""Checkpoint integrity: every weight file of every checkpoint kind is SHA-256-checked on load.

A flipped byte in the base, a LoRA adapter, a CapVector capability vector or a CLP-pruned model
(stored as an adapter, or as a plain checkpoint) is refused with one line naming the file; so is a
checkpoint without the recorded hash, and a config.json that is not a JSON object.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors

from policies.adapters import get_method, save_adapted
from policies.adapters.base import fingerprint
from policies.adapters.capvector import save_vector
from policies.adapters.layers.clp import pruned_config
from policies.finetune import VECTOR_FILE
from policies.loader import load_policy
from policies.vla import VLA, VLAConfig, load_tokenizer, save_checkpoint
from policies.vla.policy import VLAPolicy
from simeval.cli import main

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
TINY = dict(image_size=32, stem_channels=(8, 16), feature_grid=4, d_model=32, n_heads=2, n_layers=4,
            vision_layers=1, expert_layers=2, chunk=4, flow_steps=4)
KINDS = ("vla", "lora", "capvector", "clp", "clp_plain")


def calibration(n: int = 4) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"agentview": torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8),
            "wrist": torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8),
            "state": torch.randn(n, 8, generator=g), "instruction": ["put the red cube in the bowl"] * n,
            "actions": torch.rand(n, 4, 7, generator=g) * 2 - 1}


def build_checkpoints(root: Path) -> dict[str, Path]:
    """One tiny checkpoint of each kind under ``root``, saved as ``simeval finetune`` would save them."""
    torch.manual_seed(0)
    tokenizer = load_tokenizer(REFERENCE)
    base = VLA(VLAConfig(**TINY), tokenizer).eval()
    out = {"vla": save_checkpoint(root / "vla", base, base.config, tokenizer)}
    for kind in ("lora", "capvector", "clp"):
        method, directory = get_method(kind), root / kind
        directory.mkdir()
        options = {"lora": {"rank": 2}, "capvector": {"vector": VECTOR_FILE, "alpha": 1.0}, "clp": {}}[kind]
        if kind == "capvector":  # the vector travels inside the checkpoint, as finetune stores it
            gen = torch.Generator().manual_seed(1)
            save_vector({n: 0.05 * torch.randn(p.shape, generator=gen) for n, p in base.named_parameters()},
                        directory / VECTOR_FILE)
        config = method.config(options)
        model = method.apply(copy.deepcopy(base), config, adapter_dir=directory, calibration=calibration())
        if kind == "lora":  # B starts at zero: give the adapter an effect
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if "lora_B" in name:
                        param.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
        out[kind] = save_adapted(directory, out["vla"], method, config, model, fingerprint(base))
        if kind == "clp":  # the pruned model as a plain checkpoint too
            assert any(config.removed.values())
            plain = pruned_config(base.config, config.removed)
            out["clp_plain"] = save_checkpoint(root / "clp_plain", model, plain, tokenizer)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    return build_checkpoints(tmp_path_factory.mktemp("kinds"))


@pytest.fixture
def ckpt(built, tmp_path):
    def copy_of(kind: str) -> Path:
        return Path(shutil.copytree(built[kind], tmp_path / kind))
    return copy_of


def refused(spec: Path | str, *words: str) -> str:
    with pytest.raises(ValueError) as err:
        load_policy(str(spec))
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def flip_last_byte(path: Path) -> None:
    """A silent corruption: the file still parses, one weight differs."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    load_safetensors(bytes(data))  # still a readable safetensors file: only the hash can tell


@pytest.mark.parametrize("kind, name", [
    ("vla", "model.safetensors"),
    ("lora", "adapter_model.safetensors"),
    ("lora", "base/model.safetensors"),
    ("capvector", VECTOR_FILE),
    ("capvector", "adapter_model.safetensors"),
    ("clp", "adapter_model.safetensors"),
    ("clp_plain", "model.safetensors"),
])
def test_a_flipped_byte_is_refused(ckpt, kind, name):
    directory = ckpt(kind)
    assert isinstance(load_policy(str(directory)), VLAPolicy)  # intact, it loads
    flip_last_byte(directory / name)
    refused(directory, str(directory / name), "modified or corrupted")


def test_the_cli_refuses_a_corrupted_checkpoint_in_one_line(ckpt, tmp_path, capsys):
    directory = ckpt("lora")
    flip_last_byte(directory / "adapter_model.safetensors")
    out = tmp_path / "run"
    assert main(["run", "--policy", str(directory), "--suite", "smoke", "--episodes", "1", "--tasks",
                 "PutCubeOnPlate", "--robot", "Panda", "--out", str(out), "--video", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("simeval: error: ")
    assert "adapter_model.safetensors" in err and "modified or corrupted" in err and not out.exists()


def edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("kind", ["lora", "capvector", "clp"])
def test_an_adapter_saved_without_hashes_is_refused(ckpt, kind):
    directory = ckpt(kind)
    edit_json(directory / "adapter_config.json", lambda m: m["simeval"].pop("sha256"))
    refused(directory, "adapter_config.json", "field simeval.sha256 missing")


def test_a_vla_checkpoint_without_its_hash_is_refused(ckpt):
    directory = ckpt("vla")
    edit_json(directory / "config.json", lambda m: m.pop("weights_sha256"))
    refused(directory, "config.json", "field weights_sha256 missing")


def test_an_unrecorded_or_outside_capability_vector_is_refused(built, ckpt, tmp_path):
    directory = ckpt("capvector")
    edit_json(directory / "adapter_config.json", lambda m: m["simeval"]["sha256"].pop(VECTOR_FILE))
    refused(directory, "simeval.sha256 records no file 'capability_vector.safetensors'")
    directory = ckpt("clp")  # any adapter: point a capvector config at a vector outside the checkpoint
    outside = shutil.copy(built["capvector"] / VECTOR_FILE, tmp_path / "outside.safetensors")
    edit_json(directory / "adapter_config.json", lambda m: m["simeval"].update(
        method="capvector", options={"vector": str(outside)}))
    refused(directory, "records no file", "outside.safetensors")


def test_recorded_hashes_are_those_of_the_files(built):
    for kind in ("lora", "capvector", "clp"):
        meta = json.loads((built[kind] / "adapter_config.json").read_text())
        hashes = meta["simeval"]["sha256"]
        assert set(hashes) == {p.name for p in built[kind].glob("*.safetensors")}
        assert all(hashlib.sha256((built[kind] / n).read_bytes()).hexdigest() == h for n, h in hashes.items())
    assert set(json.loads((built["capvector"] / "adapter_config.json").read_text())["simeval"]["sha256"]) == {
        "adapter_model.safetensors", VECTOR_FILE}


def test_the_committed_reference_still_loads_unchanged():
    before = {p.name: p.read_bytes() for p in REFERENCE.iterdir()}
    policy = load_policy(str(REFERENCE))
    assert isinstance(policy, VLAPolicy)
    assert {p.name: p.read_bytes() for p in REFERENCE.iterdir()} == before
    rng = np.random.default_rng(0)
    from policies.base import Batch

    obs = Batch(slots=[0], state=rng.normal(size=(1, 8)).astype(np.float32), instruction=["pick up the cube"],
                agentview=rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8),
                wrist=rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8))
    assert np.isfinite(policy.act(obs)).all()


# ------------------------------------------------------------------ config.json that is no object
@pytest.mark.parametrize("content, words", [
    (b"[]", "expected a JSON object, got an array"),
    (b"3", "expected a JSON object, got a number"),
    (b'"x"', "expected a JSON object, got a string"),
    (b"null", "expected a JSON object, got null"),
    (b'{"policy_type": "simeval_vla"', "unreadable JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 100_000, "unreadable JSON"),  # deep nesting: RecursionError inside json
    (b'{"policy_type": ["simeval_vla"]}', "field policy_type=['simeval_vla'] is not a string"),
    (b'{"policy_type": "x' + b"y" * 100_000 + b'"}', "unknown policy_type"),
])
def test_a_config_that_is_not_a_checkpoint_object(tmp_path, content, words):
    (tmp_path / "config.json").write_bytes(content)
    message = refused(tmp_path, str(tmp_path / "config.json"), words)
    assert len(message) < 500


def test_a_directory_named_config_json(tmp_path):
    (tmp_path / "config.json").mkdir()
    refused(tmp_path, "config.json", "not a regular file")
