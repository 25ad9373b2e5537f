"""The mechanism every adaptation method shares, in the manner of peft's tuners (but small).

* **targets**: ``nn.Linear`` modules chosen by a regular expression on their full name, within the
  chosen module groups (``vision``, ``language``, ``fusion``, ``action_expert``: the first component
  of a parameter name in :class:`policies.vla.model.VLA`; in a transformers backbone, the submodule
  a name passes through, see :data:`GROUP_ALIASES`);
* **inject**: each target is replaced by an :class:`AdapterLayer` that keeps it as ``base_layer`` and
  adds to its output;
* **one rule for what trains**: everything is frozen, then the parameters an adapter layer lists in
  ``adapter_names`` and the parameters whose names a method lists as trainable are released;
* per-group **parameter counts**, the **adapter state** (exactly the trainable tensors plus the
  adapter layers' buffers), **merge** into plain ``nn.Linear`` where a method allows it, and the
  **auxiliary losses** adapter layers leave after each forward (router or load-balance terms).
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn

Tensor = torch.Tensor
GROUPS = ("vision", "language", "fusion", "action_expert")
# attention and MLP projections of the transformers (vision's learned merge conv is not a Linear); out_proj,
# gate_proj, fc1 and fc2 are those of SmolVLM (its SigLIP-style vision tower, its Llama text MLP): the
# reference VLA has no Linear of those names, so its targets are the same with or without them
DEFAULT_TARGETS = r".*\.(q_proj|k_proj|v_proj|o_proj|out_proj|gate_proj|up_proj|down_proj|fc1|fc2)"
# A transformers backbone's names do not start with a group: its group is that of the first alias (in
# this order) among a name's components. For SmolVLM (SmolVLA's backbone): the vision tower and the
# connector that projects its tokens into the text width are vision, the text decoder that runs over
# [image; text] tokens is the fusion trunk, and its token embeddings and LM head are language.
GROUP_ALIASES: tuple[tuple[str, frozenset[str]], ...] = (
    ("vision", frozenset({"vision_model", "connector"})),
    ("language", frozenset({"embed_tokens", "lm_head"})),
    ("fusion", frozenset({"text_model"})),
)


def group_of(name: str) -> str:
    """Module group of a parameter or module name: its first component when that is a group (the
    reference VLA), else the group of its first alias in :data:`GROUP_ALIASES` (a transformers
    backbone), else its first component (in no group)."""
    first = name.split(".", 1)[0]
    if first in GROUPS:
        return first
    parts = set(name.split("."))
    return next((group for group, aliases in GROUP_ALIASES if parts & aliases), first)


def check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise ValueError(f"groups: unknown or empty {list(bad or groups)}; valid groups: {', '.join(GROUPS)}")
    return tuple(groups)


def find_targets(model: nn.Module, pattern: str, groups: Sequence[str]) -> list[str]:
    """Full names of the ``nn.Linear`` modules in ``groups`` whose name fully matches ``pattern``."""
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"targets: {pattern!r} is not a regular expression ({err})") from None
    groups = check_groups(groups)
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and group_of(n) in groups]
    names = [n for n in linear if regex.fullmatch(n)]
    if not names:
        example = ", ".join(linear[:3]) or "none"
        raise ValueError(f"targets: pattern {pattern!r} matches no Linear module in groups {', '.join(groups)} "
                         f"(Linear modules there are named like {example})")
    return names


class AdapterLayer(nn.Module):
    """Wraps a frozen ``nn.Linear`` (``base_layer``) and adds a method's update to its output.

    Subclasses list their trainable children in ``adapter_names``, set ``can_merge`` and implement
    ``forward`` (and ``delta_weight`` when they can merge). ``aux`` holds the differentiable
    auxiliary losses of the last forward pass (cleared by :func:`aux_losses`).
    """

    adapter_names: tuple[str, ...] = ()
    can_merge: bool = False

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.aux: dict[str, Tensor] = {}

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def delta_weight(self) -> Tensor:
        """The update as a dense [out, in] matrix (only for methods with ``can_merge``)."""
        raise ValueError(f"{type(self).__name__} cannot be merged into the base weights")

    def merged_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing what this layer computes (``can_merge`` methods only)."""
        base = self.base_layer
        merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None).to(base.weight)
        with torch.no_grad():
            merged.weight.copy_(self.base_weight() + self.delta_weight())
            if base.bias is not None:
                merged.bias.copy_(base.bias)
        return merged

    def base_weight(self) -> Tensor:
        """The frozen weight the update is added to (GSE replaces it by its residual)."""
        return self.base_layer.weight


