"""The LoRA layer: y = W0 x + s B A dropout(x), s = alpha / r (or alpha / sqrt r), A Kaiming, B zero.

Child names and initialisation follow peft's ``LoraLayer`` so that a project LoRA and a peft LoRA
with the same weights compute the same outputs and save under the same keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from policies.adapters.base import AdapterLayer

Tensor = torch.Tensor


class LoraLinear(AdapterLayer):
    adapter_names = ("lora_A", "lora_B")
    can_merge = True

    def __init__(self, base_layer: nn.Linear, rank: int, scaling: float, dropout: float = 0.0) -> None:
        super().__init__(base_layer)
        self.scaling = scaling
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(self.in_features, rank, bias=False).to(base_layer.weight)  # [r, in]
        self.lora_B = nn.Linear(rank, self.out_features, bias=False).to(base_layer.weight)  # [out, r]
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # the adapter starts as the identity

    def forward(self, x: Tensor) -> Tensor:
        # x [..., in] -> [..., out]
        return self.base_layer(x) + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def delta_weight(self) -> Tensor:
        return self.lora_B.weight @ self.lora_A.weight * self.scaling  # [out, in]

    def lora_parameters(self) -> list[nn.Parameter]:
        return [self.lora_A.weight, self.lora_B.weight]
