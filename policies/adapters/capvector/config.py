"""CapVector options: which capability vector, how strongly to merge it, how hard to protect it."""

from __future__ import annotations

from dataclasses import dataclass

from policies.adapters.config import AdapterConfig, require


@dataclass
class Config(AdapterConfig):
    """``groups`` limits which of the vector's tensors are merged and regularised (default: all).

    ``targets`` is unused: the downstream fine-tune from theta_meta trains every parameter."""

    vector: str = ""  # path of a capability vector saved by ``save_vector`` (required; checked in apply)
    alpha: float = 1.0  # theta_meta = theta_pt + alpha gamma; 0 gives the pretrained model back
    lam: float = 1e-3  # weight of L_orth = lam sum_t |<gamma_t, theta_t - theta_meta_t>|

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.vector, str), "vector", "a file path", self.vector)
        require(_number(self.alpha) and self.alpha >= 0, "alpha", ">= 0", self.alpha)
        require(_number(self.lam) and self.lam >= 0, "lam", ">= 0", self.lam)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
