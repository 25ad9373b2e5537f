"""Matched trainable-parameter budgets: each PEFT method's own knob set so that it trains a given
share of the base model's parameters, as the seed papers compare methods (VLA-GSE: 2.51%).

Each method has one size knob, and its trainable count rises with it: LoRA's ``rank``, LoRA-SP's
``bank`` (N rank-one directions per layer), GSE's total ``rank`` (a multiple of its experts) and
last-k's ``layers`` (blocks per group). Where the smallest knob value is still too large, coarser
settings of the method's other knobs are tried in turn (:data:`VARIANTS`: fewer GSE experts, fewer
last-k groups), the paper's own first. :func:`match_budget` picks the setting whose count is nearest
the target, counting on a copy of the model with the method applied, so the counts are the
method's own. A method that cannot come within the tolerance says so instead of passing silently:
``within`` is False.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from policies.adapters.base import count_parameters
from policies.adapters.registry import get_method

# method -> (knob, smallest value, step): values are smallest, smallest + step, ...
KNOBS: dict[str, tuple[str, int, int]] = {"lora": ("rank", 1, 1), "lora_sp": ("bank", 1, 1), "gse": ("rank", 8, 8),
                                          "last_k": ("layers", 1, 1)}
MAX_STEPS = 1024  # a bound on the search: no knob here needs more values
# other knobs tried in order when the paper's setting cannot reach a budget (the knob's step follows)
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "gse": [{"experts": 8}, {"experts": 4}, {"experts": 2, "top_k": 1}],
    "last_k": [{}, {"groups": ("fusion", "action_expert")}, {"groups": ("fusion",)}, {"groups": ("action_expert",)},
               {"groups": ("vision",)}],
}
TOLERANCE = 0.15


@dataclass(frozen=True)
class Budget:
    method: str
    options: dict[str, Any]  # the method's options with its knob set
    trainable: int
    total: int  # the base model's parameters (what full fine-tuning trains)
    target: float  # the share asked for

    @property
    def share(self) -> float:
        return self.trainable / self.total

    def within(self, tolerance: float = 0.15) -> bool:
        """Whether the share is within ``tolerance`` (relative) of the target."""
        return abs(self.share - self.target) <= tolerance * self.target


def trainable_parameters(model: nn.Module, method: str, options: dict[str, Any]) -> int:
    """Parameters ``method`` with ``options`` would train on ``model`` (applied to a copy)."""
    m = get_method(method)
    adapted = m.apply(copy.deepcopy(model), m.config(options))
    return count_parameters(adapted)["trainable"]["total"]


def match_budget(model: nn.Module, method: str, target: float, options: dict[str, Any] | None = None,
                 tolerance: float = TOLERANCE) -> Budget:
    """The setting of ``method`` whose trainable share of ``model`` is nearest ``target``: the first of
    its :data:`VARIANTS` that comes within ``tolerance``, else the nearest of all."""
    if method not in KNOBS:
        raise ValueError(f"no budget knob for {method!r}; methods with one: {', '.join(KNOBS)}")
    if not 0 < target < 1:
        raise ValueError(f"target share {target!r}: a fraction in (0, 1)")
    found = [_walk(model, method, target, dict(options or {}) | variant) for variant in VARIANTS.get(method, [{}])]
    return next((b for b in found if b.within(tolerance)), min(found, key=lambda b: abs(b.share - target)))


def _walk(model: nn.Module, method: str, target: float, base: dict[str, Any]) -> Budget:
    """The knob value nearest ``target`` with the other options fixed at ``base``."""
    knob, low, step = KNOBS[method]
    if method == "gse":
        low = step = base.get("experts", 8)
    total = sum(p.numel() for p in model.parameters())
    counts: dict[int, int] = {}

    def count(value: int) -> int:
        if value not in counts:
            try:
                counts[value] = trainable_parameters(model, method, base | {knob: value})
            except ValueError:  # past the knob's range (last-k deeper than a group)
                counts[value] = -1
        return counts[value]

    goal, value = target * total, low
    for _ in range(MAX_STEPS):  # up to the first value at or past the goal (counts rise with the knob)
        if count(value) < 0 or count(value) >= goal:
            break
        value += step
    candidates = [v for v in (value - step, value) if v >= low and count(v) >= 0]
    best = min(candidates, key=lambda v: abs(count(v) - goal))
    return Budget(method, base | {knob: best}, count(best), total, target)
