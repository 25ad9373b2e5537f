"""VLA checkpoints: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``, never pickle.

``config.json`` holds the policy type, the model config, the SHA-256 of the weights file and any
``extra`` the trainer wants kept (step, data set, state statistics' origin ...). Loading checks
every step and fails with a one-line ``ValueError`` naming the file or field, so that a bad
checkpoint is a clear message in ``simeval run``, not a traceback from deep inside torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import save

from policies.integrity import load_safetensors, read_json, sha256, short, verified_bytes
from policies.vla.config import VLAConfig
from policies.vla.model import VLA
from policies.vla.tokenizer import InstructionTokenizer, load_tokenizer

POLICY_TYPE = "simeval_vla"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class Checkpoint(NamedTuple):
    model: VLA  # in eval mode, with its tokenizer attached
    config: VLAConfig
    tokenizer: InstructionTokenizer
    extra: dict[str, Any]


def save_checkpoint(directory: Path | str, model: VLA, config: VLAConfig, tokenizer: InstructionTokenizer,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write the three files into ``directory`` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} words but config vocab_size={config.vocab_size}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    weights.write_bytes(save(state, metadata={"policy_type": POLICY_TYPE}))  # an OSError names the file
    tokenizer.save(directory)
    meta = {"policy_type": POLICY_TYPE, "format_version": FORMAT_VERSION, "config": config.to_dict(),
            "weights_sha256": sha256(weights.read_bytes()), "extra": dict(extra or {})}
    try:
        text = json.dumps(meta, indent=2)
    except TypeError as err:
        raise ValueError(f"checkpoint extra must be JSON-serialisable: {err}") from None
    (directory / CONFIG_FILE).write_text(text + "\n")
    return directory


def load_checkpoint(directory: Path | str, device: str | torch.device = "cpu") -> Checkpoint:
    """The model (eval mode), config, tokenizer and extra saved by ``save_checkpoint``.

    The weights are hashed and parsed from the same bytes, and checked against a model built on the
    meta device (no memory) before the real one is built: a config claiming huge sizes is refused,
    not allocated."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    meta = read_json(config_path)
    if meta.get("policy_type") != POLICY_TYPE:
        raise ValueError(f"{config_path}: policy_type {short(meta.get('policy_type'))} is not {POLICY_TYPE!r}")
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(f"{config_path}: field format_version={short(version)}: this loader reads {FORMAT_VERSION}")
    try:
        config = VLAConfig.from_dict(meta.get("config"))
    except ValueError as err:
        raise ValueError(f"{config_path}: field config: {err}") from None
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"{config_path}: field extra must be an object")

    data = verified_bytes(weights_path, meta.get("weights_sha256"), config_path, "weights_sha256")
    state = load_safetensors(data, weights_path)
    tokenizer = load_tokenizer(directory)
    with torch.device("meta"):
        shapes = _build(config, tokenizer, directory).state_dict()
    _check_tensors(weights_path, shapes, state)
    model = _build(config, tokenizer, directory)
    model.load_state_dict(state, strict=True)
    return Checkpoint(model.to(device).eval(), config, tokenizer, extra)


def _build(config: VLAConfig, tokenizer: InstructionTokenizer, directory: Path) -> VLA:
    try:
        return VLA(config, tokenizer)
    except ValueError as err:  # the tokenizer does not fit the config
        raise ValueError(f"{directory / 'tokenizer.json'}: {err}") from None


def _check_tensors(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    """One line naming the first tensor that the config does not predict (name, shape or dtype)."""
    for name, ref in expected.items():
        if name not in found:
            raise ValueError(f"{path}: weights do not match config: tensor {name} {list(ref.shape)} missing")
        if tuple(found[name].shape) != tuple(ref.shape):
            raise ValueError(f"{path}: weights do not match config: tensor {name} has shape "
                             f"{list(found[name].shape)}, config expects {list(ref.shape)}")
        if found[name].dtype != ref.dtype:
            raise ValueError(f"{path}: weights do not match config: tensor {name} has dtype {found[name].dtype}, "
                             f"expected {ref.dtype}")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise ValueError(f"{path}: weights do not match config: unexpected tensor {short(unexpected[0])} "
                         f"({len(unexpected)} unexpected in all)")
