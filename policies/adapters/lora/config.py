"""LoRA options (Hu et al.; rsLoRA scaling alpha / sqrt(r) as an option)."""

from __future__ import annotations

from dataclasses import dataclass

from policies.adapters.config import AdapterConfig, require


@dataclass
class LoraConfig(AdapterConfig):
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    rslora: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.rank, int) and self.rank >= 1, "rank", "an integer >= 1", self.rank)
        require(self.alpha > 0, "alpha", "> 0", self.alpha)
        require(0 <= self.dropout < 1, "dropout", "[0, 1)", self.dropout)

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank ** 0.5 if self.rslora else self.alpha / self.rank
