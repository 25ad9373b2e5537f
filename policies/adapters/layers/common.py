"""The stacks of residual transformer blocks that "fewer layers" methods count, train or prune.

Only the transformer blocks count as layers: a group's blocks are its one ``nn.ModuleList`` named
``layers`` (the reference VLA: ``vision.layers``, ``fusion.layers`` and ``action_expert.layers``;
transformers' SmolVLM: ``model.vision_model.encoder.layers`` and ``model.text_model.layers``, see
``base.GROUP_ALIASES``). The vision tower's conv stages (``vision.stages``) are not counted: each
halves the resolution and changes the channel count, so none can be dropped, and "the last k
layers" of the tower means the blocks nearest its output. ``language`` is an embedding table with
no layers at all, so it cannot be chosen for these methods.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn

from policies.adapters.base import check_groups, group_of

LAYER_GROUPS = ("vision", "fusion", "action_expert")  # the groups made of residual blocks
# parameters applied after a group's last block (in forward order): they train with the last blocks.
# SmolVLM: the vision tower's final norm and the connector, the text decoder's final norm.
TAILS = {"vision": (r"vision\.camera_embed", r"(.*\.)?vision_model\.post_layernorm\..*", r"(.*\.)?connector\..*"),
         "fusion": (r"fusion\.norm\..*", r"(.*\.)?text_model\.norm\..*"),
         "action_expert": (r"action_expert\.norm\..*", r"action_expert\.head\..*")}


def check_layer_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """Valid groups that have blocks; one line naming ``groups`` otherwise."""
    groups = check_groups(groups)
    bad = [g for g in groups if g not in LAYER_GROUPS]
    if bad:
        raise ValueError(f"groups: {', '.join(bad)} has no transformer layers; "
                         f"valid groups here: {', '.join(LAYER_GROUPS)}")
    return groups


def layer_lists(model: nn.Module, groups: Sequence[str] = LAYER_GROUPS) -> dict[str, tuple[str, nn.ModuleList]]:
    """group -> (name prefix, its ModuleList of blocks), for the chosen groups.

    Found by name (the one ModuleList called ``layers`` in each group) rather than by a fixed path,
    so that the reference VLA and a transformers backbone are read alike."""
    stacks = [(n, m) for n, m in model.named_modules() if n.rpartition(".")[2] == "layers"
              and isinstance(m, nn.ModuleList)]
    found = {}
    for group in check_layer_groups(groups):
        mine = [(n, m) for n, m in stacks if group_of(n) == group]
        if len(mine) != 1:
            what = f"{len(mine)} ({', '.join(n for n, _ in mine)})" if mine else "no"
            raise ValueError(f"groups: {group} has {what} ModuleList of blocks named 'layers' in this model")
        found[group] = mine[0]
    return found


def replace_layers(model: nn.Module, group: str, keep: Sequence[int]) -> None:
    """Rebuild a group's ModuleList from the blocks at ``keep`` (in order); forward just iterates it."""
    prefix, old = layer_lists(model, (group,))[group]
    parent_name, _, child = prefix.rpartition(".")
    setattr(model.get_submodule(parent_name), child, nn.ModuleList(old[i] for i in keep))
