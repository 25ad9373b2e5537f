"""Inject LoRA-SP into the targets; the effective-rank diagnostics (per layer, per module group)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from policies.adapters.base import adapter_layers, find_targets, group_of, inject, mark_trainable
from policies.adapters.lora_sp.config import LoraSPConfig
from policies.adapters.lora_sp.layer import LoraSPLinear


def apply(model: nn.Module, config: LoraSPConfig, **_: Any) -> nn.Module:
    names = find_targets(model, config.targets, config.groups)
    weights = (config.spec_weight, config.balance_weight, config.z_weight)

    def factory(_name: str, linear: nn.Linear) -> LoraSPLinear:
        return LoraSPLinear(linear, config.bank, config.scaling, config.eta, config.router_dropout, config.scores,
                            config.k_rule, weights, aux_scale=1.0 / len(names), track_rank=config.track_rank)

    inject(model, names, factory)
    mark_trainable(model, config.trainable)
    return model


def _layers(model: nn.Module) -> list[tuple[str, LoraSPLinear]]:
    return [(n, m) for n, m in adapter_layers(model) if isinstance(m, LoraSPLinear)]


def set_dynamic(model: nn.Module, dynamic: bool) -> None:
    """True: the energy rule (training and inference). False: all N directions ("full rank")."""
    for _, layer in _layers(model):
        layer.dynamic = dynamic


def reset_rank_stats(model: nn.Module) -> None:
    for _, layer in _layers(model):
        layer.reset_rank_stats()


def effective_ranks(model: nn.Module) -> dict[str, float]:
    """Mean k(x) per LoRA-SP layer over the tokens seen since the last reset (tracked layers only)."""
    ranks = {name: layer.mean_rank() for name, layer in _layers(model)}
    return {name: k for name, k in ranks.items() if k is not None}


def ranks_by_group(model: nn.Module) -> dict[str, float]:
    """The paper's diagnostic: mean effective rank per module group (vision, fusion, action_expert)."""
    per_group: dict[str, list[float]] = {}
    for name, k in effective_ranks(model).items():
        per_group.setdefault(group_of(name), []).append(k)
    return {group: sum(ks) / len(ks) for group, ks in per_group.items()}


def diagnose(model: nn.Module, batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Effective ranks after training: mean k(x) per layer and per group over the given batches."""
    import torch

    reset_rank_stats(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            model.predict(batch)
    model.train(was_training)
    return {"effective_rank_by_group": ranks_by_group(model), "effective_rank_by_layer": effective_ranks(model)}
