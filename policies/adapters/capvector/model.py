"""Apply CapVector: theta_meta = theta_pt + alpha gamma, then full fine-tuning with L_orth.

The frozen start point theta_meta and the vector are held in a plain Python attribute
(``model.capvector``), not in the state dict: they are not saved with the adapter (the adapter
state is the whole fine-tuned model; reapplying the method rebuilds them from the vector file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from policies.adapters.base import adapter_layers, group_of, mark_trainable
from policies.adapters.capvector.config import Config
from policies.adapters.capvector.orthogonal import lora_orthogonality_loss, orthogonality_loss
from policies.adapters.capvector.vector import check_vector, load_vector, merge_vector, parse_vector, plain_parameters
from policies.adapters.config import require
from policies.integrity import Manifest

Tensor = torch.Tensor
ATTRIBUTE = "capvector"


@dataclass
class CapState:
    gamma: dict[str, Tensor]  # the vector's tensors in the chosen groups, on the model's device
    start: dict[str, Tensor]  # theta_meta, detached copies: delta' = theta - start


def apply(model: nn.Module, config: Config, adapter_dir: str | Path | None = None, files: Manifest | None = None,
          **_: Any) -> nn.Module:
    """A relative ``vector`` path is looked up in ``adapter_dir`` first (adapted checkpoints carry theirs).

    When a saved adapter is loaded (``files``: its verified files), the vector must be one of them:
    its bytes are checked against the hash recorded at save time, then parsed."""
    require(config.vector != "", "vector", "the path of a saved capability vector (required)", config.vector)
    if files is not None:
        path = files.directory / config.vector
        gamma = parse_vector(files.read(config.vector, "capability vector"), path)
    else:
        path = Path(config.vector)
        if not path.is_absolute() and adapter_dir is not None and (Path(adapter_dir) / path).is_file():
            path = Path(adapter_dir) / path
        gamma = load_vector(path)
    check_vector(model, gamma, source=str(path))
    params = plain_parameters(model)
    gamma = {n: g.to(params[n]) for n, g in gamma.items() if group_of(n) in config.groups}
    merge_vector(model, gamma, config.alpha)
    start = {n: params[n].detach().clone() for n in gamma}
    setattr(model, ATTRIBUTE, CapState(gamma, start))  # a plain attribute: never in the state dict
    mark_trainable(model, (".*",))
    return model


def regularizer(model: nn.Module, config: Config) -> dict[str, Tensor]:
    """{"orth": L_orth}: the full form on every shared tensor, plus the O-LoRA form if LoRA was added."""
    state: CapState | None = getattr(model, ATTRIBUTE, None)
    if state is None:
        raise ValueError("capvector regularizer: apply the method to this model first")
    loss = orthogonality_loss(model, state.gamma, state.start, config.lam)
    if any(hasattr(layer, "lora_A") for _, layer in adapter_layers(model)):
        loss = loss + lora_orthogonality_loss(model, state.gamma, config.lam)
    return {"orth": loss}
