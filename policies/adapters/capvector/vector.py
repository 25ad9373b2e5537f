"""The capability vector gamma = theta_ao - theta_ft, its merge theta_meta = theta_pt + alpha gamma,
and its file (safetensors, one tensor per parameter name).

Tensor names are the plain model's parameter names; on a model whose Linear layers were wrapped by
an adapter the ``.base_layer`` component is skipped, so a vector extracted from plain fine-tunes
still finds ``fusion.layers.0.attn.q_proj.weight`` under ``...q_proj.base_layer.weight``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
from safetensors.torch import save

from policies.integrity import first_line, load_safetensors, short

Tensor = torch.Tensor
# buffers that fine-tuning sets rather than learns: never part of a vector
EXCLUDED = ("fusion.state_mean", "fusion.state_std")
FORMAT = "capvector"


def plain_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters by their plain-model name (without adapter ``.base_layer`` components)."""
    return {name.replace(".base_layer.", "."): p for name, p in model.named_parameters()}


def capability_vector(theta_ft: Mapping[str, Tensor], theta_ao: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """gamma = theta_ao - theta_ft on the floating-point tensors both hold (buffers in EXCLUDED left out).

    Tensors only one side has (the auxiliary head of the ao run) are skipped; a shape mismatch is an error."""
    gamma = {}
    for name in sorted(set(theta_ft) & set(theta_ao)):
        ft, ao = theta_ft[name], theta_ao[name]
        if name in EXCLUDED or not (ft.is_floating_point() and ao.is_floating_point()):
            continue
        if ft.shape != ao.shape:
            raise ValueError(f"capability_vector: tensor {name} has shape {list(ao.shape)} in theta_ao "
                             f"but {list(ft.shape)} in theta_ft: not fine-tunes of the same model")
        gamma[name] = (ao.detach().float() - ft.detach().float()).cpu()
    if not gamma:
        raise ValueError("capability_vector: theta_ft and theta_ao share no floating-point tensor")
    return gamma


def check_vector(model: nn.Module, gamma: Mapping[str, Tensor], source: str = "vector") -> None:
    """One line naming the first tensor of ``gamma`` that the model has not, or not in that shape."""
    params = plain_parameters(model)
    for name, value in gamma.items():
        if name not in params:
            raise ValueError(f"{source}: capability vector does not fit this model: it has no parameter {name}")
        if tuple(params[name].shape) != tuple(value.shape):
            raise ValueError(f"{source}: capability vector does not fit this model: tensor {name} has shape "
                             f"{list(value.shape)}, the model expects {list(params[name].shape)}")


@torch.no_grad()
def merge_vector(model: nn.Module, gamma: Mapping[str, Tensor], alpha: float | Mapping[str, float]) -> nn.Module:
    """theta += alpha gamma in place (the model holds theta_pt). ``alpha`` is one number or per tensor name;
    with a mapping, tensors it does not name are not merged, and a name outside ``gamma`` is an error."""
    check_vector(model, gamma)
    if isinstance(alpha, Mapping):
        unknown = sorted(set(alpha) - set(gamma))
        if unknown:
            raise ValueError(f"alpha: names tensor {unknown[0]}, which the capability vector does not hold")
    params = plain_parameters(model)
    for name, value in gamma.items():
        scale = alpha.get(name, 0.0) if isinstance(alpha, Mapping) else alpha
        params[name].add_(value.to(params[name]), alpha=float(scale))
    return model


def save_vector(gamma: Mapping[str, Tensor], path: Path | str) -> None:
    """Write the vector as safetensors (argument order as ``safetensors.torch.save_file``)."""
    state = {n: t.detach().cpu().contiguous() for n, t in gamma.items()}
    Path(path).write_bytes(save(state, metadata={"format": FORMAT}))  # an OSError names the file


def load_vector(path: Path | str) -> dict[str, Tensor]:
    """The vector saved by ``save_vector``; one line naming option ``vector`` if it cannot be read."""
    try:
        found = bool(str(path)) and Path(path).is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL byte
        found = False
    if not found:
        raise ValueError(f"option vector={short(str(path))}: no such file (a capability vector saved by save_vector)")
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"option vector={short(str(path))}: cannot read it ({first_line(err)})") from None
    return parse_vector(data, Path(path))


def parse_vector(data: bytes, path: Path) -> dict[str, Tensor]:
    """A vector from the bytes of its file (hashed by the caller when it comes from a checkpoint)."""
    gamma = load_safetensors(data, path)
    bad = [n for n, t in gamma.items() if not t.is_floating_point()]
    if bad:
        raise ValueError(f"{path}: capability vector tensor {short(bad[0])} is {gamma[bad[0]].dtype}, "
                         f"not floating point")
    return gamma
