"""Linear CKA and the per-block similarity s_l = CKA(H_{l-1}, H_l) from one calibration batch.

Linear CKA (Kornblith et al. 2019) compares two sets of features of the same n tokens:
    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F),   X [n, d1], Y [n, d2], both column-centred.
It is 1 when Y is X up to an orthogonal map and an isotropic scale, and near 0 for unrelated features;
for one-dimensional features it is the squared Pearson correlation. A block whose output has CKA
near 1 with its input barely changes the representation: the paper prunes such blocks.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from policies.adapters.layers.common import layer_lists

Tensor = torch.Tensor


def linear_cka(x: Tensor, y: Tensor) -> float:
    """CKA of features x [n, d1] and y [n, d2] (rows: the same tokens), computed in float64."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: expected [n, d1] and [n, d2], got {list(x.shape)} and {list(y.shape)}")
    x = x.double() - x.double().mean(0)  # centre each feature over the tokens
    y = y.double() - y.double().mean(0)
    cross = (y.T @ x).square().sum()  # ||Y^T X||_F^2
    norm = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)  # Frobenius norms
    if norm <= 1e-30:  # a constant feature set carries no structure to compare
        return 0.0
    return float(cross / norm)


@torch.no_grad()
def layer_similarities(model: nn.Module, batch: dict[str, Any],
                       groups: Sequence[str] = ("vision", "fusion", "action_expert")) -> dict[str, list[float]]:
    """group -> [s_0 .. s_{L-1}], s_l = CKA(input of block l, output of block l) on ``batch``.

    Forward hooks catch each block's input and output (the input of block 0 is H_{-1}); padded
    tokens (the block's mask, its second argument) are left out. The batch runs through
    ``model.loss`` when it has actions, else ``model.predict``; only the first call of each block is
    used (predict runs the action expert once per flow step), in eval mode (no dropout).
    A transformers model (no ``predict``) runs as ``model(**batch)``; its blocks take
    ``hidden_states`` and no [B, Q] token mask, so all their tokens count.
    """
    lists = layer_lists(model, groups)
    caught: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}

    def hook(key: tuple[str, int]):
        def catch(_: nn.Module, args: tuple, kwargs: dict, output: Tensor | tuple) -> None:
            if key not in caught:
                x = args[0] if args else kwargs["hidden_states"]  # [B, Q, D]
                y = output[0] if isinstance(output, tuple) else output  # [B, Q, D]
                mask = args[1] if len(args) > 1 else None  # [B, Q] bool in the reference's blocks
                if not (isinstance(mask, Tensor) and mask.dtype == torch.bool and mask.shape == x.shape[:2]):
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
                caught[key] = (x[mask], y[mask])  # valid tokens only: [n, D] each
        return catch

    handles = [layer.register_forward_hook(hook((group, i)), with_kwargs=True)
               for group, (_, layers) in lists.items() for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        if "actions" in batch:
            model.loss(batch)
        elif hasattr(model, "predict"):
            model.predict(batch)
        else:
            model(**batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {group: [linear_cka(*caught[(group, i)]) for i in range(len(layers))]
            for group, (_, layers) in lists.items()}
