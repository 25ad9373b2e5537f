"""VLA-GSE options: a rank split over generalized (shared) and specialized (routed) SVD-initialised experts."""

from __future__ import annotations

from dataclasses import dataclass

from policies.adapters.config import AdapterConfig, require


@dataclass
class GseConfig(AdapterConfig):
    """Defaults are the paper's: r = 16 over 8 experts of rank 2, 1 shared + 7 routed, top-2, rho = 10.

    ``eta`` sets the expert scale s_i = sqrt(3 eta d_in / r_i); ``adjust`` is c in W_res = W - c sum_i
    s_i B_i A_i; ``milora`` initialises the experts from the smallest singular components instead of
    the leading ones; ``grad_balance`` uses s_i = s_base mean_j tr(S_j) / tr(S_i) instead of the fixed
    scale. The paper trains the action head too, hence the default ``trainable``.
    """

    trainable: tuple[str, ...] = (r"action_expert\.head\..*",)
    rank: int = 16
    experts: int = 8
    shared: int = 1
    top_k: int = 2
    rho: float = 10.0
    eta: float = 1.0
    adjust: float = 1.0
    milora: bool = False
    grad_balance: bool = False
    s_base: float = 2.0
    balance_weight: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.rank, int) and self.rank >= 1, "rank", "an integer >= 1", self.rank)
        require(isinstance(self.experts, int) and self.experts >= 2, "experts", "an integer >= 2", self.experts)
        require(self.rank % self.experts == 0, "rank", f"a multiple of experts={self.experts}", self.rank)
        require(isinstance(self.shared, int) and 1 <= self.shared < self.experts, "shared",
                f"an integer in 1..{self.experts - 1} (fewer than experts={self.experts})", self.shared)
        routed = self.experts - self.shared
        require(isinstance(self.top_k, int) and 1 <= self.top_k <= routed, "top_k",
                f"an integer in 1..{routed} (the number of routed experts)", self.top_k)
        require(self.rho > 0, "rho", "> 0", self.rho)
        require(self.eta > 0, "eta", "> 0", self.eta)
        require(self.s_base > 0, "s_base", "> 0", self.s_base)
        require(self.balance_weight >= 0, "balance_weight", ">= 0", self.balance_weight)

    @property
    def expert_rank(self) -> int:
        return self.rank // self.experts

    @property
    def routed(self) -> int:
        return self.experts - self.shared