def inject(model: nn.Module, names: Sequence[str], factory: Callable[[str, nn.Linear], AdapterLayer]) -> None:
    """Replace each named ``nn.Linear`` by ``factory(name, linear)``."""
    for name in names:
        parent, child = _parent(model, name)
        setattr(parent, child, factory(name, getattr(parent, child)))


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, AdapterLayer]]:
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            yield name, module


def mark_trainable(model: nn.Module, trainable: Sequence[str] = ()) -> None:
    """The one rule: freeze everything, then release adapter children and names matching ``trainable``."""
    for param in model.parameters():
        param.requires_grad_(False)
    for _, layer in adapter_layers(model):
        for child in layer.adapter_names:
            getattr(layer, child).requires_grad_(True)
    regexes = [re.compile(p) for p in trainable]
    for name, param in model.named_parameters():
        if any(r.fullmatch(name) for r in regexes):
            param.requires_grad_(True)


def count_parameters(model: nn.Module) -> dict[str, dict[str, int]]:
    """Trainable and total parameters, per group and overall ("total" key)."""
    counts = {kind: {g: 0 for g in (*GROUPS, "total")} for kind in ("trainable", "total")}
    for name, param in model.named_parameters():
        group = group_of(name) if group_of(name) in GROUPS else "total"
        for kind in ("trainable", "total") if param.requires_grad else ("total",):
            if group != "total":
                counts[kind][group] += param.numel()
            counts[kind]["total"] += param.numel()
    return counts


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """What an adapter checkpoint holds: every trainable parameter and every adapter-layer buffer."""
    state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    for prefix, layer in adapter_layers(model):
        for name, buf in layer.named_buffers():
            if not name.startswith("base_layer."):
                state[f"{prefix}.{name}"] = buf.detach().cpu().contiguous()
    return state


def load_adapter_state(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Copy an adapter state into a model prepared by the same method; one line on any mismatch."""
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    expected = set(adapter_state_dict(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"tensor {missing[0]} missing" if missing else f"unexpected tensor {unexpected[0]}"
        raise ValueError(f"{source}: adapter does not fit this model: {what}")
    with torch.no_grad():
        for name, value in state.items():
            if tuple(own[name].shape) != tuple(value.shape):
                raise ValueError(f"{source}: adapter does not fit this model: tensor {name} has shape "
                                 f"{list(value.shape)}, the model expects {list(own[name].shape)}")
            own[name].copy_(value)


def merge_adapters(model: nn.Module) -> nn.Module:
    """Replace every adapter layer by its merged ``nn.Linear`` (in place); error if one cannot merge."""
    layers = list(adapter_layers(model))
    for name, layer in layers:
        if not layer.can_merge:
            raise ValueError(f"{type(layer).__name__} at {name} cannot be merged: its update depends on the input")
    for name, layer in layers:
        parent, child = _parent(model, name)
        setattr(parent, child, layer.merged_linear())
    return model


def aux_losses(model: nn.Module) -> dict[str, Tensor]:
    """Sum of each auxiliary loss over adapter layers (as left by the last forward), then cleared."""
    total: dict[str, Tensor] = {}
    for _, layer in adapter_layers(model):
        for key, value in layer.aux.items():
            total[key] = total[key] + value if key in total else value
        layer.aux = {}
    return total


def fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) over the names and bytes of a plain model's state: identifies a base.

    Computed before any method changes the model, stored with the adapter, compared on load."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child
