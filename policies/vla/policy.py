"""The reference VLA behind the harness's ``Policy`` contract: batched, chunked, reproducible.

``act`` returns the first ``chunk_exec`` actions of each predicted chunk, which the harness runs
open-loop. For the flow head the start noise of each slot comes from that slot's own generator,
seeded from the episode's seed at ``reset``, so an episode's actions do not depend on which other
episodes happen to share its batch. Its observation spec is the config's cameras at the size the
training frames were rendered at (``render_size`` in the checkpoint), which the model then resizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from policies.base import Batch, EpisodeStart, ObservationSpec, Policy
from policies.vla.checkpoint import load_checkpoint
from policies.vla.model import VLA


class VLAPolicy(Policy):
    """Runs a :class:`VLA` under ``torch.inference_mode`` on the harness's batches.

    Each observation is run as a batch of one: kernels pick their blocking by batch size, so the same
    observation gives actions that differ in the sixth digit in a batch of 1, 2 or 4 (measured), and
    over a long episode that can move its outcome by a step. Which episodes share a batch depends on
    the number of workers and on timing, so batched inference would let those change outcomes. The
    engine's batches are small anyway (slots answer one at a time), and at this model's size a batch
    of one costs about 6 ms on one thread."""

    def __init__(self, model: VLA, chunk_exec: int | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, render_size: int | None = None) -> None:
        if model.tokenizer is None:
            raise ValueError("VLAPolicy needs a model with a tokenizer (load it with load_checkpoint)")
        self.config = model.config
        self.chunk_exec = self.config.chunk // 2 if chunk_exec is None else chunk_exec
        if not isinstance(self.chunk_exec, int) or not 1 <= self.chunk_exec <= self.config.chunk:
            raise ValueError(f"chunk_exec={chunk_exec!r} must be an integer in [1, chunk={self.config.chunk}]")
        self.chunk = self.chunk_exec
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.seed = seed
        self.observation_spec = ObservationSpec(cameras=self.config.cameras, image_size=render_size)
        self._generators: dict[int, torch.Generator] = {}

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        for slot, start in zip(slots, starts):
            self._generators[slot] = _generator(self.seed, start.seed)

    def act(self, batch: Batch) -> np.ndarray:
        """Chunks (B, chunk_exec, action_dim) float32 in [-1, 1]."""
        inputs = self._inputs(batch)
        noise = None
        if self.config.head == "flow":
            shape = (self.config.chunk, self.config.action_dim)
            noise = torch.stack([torch.randn(shape, generator=self._slot_generator(s)) for s in batch.slots])
        with torch.inference_mode():  # as no_grad, with less per-op bookkeeping (same numbers)
            noise = None if noise is None else noise.to(self.device)
            chunk = torch.cat([self.model.predict(_row(inputs, i), noise=None if noise is None else noise[i:i + 1])
                               for i in range(len(batch.slots))])  # one observation at a time: see above
        return chunk[:, : self.chunk_exec].cpu().numpy().astype(np.float32)

    def _slot_generator(self, slot: int) -> torch.Generator:
        if slot not in self._generators:  # a slot used without reset: still deterministic
            self._generators[slot] = _generator(self.seed, -1 - slot)
        return self._generators[slot]

    def _inputs(self, batch: Batch) -> dict:
        """The model's batch dict, after one-line checks naming the first bad field."""
        n = len(batch.slots)
        state = np.asarray(batch.state)
        if state.shape != (n, self.config.state_dim):
            raise ValueError(f"observation field state: expected shape ({n}, {self.config.state_dim}), got {state.shape}")
        if not np.isfinite(state).all():
            raise ValueError("observation field state: contains NaN or inf")
        if len(batch.instruction) != n or not all(isinstance(t, str) for t in batch.instruction):
            raise ValueError(f"observation field instruction: expected {n} strings, got {len(batch.instruction)} items")
        inputs: dict = {"state": torch.from_numpy(state.astype(np.float32)), "instruction": list(batch.instruction)}
        for cam in self.config.cameras:
            image = getattr(batch, cam)
            if image is None:
                raise ValueError(f"observation field {cam}: missing (the policy needs images from {self.config.cameras})")
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 4 or image.shape[0] != n or image.shape[-1] != 3:
                raise ValueError(f"observation field {cam}: expected uint8 ({n}, H, W, 3), "
                                 f"got {image.dtype} {image.shape}")
            inputs[cam] = torch.from_numpy(np.ascontiguousarray(image))
        return inputs


def _row(inputs: dict, i: int) -> dict:
    """Observation ``i`` of a model batch dict, as a batch of one."""
    return {k: v[i:i + 1] for k, v in inputs.items()}


def _generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one (policy seed, episode seed) pair."""
    mixed = np.random.SeedSequence([seed & 0xFFFFFFFF, stream & 0xFFFFFFFF]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed))


def load_vla_policy(path: Path | str, chunk_exec: int | None = None, device: str = "cpu") -> VLAPolicy:
    """The policy saved in checkpoint directory ``path`` (the entry point of ``simeval_vla`` in ``policies.loader``)."""
    checkpoint = load_checkpoint(path, device)
    render_size = checkpoint.extra.get("render_size")
    if render_size is not None and (not isinstance(render_size, int) or isinstance(render_size, bool)):
        raise ValueError(f"{Path(path) / 'config.json'}: field extra.render_size={render_size!r} is not an integer")
    return VLAPolicy(checkpoint.model, chunk_exec=chunk_exec, device=device, render_size=render_size)
