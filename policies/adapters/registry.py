"""The methods by name. Each is a package exporting ``Config`` (an :class:`AdapterConfig`) and
``apply(model, config, **context) -> model``; optionally ``regularizer(model, config) -> dict`` of
weighted loss terms, ``peft_config(config, model) -> dict`` (peft's adapter_config layout) and
``diagnose(model, batches) -> dict`` (a method's own diagnostics after training)."""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import torch
import torch.nn as nn

from policies.adapters.base import aux_losses
from policies.adapters.config import AdapterConfig

PACKAGES = {
    "full": "policies.adapters.full",
    "lora": "policies.adapters.lora",
    "lora_sp": "policies.adapters.lora_sp",
    "gse": "policies.adapters.gse",
    "last_k": "policies.adapters.layers.last_k",
    "clp": "policies.adapters.layers.clp",
    "capvector": "policies.adapters.capvector",
}


@dataclass(frozen=True)
class Method:
    name: str
    module: ModuleType

    @property
    def config_cls(self) -> type[AdapterConfig]:
        return self.module.Config

    def options(self) -> dict[str, tuple[type, Any]]:
        """The options a user can set (from the CLI): name -> (type, default), for the config fields
        of a plain type (int, float, bool, str, tuple of str); others are state the method fills in."""
        hints = typing.get_type_hints(self.config_cls)
        out = {}
        for f in dataclasses.fields(self.config_cls):
            kind = tuple if hints[f.name] == tuple[str, ...] else hints[f.name]
            if kind in (int, float, bool, str, tuple):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                out[f.name] = (kind, default)
        return out

    def config(self, options: dict[str, Any], source: str = "options") -> AdapterConfig:
        try:
            return self.config_cls.from_dict(options, source)
        except TypeError as err:
            raise ValueError(f"{source}: {err}") from None

    def apply(self, model: nn.Module, config: AdapterConfig, **context: Any) -> nn.Module:
        return self.module.apply(model, config, **context)

    @property
    def can_merge(self) -> bool:
        return getattr(self.module, "CAN_MERGE", False)

    def losses(self, model: nn.Module, config: AdapterConfig) -> dict[str, torch.Tensor]:
        """Weighted auxiliary terms to add to the task loss this step (router, balance, orthogonality)."""
        terms = aux_losses(model)
        regularizer: Callable | None = getattr(self.module, "regularizer", None)
        if regularizer is not None:
            terms |= regularizer(model, config)
        return terms

    def diagnose(self, model: nn.Module, batches: list[dict[str, Any]]) -> dict[str, Any]:
        """The method's own diagnostics after training (LoRA-SP: effective ranks), else {}."""
        diagnose = getattr(self.module, "diagnose", None)
        return diagnose(model, batches) if diagnose else {}

    def peft_config(self, config: AdapterConfig, model: nn.Module) -> dict[str, Any] | None:
        export = getattr(self.module, "peft_config", None)
        return export(config, model) if export else None


def get_method(name: str) -> Method:
    if name not in PACKAGES:
        raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(PACKAGES)}")
    return Method(name, importlib.import_module(PACKAGES[name]))
