"""The auxiliary objective of the "ao" fine-tune, which the capability vector is extracted from.

The head predicts where the end effector will be ``horizon`` frames ahead (state[:3] of the demos,
clipped to the episode's last frame; by default one action chunk ahead) from the pooled fused
context: knowing where the arm is going is a capability the backbone's features must carry for the
head to succeed. The head trains only in the ao run and is not part of the vector
(``capability_vector`` keeps the tensors both runs share). Targets are normalised with the model's
own state statistics (``fusion.state_mean/std``[:3]).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.hooks import RemovableHandle

from policies.data import DemoSet

Tensor = torch.Tensor
TARGET = "future_position"  # batch field: float [B, 3], end-effector position `horizon` frames ahead


class AuxiliaryHead(nn.Module):
    """Masked mean of the context tokens -> MLP -> normalised future position [B, 3]."""

    def __init__(self, d_model: int, hidden: int | None = None, horizon: int | None = None) -> None:
        super().__init__()
        if horizon is not None and horizon < 0:
            raise ValueError(f"horizon={horizon!r} is out of range: valid >= 0")
        self.horizon = horizon  # frames ahead; None: the model's action chunk
        hidden = hidden or d_model
        self.mlp = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, 3))
        self._caught: tuple[Tensor, tuple[Tensor, Tensor]] | None = None

    def forward(self, context: Tensor, mask: Tensor) -> Tensor:
        # context [B, K, D], mask [B, K] bool (True = real token)
        m = mask[..., None].to(context)  # [B, K, 1]
        pooled = (context * m).sum(1) / m.sum(1).clamp(min=1.0)  # [B, D]
        return self.mlp(pooled)  # [B, 3]

    def watch(self, model: nn.Module) -> RemovableHandle:
        """Keep the fused context of the model's forwards, so that ``auxiliary_loss`` right after
        ``model.loss(batch)`` reuses it instead of encoding the batch a second time."""
        def catch(_: nn.Module, args: tuple, output: tuple[Tensor, Tensor]) -> None:
            self._caught = (args[3], output)  # Fusion.forward(lang, lang_mask, vis, state)
        return model.fusion.register_forward_hook(catch)

    def take(self, state: Any) -> tuple[Tensor, Tensor] | None:
        """The caught context if it was computed from this very ``state`` tensor (then forgotten)."""
        caught, self._caught = self._caught, None
        return caught[1] if caught is not None and caught[0] is state else None


def future_positions(demos: DemoSet, frames: np.ndarray, horizon: int) -> Tensor:
    """state[:3] at frame + horizon of the same episode (the last frame past its end): [B, 3]."""
    if horizon < 0:
        raise ValueError(f"horizon={horizon!r} is out of range: valid >= 0")
    frames = np.asarray(frames)
    episodes = demos.episode_of[frames]
    last = demos.start[episodes] + demos.length[episodes] - 1  # [B]
    target = np.minimum(frames + horizon, last)
    return demos.state[torch.from_numpy(target), :3]


def auxiliary_loss(model: nn.Module, head: AuxiliaryHead, batch: dict[str, Any], demos: DemoSet | None = None,
                   context: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """MSE between the head's prediction and the normalised future position.

    Targets: ``batch["future_position"]`` [B, 3], else computed from ``demos`` and ``batch["frames"]``
    (the training loop adds the frame indices). Context: the given one, else the one ``head.watch``
    caught from this batch's ``model.loss``, else ``model.encode(batch)``."""
    target = batch.get(TARGET)
    if target is None:
        if demos is None or "frames" not in batch:
            raise ValueError(f"batch has no field {TARGET!r}: pass demos and a batch with frames")
        target = future_positions(demos, batch["frames"], model.config.chunk if head.horizon is None else head.horizon)
    context = context or head.take(batch.get("state")) or model.encode(batch)
    tokens, mask = context  # [B, K, D], [B, K]
    mean, std = model.fusion.state_mean[:3], model.fusion.state_std[:3]  # [3] each
    target = (torch.as_tensor(target, dtype=torch.float32, device=tokens.device) - mean) / std  # [B, 3]
    return F.mse_loss(head(tokens, mask), target)


def ao_loss(model: nn.Module, head: AuxiliaryHead, batch: dict[str, Any], weight: float = 1.0,
            demos: DemoSet | None = None) -> tuple[Tensor, dict[str, float]]:
    """Task loss + weight * auxiliary loss with one pass through the trunk, and the stats of both."""
    handle = head.watch(model)
    try:
        task, stats = model.loss(batch)
    finally:
        handle.remove()
    aux = auxiliary_loss(model, head, batch, demos)
    return task + weight * aux, {**stats, "aux": aux.item()}
