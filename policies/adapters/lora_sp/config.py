"""LoRA-SP options: a shared bank of rank-one directions, a router, and the energy rule that prunes it."""

from __future__ import annotations

from dataclasses import dataclass

from policies.adapters.config import AdapterConfig, require

SCORES = ("softplus", "relu", "linear")
K_RULES = ("paper", "released")
MAX_BANK = 1024  # 8x the paper's N = 128: a bound so that a bad config cannot ask for gigabytes


@dataclass
class LoraSPConfig(AdapterConfig):
    """Defaults follow the paper's released weights except ``bank``.

    ``bank`` (N, the number of rank-one directions per layer): the paper uses N = 128 on backbones of
    width 960 and more; on this project's VLA (d_model 128) that would equal the full width and make
    the "low-rank" bank as wide as the layer, so the default is 16: the same largest rank as the
    project's LoRA default (r = 16), as the paper compares its N = 128 bank with LoRA r = 128. The
    bank may exceed a layer's dimensions: nothing in the method requires N <= min(d_in, d_out).
    ``alpha``: the update is scaled by alpha / N; 32 / 16 = 2 matches the project's LoRA default
    (alpha 32 / rank 16).
    ``scores``: "softplus" (default) keeps router scores non-negative as the paper states, smoothly, so
    no direction's router gradient dies as it would under "relu"; "linear" is the released code
    (unconstrained scores; directions are then ranked by |s|).
    ``k_rule``: "paper" keeps the smallest prefix whose energy reaches eta; "released" keeps the
    largest prefix whose energy stays <= eta (at least one direction), i.e. usually one fewer.
    """

    bank: int = 16
    alpha: float = 32.0
    eta: float = 0.9
    router_dropout: float = 0.05
    scores: str = "softplus"
    k_rule: str = "paper"
    spec_weight: float = 1e-2
    balance_weight: float = 1e-3
    z_weight: float = 1e-2
    track_rank: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.bank, int) and 1 <= self.bank <= MAX_BANK, "bank", f"an integer in 1..{MAX_BANK}",
                self.bank)
        require(self.alpha > 0, "alpha", "> 0", self.alpha)
        require(0 < self.eta <= 1, "eta", "(0, 1]", self.eta)
        require(0 <= self.router_dropout < 1, "router_dropout", "[0, 1)", self.router_dropout)
        require(self.scores in SCORES, "scores", " | ".join(SCORES), self.scores)
        require(self.k_rule in K_RULES, "k_rule", " | ".join(K_RULES), self.k_rule)
        for name in ("spec_weight", "balance_weight", "z_weight"):
            require(getattr(self, name) >= 0, name, ">= 0", getattr(self, name))

    @property
    def scaling(self) -> float:
        return self.alpha / self.bank
