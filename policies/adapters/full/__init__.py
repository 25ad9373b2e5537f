"""Full fine-tuning (FFT), the baseline every method is compared with: every parameter trains.

Nothing is injected, so there is nothing to merge: the "adapter" state of this method is the whole
model (``adapter_state_dict`` returns every parameter because every parameter is trainable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from policies.adapters.base import mark_trainable
from policies.adapters.config import AdapterConfig

CAN_MERGE = False
ALL = (".*",)  # the one trainable rule: every parameter name


@dataclass
class Config(AdapterConfig):
    """No options of its own (``targets`` and ``groups`` are ignored: every group trains)."""


def apply(model: nn.Module, config: Config, **_: Any) -> nn.Module:
    mark_trainable(model, ALL)
    return model


__all__ = ["CAN_MERGE", "Config", "apply"]
