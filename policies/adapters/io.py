"""Adapters on disk, and adapted checkpoints that ``simeval run --policy DIR`` loads like any other.

An adapter directory holds ``adapter_config.json`` + ``adapter_model.safetensors`` in peft's layout
(tensor keys ``base_model.model.<parameter name>``; for LoRA the config is peft's own, so
``peft.PeftModel.from_pretrained`` loads it). Our own fields sit under the ``simeval`` key: the
method, its options, and the fingerprint of the base the adapter was trained on, checked on load.

An adapted checkpoint is an adapter directory whose ``config.json`` says ``policy_type:
simeval_adapted`` and which keeps a copy of its base checkpoint in ``base/`` (a few MB), so that the
directory is self-contained and cannot be paired with the wrong base by accident.

``simeval.sha256`` records the SHA-256 of every weight file beside the adapter config (the adapter,
CapVector's capability vector); loading reads each through ``policies.integrity.Manifest``, which
hashes and parses the same bytes, and refuses a modified file or a config without the record.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch.nn as nn
from safetensors.torch import save

from policies.adapters.base import adapter_state_dict, fingerprint, load_adapter_state
from policies.adapters.config import AdapterConfig
from policies.adapters.registry import Method, get_method
from policies.integrity import Manifest, first_line, load_safetensors, read_json, record, short

CONFIG_FILE, WEIGHTS_FILE, PREFIX = "adapter_config.json", "adapter_model.safetensors", "base_model.model."
POLICY_TYPE, FORMAT_VERSION = "simeval_adapted", 1
HASH_FIELD = "sha256"  # simeval.sha256: {file name: SHA-256} of the weight files beside the config


def save_adapter(directory: Path | str, method: Method, config: AdapterConfig, model: nn.Module,
                 base_fingerprint: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the adapter (trainable tensors and adapter buffers) and its config into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {PREFIX + k: v for k, v in adapter_state_dict(model).items()}
    # bytes written by Python, so that a read-only or full disk is an OSError naming the file
    (directory / WEIGHTS_FILE).write_bytes(save(state, metadata={"format": "pt", "method": method.name}))
    meta = method.peft_config(config, model) or {"peft_type": None}
    weight_files = [p.name for p in directory.glob("*.safetensors") if p.is_file()]  # the adapter, a vector
    meta["simeval"] = {"method": method.name, "options": config.to_dict(), "base_fingerprint": base_fingerprint,
                       "format_version": FORMAT_VERSION, **(extra or {}),
                       HASH_FIELD: record(directory, weight_files)}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def read_adapter_config(directory: Path | str) -> dict[str, Any]:
    """The ``simeval`` section of an adapter's config; one line naming the file on any problem."""
    path = Path(directory) / CONFIG_FILE
    section = read_json(path, "adapter config").get("simeval")
    if not isinstance(section, dict):
        raise ValueError(f"{path}: not a simeval adapter config (field simeval missing or not an object)")
    checks = {"method": lambda v: isinstance(v, str), "options": lambda v: isinstance(v, dict),
              "base_fingerprint": lambda v: isinstance(v, str),
              "format_version": lambda v: type(v) is int and v == FORMAT_VERSION}
    for field, ok in checks.items():
        if field not in section:
            raise ValueError(f"{path}: not a simeval adapter config (field simeval.{field} missing)")
        if not ok(section[field]):
            raise ValueError(f"{path}: field simeval.{field}={short(section[field])} is invalid")
    return section


def load_adapter(model: nn.Module, directory: Path | str, **context: Any) -> tuple[nn.Module, Method, AdapterConfig]:
    """Apply the saved method to a plain base ``model`` and load the adapter's tensors into it.

    Refuses an adapter trained on another base (its fingerprint differs from this model's), and any
    weight file whose bytes do not hash to the value recorded in ``simeval.sha256``."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    section = read_adapter_config(directory)
    files = Manifest(directory, section.get(HASH_FIELD), config_path, f"simeval.{HASH_FIELD}")
    files.check()
    base = fingerprint(model)
    if section["base_fingerprint"] != base:
        raise ValueError(f"{config_path}: adapter was trained on base {short(section['base_fingerprint'])}, "
                         f"this model is base {base}")
    weights = directory / WEIGHTS_FILE
    state = load_safetensors(files.read(WEIGHTS_FILE, "adapter weights"), weights)
    bad = [k for k in state if not k.startswith(PREFIX)]
    if bad:
        raise ValueError(f"{weights}: tensor {short(bad[0])} lacks the {PREFIX!r} prefix of peft's layout")
    with _naming(config_path):  # options from the JSON that are invalid or do not fit this model
        method = get_method(section["method"])
        config = method.config(section["options"], str(config_path))
        model = method.apply(model, config, adapter_dir=directory, files=files, **context)
    state = {k[len(PREFIX):]: v for k, v in state.items()}
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    wrong = [k for k, v in state.items() if k in own and v.dtype != own[k].dtype]
    if wrong:
        raise ValueError(f"{weights}: adapter does not fit this model: tensor {wrong[0]} has dtype "
                         f"{state[wrong[0]].dtype}, the model expects {own[wrong[0]].dtype}")
    try:
        load_adapter_state(model, state, str(weights))
    except ValueError as err:
        raise ValueError(first_line(err)) from None
    return model, method, config


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A ValueError inside names ``path`` (unless it names a file already) and is one short line."""
    try:
        yield
    except ValueError as err:
        message = first_line(err)
        raise ValueError(message if str(path.parent) in message else f"{path}: {message}") from None


def save_adapted(directory: Path | str, base_dir: Path | str, method: Method, config: AdapterConfig,
                 model: nn.Module, base_fingerprint: str, extra: dict[str, Any] | None = None) -> Path:
    """An adapted checkpoint: the adapter, a copy of its base in ``base/``, and a ``config.json``."""
    directory = Path(directory)
    save_adapter(directory, method, config, model, base_fingerprint, extra)
    if Path(base_dir).resolve() != (directory / "base").resolve():
        shutil.rmtree(directory / "base", ignore_errors=True)
        shutil.copytree(base_dir, directory / "base", ignore=shutil.ignore_patterns("optimizer.safetensors",
                                                                                   "train_state.json"))
    meta = {"policy_type": POLICY_TYPE, "format_version": FORMAT_VERSION, "method": method.name, "base": "base"}
    (directory / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_adapted(directory: Path | str, device: str = "cpu") -> tuple[nn.Module, Method, AdapterConfig]:
    """The base from ``directory/base`` with the adapter applied (eval mode, on ``device``)."""
    from policies.vla.checkpoint import load_checkpoint

    directory = Path(directory)
    meta = read_json(directory / "config.json")
    if type(meta.get("format_version")) is not int or meta["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{directory / 'config.json'}: field format_version={short(meta.get('format_version'))}: "
                         f"this loader reads {FORMAT_VERSION}")
    model = load_checkpoint(directory / "base").model
    model, method, config = load_adapter(model, directory)
    return model.to(device).eval(), method, config


def load_adapted_policy(directory: Path | str, device: str = "cpu"):
    """The harness policy of an adapted checkpoint (the loader registered for ``simeval_adapted``)."""
    from policies.vla.policy import VLAPolicy

    model, _, _ = load_adapted(directory, device)
    return VLAPolicy(model, device=device)
