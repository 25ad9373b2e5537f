"""The reference VLA: a compact SmolVLA-style policy, meant to be read top to bottom.

    agentview, wrist  uint8 [B, H, W, 3] --resize--> [B, 3, S, S]   (S = config.image_size)
        --> conv stem, weights shared by the cameras, FiLM-modulated at every stage by the pooled
            instruction embedding (early conditioning; zero-initialised, so it starts as identity)
        --> visual tokens, G x G per camera (+ grid position embeddings)
        --> vision transformer layers over each camera's tokens (weights shared by the cameras)
        --> [B, n_cam * G * G, D]   (+ camera embeddings)
    instruction ids   [B, T]  --> token embeddings + positions    [B, T, D]
    state             [B, 8]  --> one state token                 [B, 1, D]
    fusion transformer over [language; vision; state]   --> context [B, S_ctx, D]
    action expert: `chunk` action tokens attend to [context; action tokens] (prefix attention: each
        expert layer's keys and values are the fused context followed by the action tokens, so the
        context is computed once and reused by every flow-matching step)  --> head --> [B, C, 7]

Why convolutions under a transformer: on this project's CPUs a patchify conv stem trains about 8x
faster than a ViT tower (reference/training.md), and FiLM inside the stem was what made the policy
ground the instruction. The transformers keep plain ``nn.Linear`` projections with stable names
(``vision.layers.0.attn.q_proj``, ``fusion.layers.0.attn.q_proj``, ``action_expert.layers.1.mlp.down_proj``)
for the adapters: every group (vision, fusion, action expert) has attention and MLP projections.

Batch format (a dict; numpy arrays or tensors):
    "agentview", "wrist": uint8 [B, H, W, 3] (or float in [0, 1]); any H, W: resized inside
    "state":              float [B, state_dim]
    "instruction":        list[str] of length B, tokenized by ``model.tokenizer`` ...
    "tokens", "token_mask": ... or LongTensor [B, T] ids and BoolTensor [B, T] (True = real token)
    "actions":            float [B, chunk, action_dim] in [-1, 1]         (training only)
    "action_mask":        bool  [B, chunk], False past the episode's end  (training only, optional)

Sizes at the default config (64x64, d_model 128): see ``count_parameters`` and the tests.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from policies.vla.config import VLAConfig
from policies.vla.tokenizer import InstructionTokenizer

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------ blocks
class Attention(nn.Module):
    """Multi-head attention from separate q/k/v/o projections (names adapters can target)."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.o_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: Tensor, kv: Tensor, kv_mask: Tensor) -> Tensor:
        # x [B, Q, D] queries; kv [B, K, D] keys/values; kv_mask [B, K] bool, True = may be attended
        (B, Q, D), K, h = x.shape, kv.shape[1], self.n_heads
        q = self.q_proj(x).view(B, Q, h, D // h).transpose(1, 2)  # [B, h, Q, D/h]
        k = self.k_proj(kv).view(B, K, h, D // h).transpose(1, 2)  # [B, h, K, D/h]
        v = self.v_proj(kv).view(B, K, h, D // h).transpose(1, 2)  # [B, h, K, D/h]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=kv_mask[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(y.transpose(1, 2).reshape(B, Q, D))  # [B, Q, D]


class MLP(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.up_proj, self.down_proj = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))  # [B, Q, D] -> [B, Q, hidden] -> [B, Q, D]


class Block(nn.Module):
    """Pre-norm transformer block; with ``context`` its keys/values are [context; own tokens]."""

    def __init__(self, d: int, n_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.mlp = Attention(d, n_heads, dropout), MLP(d, mlp_ratio * d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        # x [B, Q, D], mask [B, Q]; context [B, K, D] (already normalised), context_mask [B, K]
        h = self.norm1(x)
        kv, kv_mask = h, mask
        if context is not None:
            kv, kv_mask = torch.cat([context, h], 1), torch.cat([context_mask, mask], 1)  # [B, K+Q, D]
        x = x + self.drop(self.attn(h, kv, kv_mask))
        return x + self.drop(self.mlp(self.norm2(x)))  # [B, Q, D]


# ------------------------------------------------------------------------------ vision tower
class Stage(nn.Module):
    """Stride-2 conv, GroupNorm, FiLM by the instruction, GELU; then a residual 3x3 conv."""

    def __init__(self, c_in: int, c_out: int, d_cond: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(8, c_out)
        self.film = nn.Linear(d_cond, 2 * c_out)  # zero-initialised in VLA._init: identity at start
        self.conv = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, c_out)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        # x [N, c_in, H, W], cond [N, d_cond]
        x = self.norm(self.down(x))  # [N, c_out, H/2, W/2]
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)  # [N, c_out, 1, 1] each
        x = F.gelu(x * (1 + gamma) + beta)
        return x + F.gelu(self.norm2(self.conv(x)))  # [N, c_out, H/2, W/2]


def image_to_tensor(image: Tensor, size: int) -> Tensor:
    """uint8 [B, H, W, 3] (or float in [0, 1]) -> float [B, 3, size, size] in [-1, 1]."""
    x = image.permute(0, 3, 1, 2).float()
    if image.dtype == torch.uint8:
        x = x / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x * 2.0 - 1.0


def sincos_2d(grid: int, d: int) -> Tensor:
    """[grid*grid, d] embedding: sines and cosines of the row (first half) and column (second half)."""
    pos = torch.arange(grid, dtype=torch.float32)
    freqs = math.pi * float(grid) ** -torch.linspace(0, 1, d // 4)  # periods 2 .. 2 * grid cells
    angles = pos[:, None] * freqs[None]  # [grid, d/4]
    one = torch.cat([angles.sin(), angles.cos()], 1)  # [grid, d/2]
    rows, cols = one[:, None].expand(grid, grid, -1), one[None, :].expand(grid, grid, -1)
    return torch.cat([rows, cols], -1).reshape(grid * grid, -1)


class VisionTower(nn.Module):
    def __init__(self, c: VLAConfig) -> None:
        super().__init__()
        self.cameras, self.size, self.grid = c.cameras, c.image_size, c.feature_grid
        chans = (3, *c.stem_channels)
        # pooled instruction -> FiLM input. The LayerNorm (and the unit-scale init in VLA.__init__) keep
        # it O(1): FiLM's weights start at zero and under Adam learn only as fast as their input is large.
        self.cond = nn.Sequential(nn.LayerNorm(c.d_model), nn.Linear(c.d_model, c.d_model), nn.GELU())
        self.stages = nn.ModuleList(Stage(chans[i], chans[i + 1], c.d_model) for i in range(len(c.stem_channels)))
        merge = c.image_size // 2 ** len(c.stem_channels) // c.feature_grid  # stem cells per visual token
        self.proj = nn.Conv2d(chans[-1], c.d_model, merge, stride=merge)  # learned patch merge -> d_model
        self.grid_pos = nn.Parameter(torch.zeros(c.tokens_per_camera, c.d_model))
        # fixed 2-D sine-cosine positions (MAE): where a token lies is known from step 0, not learned
        self.register_buffer("grid_sincos", sincos_2d(c.feature_grid, c.d_model), persistent=False)
        self.camera_embed = nn.Parameter(torch.zeros(len(c.cameras), c.d_model))
        self.layers = nn.ModuleList(Block(c.d_model, c.n_heads, c.mlp_ratio, c.dropout) for _ in range(c.vision_layers))

    def forward(self, images: dict[str, Tensor], instruction: Tensor) -> Tensor:
        # images: camera -> [B, H, W, 3]; instruction [B, D] pooled embedding
        B, n_cam, G = instruction.shape[0], len(self.cameras), self.grid
        x = torch.stack([image_to_tensor(images[cam], self.size) for cam in self.cameras], 1)  # [B, n_cam, 3, S, S]
        x = x.flatten(0, 1)  # [B*n_cam, 3, S, S]: cameras folded into the batch, the stem is shared
        cond = self.cond(instruction).repeat_interleave(n_cam, 0)  # [B*n_cam, D]
        for stage in self.stages:
            x = stage(x, cond)  # [B*n_cam, C_k, S/2^k, S/2^k]
        x = self.proj(x).flatten(2).transpose(1, 2)  # [B*n_cam, D, G, G] -> [B*n_cam, G*G, D]
        x = x + self.grid_pos + self.grid_sincos
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # [B*n_cam, G*G]
        for layer in self.layers:
            x = layer(x, mask)  # each camera's tokens attend to each other
        x = x.view(B, n_cam, G * G, -1) + self.camera_embed[None, :, None, :]
        return x.flatten(1, 2)  # [B, n_cam*G*G, D]


# ---------------------------------------------------------------------------------- language
class Language(nn.Module):
    def __init__(self, c: VLAConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Parameter(torch.zeros(c.max_tokens, c.d_model))

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        # ids [B, T] long, mask [B, T] bool -> tokens [B, T, D], pooled [B, D] (masked mean, for FiLM)
        e = self.embed(ids)  # [B, T, D]
        m = mask[..., None].float()  # [B, T, 1]
        pooled = (e * m).sum(1) / m.sum(1).clamp(min=1.0)  # [B, D]
        return e + self.pos[: ids.shape[1]], pooled


# ------------------------------------------------------------------------------------ fusion
class Fusion(nn.Module):
    def __init__(self, c: VLAConfig) -> None:
        super().__init__()
        self.state_proj = nn.Linear(c.state_dim, c.d_model)
        # state normalisation, saved with the weights; the training loop sets it (VLA.set_state_stats)
        self.register_buffer("state_mean", torch.zeros(c.state_dim))
        self.register_buffer("state_std", torch.ones(c.state_dim))
        self.layers = nn.ModuleList(Block(c.d_model, c.n_heads, c.mlp_ratio, c.dropout) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)

    def forward(self, lang: Tensor, lang_mask: Tensor, vis: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        # lang [B, T, D], lang_mask [B, T], vis [B, N, D], state [B, state_dim]
        s = self.state_proj((state - self.state_mean) / self.state_std)[:, None]  # [B, 1, D]
        x = torch.cat([lang, vis, s], 1)  # [B, T+N+1, D]
        ones = torch.ones(x.shape[0], vis.shape[1] + 1, dtype=torch.bool, device=x.device)
        mask = torch.cat([lang_mask, ones], 1)  # [B, T+N+1]
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x), mask  # context [B, T+N+1, D], its mask


# ----------------------------------------------------------------------------- action expert
def timestep_embedding(t: Tensor, d: int) -> Tensor:
    """Sinusoidal embedding of t in [0, 1], periods 4e-3 .. 4 as in SmolVLA: [B] -> [B, d]."""
    periods = 4e-3 * (4.0 / 4e-3) ** torch.linspace(0, 1, d // 2, device=t.device)
    angles = 2 * math.pi * t[:, None] / periods  # [B, d/2]
    return torch.cat([angles.sin(), angles.cos()], -1)


class ActionExpert(nn.Module):
    def __init__(self, c: VLAConfig) -> None:
        super().__init__()
        self.flow = c.head == "flow"
        self.pos = nn.Parameter(torch.zeros(c.chunk, c.d_model))  # one learned query per chunk step
        if self.flow:  # the noisy action and the flow time enter the action tokens
            self.action_in = nn.Linear(c.action_dim, c.d_model)
            self.time_mlp = nn.Sequential(nn.Linear(c.d_model, c.d_model), nn.GELU(), nn.Linear(c.d_model, c.d_model))
        self.layers = nn.ModuleList(Block(c.d_model, c.n_heads, c.mlp_ratio, c.dropout) for _ in range(c.expert_layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.action_dim)

    def forward(self, context: Tensor, context_mask: Tensor, x_t: Tensor | None = None,
                t: Tensor | None = None) -> Tensor:
        # context [B, K, D], context_mask [B, K]; flow: x_t [B, C, A] noisy actions, t [B]
        B, d = context.shape[0], self.pos.shape[1]
        x = self.pos.expand(B, -1, -1)  # [B, C, D]
        if self.flow:
            x = x + self.action_in(x_t) + self.time_mlp(timestep_embedding(t, d))[:, None]
        mask = torch.ones(B, x.shape[1], dtype=torch.bool, device=x.device)  # [B, C]
        for layer in self.layers:
            x = layer(x, mask, context, context_mask)
        return self.head(self.norm(x))  # [B, C, A]: actions (l1) or velocity (flow)


# ------------------------------------------------------------------------------------ the VLA
class VLA(nn.Module):
    """Vision tower + language embedding + fusion transformer + action expert; ``loss`` and ``predict``.

    ``tokenizer`` is held as a plain attribute (not a module, not in the state dict) so that batches
    may carry instruction strings; it is saved beside the weights by ``checkpoint.save_checkpoint``.
    """

    def __init__(self, config: VLAConfig, tokenizer: InstructionTokenizer | None = None) -> None:
        super().__init__()
        if tokenizer is not None and tokenizer.vocab_size > config.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} words but config vocab_size={config.vocab_size}")
        self.config, self.tokenizer = config, tokenizer
        self.vision = VisionTower(config)
        self.language = Language(config)
        self.fusion = Fusion(config)
        self.action_expert = ActionExpert(config)
        self.apply(_init)
        nn.init.normal_(self.vision.cond[1].weight, std=config.d_model**-0.5)
        for stage in self.vision.stages:  # FiLM starts as the identity (scale 1, shift 0)
            nn.init.zeros_(stage.film.weight)
            nn.init.zeros_(stage.film.bias)

    @staticmethod
    def module_groups() -> dict[str, str]:
        """Parameter-name prefix of each part, for adapters ("vision" covers the FiLM generator too)."""
        return {"vision": "vision", "language": "language", "fusion": "fusion", "action_expert": "action_expert"}

    def set_state_stats(self, mean: Any, std: Any) -> None:
        """Normalise the state with the training set's statistics (stored in the checkpoint)."""
        self.fusion.state_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.fusion.state_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-6))

    # ---- shared trunk: everything but the action expert; run once per predict
    def encode(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Context tokens [B, K, D] and mask [B, K] from images, instruction and state."""
        device = self.language.pos.device
        ids, mask = self._tokens(batch, device)  # [B, T], [B, T]
        lang, pooled = self.language(ids, mask)  # [B, T, D], [B, D]
        images = {cam: _tensor(batch, cam, device) for cam in self.config.cameras}
        vis = self.vision(images, pooled)  # [B, N, D]
        return self.fusion(lang, mask, vis, _tensor(batch, "state", device, torch.float32))

    def loss(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Training loss (L1 on the chunk, or flow-matching MSE on the velocity) and scalar stats."""
        context, cmask = self.encode(batch)
        actions = _tensor(batch, "actions", context.device, torch.float32)  # [B, C, A]
        B, C, A = actions.shape
        if (C, A) != (self.config.chunk, self.config.action_dim):
            raise ValueError(f"batch field actions: expected [B, {self.config.chunk}, {self.config.action_dim}], "
                             f"got {list(actions.shape)}")
        valid = (_tensor(batch, "action_mask", context.device, torch.bool) if "action_mask" in batch
                 else torch.ones(B, C, dtype=torch.bool, device=context.device)).float()[..., None]  # [B, C, 1]
        denom = (valid.sum() * A).clamp(min=1.0)
        if self.config.head == "l1":
            pred = self.action_expert(context, cmask)  # [B, C, A]
            loss = ((pred - actions).abs() * valid).sum() / denom
            return loss, {"loss": loss.item(), "l1": loss.item()}
        noise = torch.randn_like(actions)  # [B, C, A]
        a, b = self.config.flow_beta
        t = torch.distributions.Beta(torch.tensor(float(a)), torch.tensor(float(b))).sample((B,)).to(actions)
        t = 0.999 * t + 0.001  # [B], in (0.001, 1]: t = 1 is pure noise
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions  # [B, C, A]
        velocity = self.action_expert(context, cmask, x_t, t)  # predicts noise - actions
        loss = ((velocity - (noise - actions)) ** 2 * valid).sum() / denom
        return loss, {"loss": loss.item(), "flow_mse": loss.item()}

    @torch.no_grad()
    def predict(self, batch: dict[str, Any], noise: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Action chunks [B, chunk, action_dim] in [-1, 1]. Call ``eval()`` first for dropout-free output.

        Flow head: Euler integration from t = 1 (noise) to t = 0 in ``flow_steps`` steps. The start
        noise is ``noise`` [B, C, A] if given, else drawn from ``generator``, else from a generator
        seeded with 0, so predictions are reproducible unless the caller asks otherwise.
        """
        context, cmask = self.encode(batch)
        if self.config.head == "l1":
            return self.action_expert(context, cmask).clamp(-1, 1)
        B, shape = context.shape[0], (context.shape[0], self.config.chunk, self.config.action_dim)
        if noise is None:
            if generator is None:
                generator = torch.Generator(device=context.device).manual_seed(0)
            noise = torch.randn(shape, generator=generator, device=context.device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise: expected shape {list(shape)}, got {list(noise.shape)}")
        x, dt = noise.to(context), -1.0 / self.config.flow_steps
        for i in range(self.config.flow_steps):
            t = torch.full((B,), 1.0 + i * dt, device=context.device)
            x = x + dt * self.action_expert(context, cmask, x, t)  # [B, C, A]
        return x.clamp(-1, 1)

    def _tokens(self, batch: dict[str, Any], device: torch.device) -> tuple[Tensor, Tensor]:
        """Token ids and mask [B, T], T <= max_tokens, from "tokens"/"token_mask" or "instruction"."""
        if "tokens" in batch:
            ids = _tensor(batch, "tokens", device, torch.long)
            mask = _tensor(batch, "token_mask", device, torch.bool) if "token_mask" in batch else ids != 0
        elif "instruction" in batch:
            if self.tokenizer is None:
                raise ValueError("batch field instruction: the model has no tokenizer; pass tokens and token_mask")
            ids, mask = self.tokenizer.encode(list(batch["instruction"]), self.config.max_tokens)
            ids, mask = ids.to(device), mask.to(device)
        else:
            raise ValueError("batch has neither instruction nor tokens")
        if ids.dim() != 2 or mask.shape != ids.shape:
            raise ValueError(f"batch field tokens: expected [B, T] ids and mask, got {list(ids.shape)} and {list(mask.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"batch field tokens: ids must lie in [0, {self.config.vocab_size})")
        return ids[:, : self.config.max_tokens], mask[:, : self.config.max_tokens]


def _init(module: nn.Module) -> None:
    """GPT-style init for linear layers and embeddings; convs and norms keep PyTorch's defaults."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    for name, param in module.named_parameters(recurse=False):
        if name in ("pos", "grid_pos", "camera_embed"):
            nn.init.normal_(param, std=0.02)


def _tensor(batch: dict[str, Any], key: str, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """``batch[key]`` as a tensor on ``device``; a one-line error naming a missing field."""
    if key not in batch:
        raise ValueError(f"batch has no field {key!r}")
    value = batch[key]
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    return torch.as_tensor(value, device=device, dtype=dtype)


def count_parameters(model: VLA) -> dict[str, int]:
    """Parameters per group (``module_groups``) and in total; every parameter lies in one group."""
    counts = {group: 0 for group in model.module_groups()}
    for name, param in model.named_parameters():
        counts[name.split(".", 1)[0]] += param.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
