"""L_orth: keep the downstream update delta' = theta - theta_meta orthogonal to the capability vector,
so that the injected capability does not wash out over a long fine-tune.

* Full fine-tuning (the paper): L = lam * sum over tensors t of |<gamma_t, theta_t - start_t>|.
* LoRA (O-LoRA form, Wang et al. 2023), for each LoRA layer with down-projection A [r, in]:
      L = lam * sum over layers ||A G^T||_F^2,
  where G holds the capability's input-space directions for that layer: the vector's
  ``<layer>.lora_A.weight`` [r', in] when it was extracted from LoRA fine-tunes, else its dense
  ``<layer>.weight`` [out, in]. If A G^T = 0 then <G, B A> = tr(A G^T B) = 0 whatever B learns, so
  this is the full form's inner product driven to zero through A alone (as O-LoRA does). With a
  dense G, ||A G^T||^2 = sum_i sigma_i^2 ||A v_i||^2: weak directions of gamma cost little.
  Squared, as in O-LoRA, so lam is not on the same scale as the full form's.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from policies.adapters.base import adapter_layers
from policies.adapters.capvector.vector import plain_parameters

Tensor = torch.Tensor


def orthogonality_loss(model: nn.Module, gamma: Mapping[str, Tensor], theta_start: Mapping[str, Tensor],
                       lam: float) -> Tensor:
    """lam * sum_t |<gamma_t, theta_t - theta_start_t>| over the tensors both mappings hold (a scalar)."""
    params = plain_parameters(model)
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, g in gamma.items():
        if name in theta_start and name in params:
            theta = params[name]
            delta = theta - theta_start[name].to(theta)  # delta' [same shape as theta]
            total = total + (g.to(theta) * delta).sum().abs()
    return lam * total


def lora_orthogonality_loss(model: nn.Module, gamma: Mapping[str, Tensor], lam: float) -> Tensor:
    """lam * sum over LoRA layers of ||A G^T||_F^2 (see the module docstring for G)."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, layer in adapter_layers(model):
        lora_a = getattr(layer, "lora_A", None)
        g = gamma.get(f"{name}.lora_A.weight", gamma.get(f"{name}.weight"))
        if not isinstance(lora_a, nn.Linear) or g is None:
            continue
        a = lora_a.weight  # [r, in]
        total = total + (a @ g.to(a).T).square().sum()  # [r, r'] or [r, out]
    return lam * total
