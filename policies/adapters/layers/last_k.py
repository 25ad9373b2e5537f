"""Last-k: only the last k transformer blocks of each chosen group train (plus what follows them).

What is released, per group (see ``common``): blocks ``L-k .. L-1`` of its ModuleList, and the
parameters applied after its last block, which would otherwise be frozen between trained blocks and
the loss: ``vision.camera_embed``; ``fusion.norm``; ``action_expert.norm`` and ``action_expert.head``
(transformers' SmolVLM: the vision tower's ``post_layernorm`` and the ``connector``; the text ``norm``).
The conv stages are not counted as layers (they change resolution); ``config.trainable`` adds more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from policies.adapters.base import mark_trainable
from policies.adapters.config import AdapterConfig, require
from policies.adapters.layers.common import LAYER_GROUPS, TAILS, check_layer_groups, layer_lists

CAN_MERGE = False


@dataclass
class Config(AdapterConfig):
    layers: int = 1  # k: blocks trained at the end of each chosen group
    groups: tuple[str, ...] = LAYER_GROUPS  # language has no layers

    def __post_init__(self) -> None:
        super().__post_init__()
        self.groups = check_layer_groups(self.groups)
        require(isinstance(self.layers, int) and not isinstance(self.layers, bool) and self.layers >= 1,
                "layers", "an integer >= 1", self.layers)


def trainable_regexes(model: nn.Module, config: Config) -> tuple[str, ...]:
    """Parameter-name regexes of the last ``config.layers`` blocks and the tails of each group."""
    lists = layer_lists(model, config.groups)
    depth, shallowest = min((len(layers), group) for group, (_, layers) in lists.items())
    require(config.layers <= depth, "layers", f"1..{depth} (the depth of group {shallowest})", config.layers)
    regexes: list[str] = []
    for group, (prefix, layers) in lists.items():
        last = range(len(layers) - config.layers, len(layers))
        regexes.append(rf"{re.escape(prefix)}\.({'|'.join(map(str, last))})\..*")  # e.g. fusion\.layers\.(2|3)\..*
        regexes.extend(TAILS[group])
    return tuple(regexes)


def apply(model: nn.Module, config: Config, **_: Any) -> nn.Module:
    mark_trainable(model, (*trainable_regexes(model, config), *config.trainable))
    return model


__all__ = ["CAN_MERGE", "Config", "apply", "trainable_regexes"]
