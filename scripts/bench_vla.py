"""Benchmark of the reference VLA: batched inference throughput and training step time.

    python scripts/bench_vla.py [--policy results/reference] [--repeats 20] [--json results/bench_vla.json]

Inference: ``VLAPolicy.act`` on harness-shaped batches (both cameras 128x128 uint8, as the env
pool delivers them, state and instruction), at batch 1, 8 and 32; observations per second is the
batch size over the median call time. Training: one AdamW step (forward, backward, clip, update)
of ``policies.train``'s loop at batch 32 and 64 on random 64 px images. Both heads are measured at
the checkpoint's size (a fresh model of the same config for the head the checkpoint lacks), with
the thread count training uses (2). Figures vary with machine load: compare within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.base import Batch  # noqa: E402
from policies.vla.checkpoint import load_checkpoint  # noqa: E402
from policies.vla.config import VLAConfig  # noqa: E402
from policies.vla.model import VLA, count_parameters  # noqa: E402
from policies.vla.policy import VLAPolicy  # noqa: E402
from policies.vla.tokenizer import build_tokenizer, instruction_corpus  # noqa: E402

INSTRUCTION = "put the red cube in the bowl"


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()  # warm-up (allocations, kernels)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_inference(model: VLA, sizes: tuple[int, ...], repeats: int, image: int = 128) -> dict[str, float]:
    """Observations per second of ``VLAPolicy.act`` at each batch size."""
    policy, rng = VLAPolicy(model), np.random.default_rng(0)
    out = {}
    for n in sizes:
        batch = Batch(slots=list(range(n)), state=rng.normal(size=(n, model.config.state_dim)).astype(np.float32),
                      instruction=[INSTRUCTION] * n,
                      agentview=rng.integers(0, 256, (n, image, image, 3), dtype=np.uint8),
                      wrist=rng.integers(0, 256, (n, image, image, 3), dtype=np.uint8))
        out[str(n)] = round(n / median_seconds(lambda: policy.act(batch), repeats), 1)
    return out


def bench_train_step(config: VLAConfig, batch_size: int, repeats: int) -> float:
    """Median seconds of one training step at ``batch_size`` (random data at the model's image size)."""
    model = VLA(config, build_tokenizer(instruction_corpus())).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    s = config.image_size
    batch = {cam: torch.randint(0, 256, (batch_size, s, s, 3), generator=g, dtype=torch.uint8) for cam in config.cameras}
    batch |= {"state": torch.randn(batch_size, config.state_dim, generator=g), "instruction": [INSTRUCTION] * batch_size,
              "actions": torch.rand(batch_size, config.chunk, config.action_dim, generator=g) * 2 - 1}

    def step() -> None:
        loss, _ = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return round(median_seconds(step, repeats), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=ROOT / "results" / "reference",
                        help="checkpoint directory (default results/reference; a fresh default model if absent)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if (args.policy / "config.json").exists():
        base, source = load_checkpoint(args.policy).model, str(args.policy)
    else:
        base, source = VLA(VLAConfig(), build_tokenizer(instruction_corpus())), "fresh VLAConfig()"
    results = {"policy": source, "threads": args.threads, "parameters": count_parameters(base)["total"], "heads": {}}
    for head in ("l1", "flow"):
        config = dataclasses.replace(base.config, head=head)
        model = base if base.config.head == head else VLA(config, base.tokenizer)
        row = {"inference_obs_per_s": bench_inference(model, (1, 8, 32), args.repeats),
               "train_step_s": {str(b): bench_train_step(config, b, max(5, args.repeats // 2)) for b in (32, 64)}}
        results["heads"][head] = row
        print(f"{head:>4} head | obs/s at batch 1/8/32: "
              + " / ".join(str(v) for v in row["inference_obs_per_s"].values())
              + " | train step at batch 32/64: " + " / ".join(f"{v:.3f} s" for v in row["train_step_s"].values()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
