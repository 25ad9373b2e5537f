"""VLA-GSE: generalized (shared) and specialized (routed) low-rank experts initialised from the SVD."""

from policies.adapters.gse.config import GseConfig
from policies.adapters.gse.layer import GseLinear, svd_experts
from policies.adapters.gse.model import apply

__all__ = ["GseConfig", "GseLinear", "apply", "svd_experts"]

Config = GseConfig
CAN_MERGE = False  # the routed experts' weights depend on the input
