"""LoRA-SP (Select-Prune): rank-adaptive LoRA, a router over a shared bank of rank-one directions."""

from policies.adapters.lora_sp.config import LoraSPConfig
from policies.adapters.lora_sp.layer import LoraSPLinear, select
from policies.adapters.lora_sp.model import (apply, diagnose, effective_ranks, ranks_by_group, reset_rank_stats,
                                             set_dynamic)

__all__ = ["LoraSPConfig", "LoraSPLinear", "apply", "diagnose", "effective_ranks", "ranks_by_group", "reset_rank_stats",
           "select", "set_dynamic"]

Config = LoraSPConfig
CAN_MERGE = False  # the rank and the scores depend on the input: inference keeps the dynamic forward

