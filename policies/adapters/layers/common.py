"""The stacks of residual transformer blocks that "fewer layers" methods count, train or prune.

Only the transformer blocks count as layers: ``vision.layers``, ``fusion.layers`` and
``action_expert.layers``. The vision tower's conv stages (``vision.stages``) are not counted: each
halves the resolution and changes the channel count, so none can be dropped, and "the last k
layers" of the tower means the blocks nearest its output. ``language`` is an embedding table with
no layers at all, so it cannot be chosen for these methods.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from policies.adapters.base import check_groups

# group -> full name of its nn.ModuleList of residual blocks
LAYER_LISTS = {"vision": "vision.layers", "fusion": "fusion.layers", "action_expert": "action_expert.layers"}
# parameters applied after a group's last block (in forward order): they train with the last blocks
TAILS = {"vision": (r"vision\.camera_embed",),
         "fusion": (r"fusion\.norm\..*",),
         "action_expert": (r"action_expert\.norm\..*", r"action_expert\.head\..*")}


def check_layer_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """Valid groups that have blocks; one line naming ``groups`` otherwise."""
    groups = check_groups(groups)
    bad = [g for g in groups if g not in LAYER_LISTS]
    if bad:
        raise ValueError(f"groups: {', '.join(bad)} has no transformer layers; "
                         f"valid groups here: {', '.join(LAYER_LISTS)}")
    return groups


def layer_lists(model: nn.Module, groups: Sequence[str] = tuple(LAYER_LISTS)) -> dict[str, tuple[str, nn.ModuleList]]:
    """group -> (name prefix, its ModuleList of blocks), for the chosen groups."""
    found = {}
    for group in check_layer_groups(groups):
        prefix = LAYER_LISTS[group]
        layers = model.get_submodule(prefix)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(f"{prefix} is a {type(layers).__name__}, not a ModuleList of blocks")
        found[group] = (prefix, layers)
    return found


def replace_layers(model: nn.Module, group: str, keep: Sequence[int]) -> None:
    """Rebuild a group's ModuleList from the blocks at ``keep`` (in order); forward just iterates it."""
    prefix = LAYER_LISTS[group]
    parent_name, _, child = prefix.rpartition(".")
    old = model.get_submodule(prefix)
    setattr(model.get_submodule(parent_name), child, nn.ModuleList(old[i] for i in keep))
