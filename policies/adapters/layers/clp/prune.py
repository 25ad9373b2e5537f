"""CKA-guided layer pruning (the paper's method): plan from similarities, prune, fine-tune normally.

Plan, per group of L blocks with similarities s_0..s_{L-1} (``cka.layer_similarities``):
1. contiguous runs of blocks with s_l >= tau form redundancy blocks;
2. each run's first block is kept (it stands for the run); the others are candidates;
3. candidates are removed most redundant first (highest s, then lowest index) until floor(fraction L)
   are gone (the paper caps pruning at 50% of depth, so fraction lies in (0, 0.5]); never all L.
tau defaults to 0.9: a block whose output keeps CKA >= 0.9 with its input changes the token
geometry by less than what adjacent blocks of trained transformers typically do (0.8-0.99).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch.nn as nn

from policies.adapters.base import mark_trainable
from policies.adapters.config import AdapterConfig, require
from policies.adapters.layers.clp.cka import layer_similarities
from policies.adapters.layers.common import check_layer_groups, layer_lists, replace_layers
from policies.vla.config import VLAConfig

CAN_MERGE = False
DEPTH_FIELDS = {"vision": "vision_layers", "fusion": "n_layers", "action_expert": "expert_layers"}


@dataclass
class Config(AdapterConfig):
    tau: float = 0.9  # CKA threshold of a redundant block
    fraction: float = 0.5  # at most this share of each group's blocks is removed
    groups: tuple[str, ...] = ("fusion", "action_expert")  # residual stacks pruned by default
    # group -> removed block indices (of the unpruned model); filled by apply, so reloading needs no calibration
    removed: dict[str, list[int]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.groups = check_layer_groups(self.groups)
        require(isinstance(self.tau, (int, float)) and 0.0 <= self.tau <= 1.0, "tau", "[0, 1]", self.tau)
        require(isinstance(self.fraction, (int, float)) and 0.0 < self.fraction <= 0.5,
                "fraction", "(0, 0.5]", self.fraction)
        if self.removed is not None:
            ok = isinstance(self.removed, dict) and all(
                g in self.groups and isinstance(v, (list, tuple)) and all(isinstance(i, int) for i in v)
                for g, v in self.removed.items())
            require(ok, "removed", f"a mapping from groups among {list(self.groups)} to block indices", self.removed)
            self.removed = {g: sorted(set(v)) for g, v in self.removed.items()}


def plan_pruning(similarities: Sequence[float], tau: float, fraction: float) -> list[int]:
    """Indices of the blocks to remove (sorted), from s_l = CKA(H_{l-1}, H_l) of one group."""
    depth = len(similarities)
    budget = min(math.floor(fraction * depth + 1e-9), depth - 1)
    # inside a run of s >= tau but not its first block
    candidates = [i for i, s in enumerate(similarities) if s >= tau and i > 0 and similarities[i - 1] >= tau]
    ranked = sorted(candidates, key=lambda i: (-similarities[i], i))
    return sorted(ranked[:max(budget, 0)])


def apply(model: nn.Module, config: Config, calibration: dict[str, Any] | None = None, **_: Any) -> nn.Module:
    """Prune ``config.removed`` (planned from ``calibration`` when unset, and stored), then train all."""
    if config.removed is None:
        if calibration is None:
            raise ValueError("option removed is unset and no calibration batch was given: "
                             "pass apply(model, config, calibration=batch) or removed={group: [indices]}")
        similarities = layer_similarities(model, calibration, config.groups)
        config.removed = {g: plan_pruning(s, config.tau, config.fraction) for g, s in similarities.items()}
    lists = layer_lists(model, config.groups)
    keep = {}
    for group, removed in config.removed.items():  # check every group before changing any
        depth = len(lists[group][1])
        require(all(0 <= i < depth for i in removed) and len(removed) < depth, "removed",
                f"fewer than {depth} distinct indices in 0..{depth - 1} for group {group}", config.removed)
        keep[group] = [i for i in range(depth) if i not in removed]
    for group, kept in keep.items():
        replace_layers(model, group, kept)
    mark_trainable(model, (".*",))  # the pruned model is fine-tuned normally
    return model


def pruned_config(config: VLAConfig, removed: dict[str, list[int]]) -> VLAConfig:
    """The VLA config whose fresh model has the pruned model's tensors, to save it as a plain checkpoint.

    ``apply`` leaves ``model.config`` as the base's: forward only iterates the ModuleLists."""
    depths = {DEPTH_FIELDS[g]: getattr(config, DEPTH_FIELDS[g]) - len(v) for g, v in removed.items()}
    return dataclasses.replace(config, **depths)
