"""The LoRA-SP layer: y = W0 x + (alpha / N) B [(A x) * s_masked(x)], a per-token rank chosen by energy.

A bank of N rank-one directions (rows of A = ``lora_A`` [N, in], columns of B = ``lora_B`` [out, N]) is
shared by all tokens; a router scores each direction per token, s(x) = softplus(W_r dropout(x)), and
only the highest-scoring directions that together hold a fraction eta of the score energy are kept.
The selection is a hard mask (not differentiable); gradients reach the router through the kept
scores and through the auxiliary losses (left in ``aux`` by training-mode forwards only, each already
weighted and divided by the number of LoRA-SP layers, so base's sum is the average over layers).
The update depends on the input, so the layer never merges.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from policies.adapters.base import AdapterLayer

Tensor = torch.Tensor
_TOL = 1e-6  # float slack on the energy threshold (so eta = 1 keeps exactly the non-zero scores)


def select(scores: Tensor, eta: float, rule: str = "paper") -> tuple[Tensor, Tensor, Tensor]:
    """The energy rule on scores [T, N]: mask [T, N] (1 = kept), k [T] (long), kept energy E_k [T].

    Directions are ranked by s^2 (for non-negative scores: by s, descending);
    E_k = sum_{i<=k} s_(i)^2 / sum_j s_j^2. "paper": k = min{k : E_k >= eta}; "released": the largest k
    with E_k <= eta, at least 1. E_k stays differentiable in the scores (it feeds the prune loss).
    """
    n = scores.shape[-1]
    power, order = scores.square().sort(-1, descending=True)  # [T, N] sorted, [T, N] direction ids
    energy = power.cumsum(-1) / power.sum(-1, keepdim=True).clamp_min(1e-12)  # [T, N], E_1..E_N
    e = energy.detach()
    if rule == "paper":
        k = (e < eta - _TOL).sum(-1) + 1
    else:
        k = (e <= eta + _TOL).sum(-1).clamp_min(1)
    k = k.clamp(max=n)  # [T]
    keep_sorted = (torch.arange(n, device=scores.device) < k[:, None]).to(scores.dtype)  # [T, N]
    mask = torch.zeros_like(scores).scatter(-1, order, keep_sorted)  # back to direction order
    energy_k = energy.gather(-1, (k - 1)[:, None]).squeeze(-1)  # [T]
    return mask, k, energy_k


class LoraSPLinear(AdapterLayer):
    """One LoRA-SP layer. ``dynamic`` (default True) applies the energy rule; False uses all N
    directions unmasked ("full rank", the reference for benchmarking the dynamic forward's cost).
    ``track_rank`` accumulates k(x) per token (as tensors, no device sync) for :meth:`mean_rank`."""

    adapter_names = ("lora_A", "lora_B", "router")
    can_merge = False

    def __init__(self, base_layer: nn.Linear, bank: int, scaling: float, eta: float, router_dropout: float = 0.05,
                 scores: str = "softplus", k_rule: str = "paper",
                 weights: tuple[float, float, float] = (1e-2, 1e-3, 1e-2), aux_scale: float = 1.0,
                 track_rank: bool = True) -> None:
        super().__init__(base_layer)
        self.bank, self.scaling, self.eta = bank, scaling, eta
        self.score_fn, self.k_rule = scores, k_rule
        self.weights = weights  # (spec, balance, z), the paper's released loss weights
        self.aux_scale = aux_scale  # 1 / number of LoRA-SP layers: the aux terms average over layers
        self.dynamic, self.track_rank = True, track_rank
        self.router_dropout = nn.Dropout(router_dropout) if router_dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(self.in_features, bank, bias=False).to(base_layer.weight)  # [N, in]
        self.lora_B = nn.Linear(bank, self.out_features, bias=False).to(base_layer.weight)  # [out, N]
        self.router = nn.Linear(self.in_features, bank, bias=False).to(base_layer.weight)  # [N, in]
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)  # the adapter starts as the identity
        self.reset_rank_stats()

    def scores(self, x: Tensor) -> Tensor:
        """Router scores [T, N] for tokens x [T, in]."""
        raw = self.router(self.router_dropout(x))
        if self.score_fn == "softplus":
            return F.softplus(raw)
        return F.relu(raw) if self.score_fn == "relu" else raw

    def forward(self, x: Tensor) -> Tensor:
        # x [..., in] -> [..., out]
        flat = x.reshape(-1, self.in_features)  # [T, in]
        s = self.scores(flat)  # [T, N]
        if self.dynamic:
            mask, k, energy_k = select(s, self.eta, self.k_rule)
            kept = s * mask  # [T, N]: directions beyond k(x) zeroed per token
            if self.training and flat.shape[0]:
                self.aux = self._aux(s, mask, energy_k)
            if self.track_rank:
                self._record(k)
        else:
            kept = s
        delta = self.lora_B(self.lora_A(flat) * kept) * self.scaling  # [T, out]
        return self.base_layer(x) + delta.view(*x.shape[:-1], self.out_features)

    def token_update(self, x: Tensor) -> Tensor:
        """The dense update dW(x) [out, in] this layer adds for one token x [in] (tests, diagnostics)."""
        s = self.scores(x[None])  # [1, N]
        if self.dynamic:
            s = s * select(s, self.eta, self.k_rule)[0]
        return self.lora_B.weight @ (s[0, :, None] * self.lora_A.weight) * self.scaling  # [out, in]

    def _aux(self, s: Tensor, mask: Tensor, energy_k: Tensor) -> dict[str, Tensor]:
        """Prune loss 1 - E_k, load balance N sum_j f_j p_j and z-loss logsumexp(s)^2, weighted, / layers."""
        n = s.shape[-1]
        spec = (1 - energy_k).mean()
        p = s.masked_fill(mask == 0, float("-inf")).softmax(-1).mean(0)  # [N], over kept directions
        top = s.detach().square().argmax(-1)  # [T] each token's top direction
        f = torch.bincount(top, minlength=n).to(s.dtype) / top.numel()  # [N], not differentiable
        balance = n * (f * p).sum()
        z = torch.logsumexp(s, -1).square().mean()
        w_spec, w_bal, w_z = (w * self.aux_scale for w in self.weights)
        return {"lora_sp_spec": w_spec * spec, "lora_sp_balance": w_bal * balance, "lora_sp_z": w_z * z}

    def _record(self, k: Tensor) -> None:
        kf = k.detach().float()
        self.last_rank = kf.mean()
        total = kf.sum()
        self.rank_sum = total if self.rank_sum is None else self.rank_sum + total
        self.rank_count += k.numel()

    def reset_rank_stats(self) -> None:
        self.last_rank: Tensor | None = None
        self.rank_sum: Tensor | None = None
        self.rank_count = 0

    def mean_rank(self) -> float | None:
        """Mean k(x) over the tokens seen since the last reset (None before any tracked forward)."""
        return None if self.rank_sum is None else float(self.rank_sum) / max(self.rank_count, 1)
