"""The VLA-GSE layer: SVD-initialised experts, one shared and several routed, on a residual backbone.

    y = W_res x + b + (1 / N_g) sum_{g shared} s_g B_g A_g x + sum_{i in Top-k(p)} (p_i / sum_top p) s_i B_i A_i x
    p = softmax(W_gate x),  W_res = W - c sum_{all i} s_i B_i A_i

Each expert i holds a disjoint slice of W's singular triplets, scaled down by rho so that
s_i B_i A_i = U_i diag(S_i / rho) V_i^T. Subtracting every expert (not a gate-weighted expectation)
from W leaves, at initialisation, a per-token mismatch of the un-routed share of the routed experts:
at most ||W x|| / rho (the slices are orthogonal components of W x).
W_res is a buffer: adapter checkpoints carry it, since the base alone cannot rebuild the adapted layer.
The load-balance loss is left in ``aux`` by training-mode forwards only (summed over layers by base).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from policies.adapters.base import AdapterLayer

Tensor = torch.Tensor


def svd_experts(weight: Tensor, rank: int, experts: int, rho: float, eta: float, milora: bool = False,
                grad_balance: bool = False, s_base: float = 2.0) -> tuple[Tensor, Tensor, Tensor]:
    """Expert factors from the exact SVD of ``weight`` [out, in]: A [E, r_i, in], B [E, out, r_i], scales [E].

    torch.linalg.svd (exact: every singular value, thin U and V; float64 on the CPU) rather than the
    randomised svd_lowrank: these layers are small, and an exact, deterministic decomposition makes
    the reconstruction W_res + sum s_i B_i A_i = W exact and the same on every device. Expert e takes
    components e*r_i .. (e+1)*r_i - 1 of the leading r (``milora``: of the last r, still in descending
    order), so expert 0, the (first) shared one, gets the largest.
    """
    w = weight.detach().to("cpu", torch.float64)
    U, S, Vh = torch.linalg.svd(w, full_matrices=False)  # [out, m], [m], [m, in]
    r_i = rank // experts
    idx = (S.numel() - rank if milora else 0) + torch.arange(rank).view(experts, r_i)  # [E, r_i]
    S_e, V_e, U_e = S[idx], Vh[idx], U[:, idx].permute(1, 0, 2)  # [E, r_i], [E, r_i, in], [E, out, r_i]
    if grad_balance:  # expert-wise gradient-scale balancing: smaller slices get larger scales
        trace = S_e.sum(-1).clamp_min(1e-12)  # [E]
        scales = s_base * trace.mean() / trace
    else:
        scales = torch.full((experts,), math.sqrt(3 * eta * w.shape[1] / r_i), dtype=torch.float64)
    root = (S_e / (scales[:, None] * rho)).sqrt()  # [E, r_i]
    A, B = root[..., None] * V_e, U_e * root[:, None, :]  # s_i B_i A_i = U_i diag(S_i / rho) V_i^T
    return A, B, scales


class GseLinear(AdapterLayer):
    adapter_names = ("expert_A", "expert_B", "gate")
    can_merge = False

    def __init__(self, base_layer: nn.Linear, rank: int = 16, experts: int = 8, shared: int = 1, top_k: int = 2,
                 rho: float = 10.0, eta: float = 1.0, adjust: float = 1.0, milora: bool = False,
                 grad_balance: bool = False, s_base: float = 2.0, balance_weight: float = 0.01) -> None:
        super().__init__(base_layer)
        self.experts, self.shared, self.top_k = experts, shared, top_k
        self.routed, self.expert_rank = experts - shared, rank // experts
        self.balance_weight = balance_weight
        A, B, scales = svd_experts(base_layer.weight, rank, experts, rho, eta, milora, grad_balance, s_base)
        like = base_layer.weight
        w_res = base_layer.weight.detach().double().cpu() - adjust * torch.einsum("e,eor,eri->oi", scales, B, A)
        self.register_buffer("weight_res", w_res.to(like))  # [out, in]
        self.register_buffer("scales", scales.to(like))  # [E]
        self.expert_A = nn.Parameter(A.to(like))  # [E, r_i, in]
        self.expert_B = nn.Parameter(B.to(like))  # [E, out, r_i]
        self.gate = nn.Linear(self.in_features, self.routed, bias=False).to(like)  # [N_s, in]

    def base_weight(self) -> Tensor:
        return self.weight_res

    def expert_updates(self) -> Tensor:
        """Each expert's dense update s_i B_i A_i, [E, out, in] (tests, diagnostics)."""
        return torch.einsum("e,eor,eri->eoi", self.scales, self.expert_B, self.expert_A)

    def routing(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For tokens x [T, in]: gate probabilities p [T, N_s], routed weights [T, N_s] (the top-k
        probabilities renormalised to sum 1, zero elsewhere) and the chosen experts [T, k]."""
        p = self.gate(x).softmax(-1)
        top, chosen = p.topk(self.top_k, -1)  # [T, k]
        weights = torch.zeros_like(p).scatter(-1, chosen, top / top.sum(-1, keepdim=True))
        return p, weights, chosen

    def forward(self, x: Tensor) -> Tensor:
        # x [..., in] -> [..., out]
        flat = x.reshape(-1, self.in_features)  # [T, in]
        T, E, r = flat.shape[0], self.experts, self.expert_rank
        p, weights, chosen = self.routing(flat)
        shared = flat.new_full((T, self.shared), 1.0 / self.shared)
        coef = torch.cat([shared, weights], -1) * self.scales  # [T, E]: 0 for un-routed experts
        # dense over all E * r_i rows (16 by default): cheaper here than gathering the chosen experts
        h = flat @ self.expert_A.reshape(E * r, -1).T  # [T, E*r]
        h = h * coef.repeat_interleave(r, -1)
        delta = h @ self.expert_B.permute(0, 2, 1).reshape(E * r, -1)  # [T, out]
        if self.training and T:
            self.aux = {"gse_balance": self._balance(p, chosen)}
        y = F.linear(x, self.weight_res, self.base_layer.bias)
        return y + delta.view(*x.shape[:-1], self.out_features)

    def _balance(self, p: Tensor, chosen: Tensor) -> Tensor:
        """weight * N_s * sum_i f_i P_i: f_i the share of routing slots that went to expert i (sums to 1,
        so a perfectly balanced gate scores 1), P_i the mean gate probability of expert i."""
        f = torch.bincount(chosen.flatten(), minlength=self.routed).to(p.dtype) / chosen.numel()  # [N_s]
        return self.balance_weight * self.routed * (f * p.mean(0)).sum()
