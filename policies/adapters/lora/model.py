"""Inject LoRA into the targets; export its options in peft's ``adapter_config.json`` layout."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from policies.adapters.base import find_targets, inject, mark_trainable
from policies.adapters.config import require
from policies.adapters.lora.config import LoraConfig
from policies.adapters.lora.layer import LoraLinear


def apply(model: nn.Module, config: LoraConfig, **_: Any) -> nn.Module:
    names = find_targets(model, config.targets, config.groups)
    for name in names:
        layer = model.get_submodule(name)
        limit = min(layer.in_features, layer.out_features)
        require(config.rank <= limit, "rank", f"1..{limit} (the smallest dimension of {name})", config.rank)
    inject(model, names, lambda name, linear: LoraLinear(linear, config.rank, config.scaling, config.dropout))
    mark_trainable(model, config.trainable)
    return model


def peft_config(config: LoraConfig, model: nn.Module) -> dict[str, Any]:
    """peft's LoraConfig fields for this adapter: ``peft.PeftModel.from_pretrained`` can load it."""
    targets = sorted(name for name, m in model.named_modules() if isinstance(m, LoraLinear))
    return {"peft_type": "LORA", "task_type": None, "r": config.rank, "lora_alpha": config.alpha,
            "lora_dropout": config.dropout, "use_rslora": config.rslora, "target_modules": targets,
            "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "modules_to_save": None,
            "base_model_name_or_path": None, "inference_mode": True}
