"""Inject VLA-GSE into the targets whose smaller dimension can hold the total rank."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from policies.adapters.base import find_targets, inject, mark_trainable
from policies.adapters.config import require
from policies.adapters.gse.config import GseConfig
from policies.adapters.gse.layer import GseLinear


def apply(model: nn.Module, config: GseConfig, **_: Any) -> nn.Module:
    names = find_targets(model, config.targets, config.groups)
    room = {n: min(model.get_submodule(n).in_features, model.get_submodule(n).out_features) for n in names}
    fits = [n for n in names if room[n] >= config.rank]  # smaller layers stay frozen and unadapted
    require(bool(fits), "rank", f"at most {max(room.values())} (the largest min(d_in, d_out) among the targets)",
            config.rank)

    def factory(_name: str, linear: nn.Linear) -> GseLinear:
        return GseLinear(linear, config.rank, config.experts, config.shared, config.top_k, config.rho, config.eta,
                         config.adjust, config.milora, config.grad_balance, config.s_base, config.balance_weight)

    inject(model, fits, factory)
    mark_trainable(model, config.trainable)
    return model
