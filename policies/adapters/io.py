"""Adapters on disk, and adapted checkpoints that ``simeval run --policy DIR`` loads like any other.

An adapter directory holds ``adapter_config.json`` + ``adapter_model.safetensors`` in peft's layout
(tensor keys ``base_model.model.<parameter name>``; for LoRA the config is peft's own, so
``peft.PeftModel.from_pretrained`` loads it). Our own fields sit under the ``simeval`` key: the
method, its options, and the fingerprint of the base the adapter was trained on, checked on load.

An adapted checkpoint is an adapter directory whose ``config.json`` says ``policy_type:
simeval_adapted`` and which keeps a copy of its base checkpoint in ``base/`` (a few MB), so that the
directory is self-contained and cannot be paired with the wrong base by accident.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from policies.adapters.base import adapter_state_dict, fingerprint, load_adapter_state
from policies.adapters.config import AdapterConfig
from policies.adapters.registry import Method, get_method

CONFIG_FILE, WEIGHTS_FILE, PREFIX = "adapter_config.json", "adapter_model.safetensors", "base_model.model."
POLICY_TYPE, FORMAT_VERSION = "simeval_adapted", 1


def save_adapter(directory: Path | str, method: Method, config: AdapterConfig, model: nn.Module,
                 base_fingerprint: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the adapter (trainable tensors and adapter buffers) and its config into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {PREFIX + k: v for k, v in adapter_state_dict(model).items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "method": method.name})
    meta = method.peft_config(config, model) or {"peft_type": None}
    meta["simeval"] = {"method": method.name, "options": config.to_dict(), "base_fingerprint": base_fingerprint,
                       "format_version": FORMAT_VERSION, **(extra or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def read_adapter_config(directory: Path | str) -> dict[str, Any]:
    """The ``simeval`` section of an adapter's config; one line naming the file on any problem."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"{path}: missing adapter config")
    try:
        meta = json.loads(path.read_text())
        section = meta["simeval"]
        section["method"], section["options"], section["base_fingerprint"]  # noqa: B018 (presence check)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a simeval adapter config ({type(err).__name__}: {err})") from None
    return section


def load_adapter(model: nn.Module, directory: Path | str, **context: Any) -> tuple[nn.Module, Method, AdapterConfig]:
    """Apply the saved method to a plain base ``model`` and load the adapter's tensors into it.

    Refuses an adapter trained on another base (its fingerprint differs from this model's)."""
    directory = Path(directory)
    section = read_adapter_config(directory)
    base = fingerprint(model)
    if section["base_fingerprint"] != base:
        raise ValueError(f"{directory / CONFIG_FILE}: adapter was trained on base {section['base_fingerprint']}, "
                         f"this model is base {base}")
    method = get_method(section["method"])
    config = method.config(section["options"], str(directory / CONFIG_FILE))
    model = method.apply(model, config, adapter_dir=directory, **context)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ValueError(f"{weights}: missing adapter weights")
    try:
        state = load_safetensors(weights.read_bytes())
    except Exception as err:  # malformed header or truncated file
        raise ValueError(f"{weights}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    bad = [k for k in state if not k.startswith(PREFIX)]
    if bad:
        raise ValueError(f"{weights}: tensor {bad[0]} lacks the {PREFIX!r} prefix of peft's layout")
    load_adapter_state(model, {k[len(PREFIX):]: v for k, v in state.items()}, str(weights))
    return model, method, config


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
    model = load_checkpoint(directory / "base").model
    model, method, config = load_adapter(model, directory)
    return model.to(device).eval(), method, config


def load_adapted_policy(directory: Path | str, device: str = "cpu"):
    """The harness policy of an adapted checkpoint (the loader registered for ``simeval_adapted``)."""
    from policies.vla.policy import VLAPolicy

    model, _, _ = load_adapted(directory, device)
    return VLAPolicy(model, device=device)
