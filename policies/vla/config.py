"""Configuration of the reference VLA: one validated dataclass, stored as JSON beside the weights.

Every field is checked in ``__post_init__`` so that a bad checkpoint or a typo in a training
script fails at once with a one-line error naming the field, not later inside a tensor op.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from policies.integrity import short

KNOWN_CAMERAS = ("agentview", "wrist")  # the cameras a harness ``Batch`` carries
HEADS = ("l1", "flow")
# Upper bounds, far above any model this project trains: a checkpoint's config is checked against
# its weights only after a model is built, so an absurd size must be refused before that.
LIMITS = {"image_size": 4096, "state_dim": 4096, "action_dim": 4096, "chunk": 4096, "feature_grid": 1024,
          "d_model": 1 << 16, "n_heads": 1024, "vision_layers": 256, "n_layers": 256, "expert_layers": 256,
          "mlp_ratio": 64, "flow_steps": 10_000, "vocab_size": 1 << 20, "max_tokens": 1 << 16}
MAX_CHANNELS = 1 << 16


@dataclass(frozen=True)
class VLAConfig:
    """Sizes of the vision stem, fusion transformer and action expert, and the action head.

    The default (64x64 images, d_model 128) has about 1.7 M parameters; a batch-32 training step takes ~0.15 s on 2 CPU threads.
    """

    # observations and actions
    image_size: int = 64  # camera images are resized to image_size x image_size inside the model
    cameras: tuple[str, ...] = ("agentview", "wrist")
    state_dim: int = 8
    action_dim: int = 7
    chunk: int = 8  # actions predicted per query
    # vision tower: one stride-2 stage per entry, FiLM-conditioned by the instruction
    stem_channels: tuple[int, ...] = (32, 64, 128)
    feature_grid: int = 4  # visual tokens per camera = feature_grid ** 2 (stem cells merged by a strided conv)
    # transformers
    d_model: int = 128
    n_heads: int = 4
    vision_layers: int = 2  # transformer layers over each camera's visual tokens (a small ViT above the stem)
    n_layers: int = 4  # fusion transformer over [language; vision; state]
    expert_layers: int = 2  # action expert over the chunk's action tokens
    mlp_ratio: int = 4
    dropout: float = 0.0  # off by default: on CPUs it costs ~30% of a step; augment images instead
    # action head
    head: str = "l1"  # "l1": regress the chunk; "flow": flow matching (pi0 / SmolVLA)
    flow_steps: int = 10  # Euler steps at inference (flow head)
    flow_beta: tuple[float, float] = (1.5, 1.0)  # t ~ 0.999 Beta(a, b) + 0.001 in training (SmolVLA)
    # language
    vocab_size: int = 256  # embedding rows; the tokenizer's vocabulary must fit
    max_tokens: int = 64  # instruction tokens kept; the longest level-5 rewrite has 58

    def __post_init__(self) -> None:
        # JSON gives lists: store tuples so that configs compare and hash equal after a round trip.
        for name in ("cameras", "stem_channels", "flow_beta"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _check(self)

    @property
    def tokens_per_camera(self) -> int:
        return self.feature_grid**2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VLAConfig":
        """The config from ``to_dict`` output; a one-line ``ValueError`` on unknown or invalid fields."""
        if not isinstance(data, dict):
            raise ValueError(f"VLA config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"VLA config: unknown field(s) {', '.join(short(u) for u in unknown[:3])}; "
                             f"valid fields: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except (TypeError, OverflowError) as err:  # e.g. a list where a number was expected
            raise ValueError(f"VLA config: {short(str(err), 200)}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(c: VLAConfig) -> None:
    """Raise a one-line ``ValueError`` naming the first invalid field."""

    def bad(name: str, why: str) -> None:
        raise ValueError(f"VLA config field {name}={short(getattr(c, name))}: {why}")

    for name, limit in LIMITS.items():
        if not _is_int(getattr(c, name)) or not 1 <= getattr(c, name) <= limit:
            bad(name, f"must be a positive integer, at most {limit}")
    if not isinstance(c.cameras, tuple) or not c.cameras:
        bad("cameras", f"must be a non-empty list of {KNOWN_CAMERAS}")
    if any(cam not in KNOWN_CAMERAS for cam in c.cameras) or len(set(c.cameras)) != len(c.cameras):
        bad("cameras", f"must name distinct cameras among {KNOWN_CAMERAS}")
    if not isinstance(c.stem_channels, tuple) or not c.stem_channels:
        bad("stem_channels", "must be a non-empty list of positive integers")
    if any(not _is_int(ch) or ch < 8 or ch % 8 or ch > MAX_CHANNELS for ch in c.stem_channels):
        bad("stem_channels", f"each entry must be a multiple of 8 (GroupNorm uses 8 groups), at most {MAX_CHANNELS}")
    native = c.image_size // 2 ** len(c.stem_channels)
    if c.image_size % 2 ** len(c.stem_channels) or native < 1:
        bad("image_size", f"must be divisible by 2**len(stem_channels) = {2 ** len(c.stem_channels)}")
    if c.feature_grid > native or native % c.feature_grid:
        bad("feature_grid", f"must divide the stem's output grid {native}x{native} (image_size / 2**stages)")
    if c.d_model % 4:
        bad("d_model", "must be a multiple of 4 (the 2-D sine-cosine positions use a quarter each)")
    if c.d_model % c.n_heads or (c.d_model // c.n_heads) % 2:
        bad("d_model", f"must be divisible by n_heads={c.n_heads} with an even head size")
    if not isinstance(c.dropout, (int, float)) or isinstance(c.dropout, bool) or not 0.0 <= c.dropout < 1.0:
        bad("dropout", "must be in [0, 1)")
    if c.head not in HEADS:
        bad("head", f"must be one of {', '.join(HEADS)}")
    if (not isinstance(c.flow_beta, tuple) or len(c.flow_beta) != 2
            or any(not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v < float("inf")
                   for v in c.flow_beta)):
        bad("flow_beta", "must be two positive finite numbers (a, b)")
    if c.vocab_size < 2:
        bad("vocab_size", "must hold at least [PAD] and [UNK]")
