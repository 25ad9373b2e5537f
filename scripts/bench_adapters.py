"""Benchmark of the adaptation methods against the frozen base, in one run:

    python scripts/bench_adapters.py [--policy results/reference] [--repeats 10] [--json results/bench_adapters.json]

For each method at its default options (applied to the same base): the training step time (forward,
backward, AdamW step on the trainable parameters, auxiliary losses included) at batch 32, and the
inference time of ``predict`` at batch 32, both as ratios to the frozen base's (the base's training
step trains every parameter: full fine-tuning). For LoRA-SP also its dynamic-rank forward against
the same bank at full rank (every direction kept, no selection), and LoRA merged into the weights.
Random 64 px inputs; 2 threads; compare the ratios (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from policies.adapters import PACKAGES, get_method  # noqa: E402
from policies.adapters.base import merge_adapters  # noqa: E402
from bench_vla import median_seconds  # noqa: E402
from policies.vla import VLA, VLAConfig, build_tokenizer, instruction_corpus, load_checkpoint  # noqa: E402


def make_batch(config: VLAConfig, n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    s = config.image_size
    return {"agentview": torch.randint(0, 256, (n, s, s, 3), generator=g, dtype=torch.uint8),
            "wrist": torch.randint(0, 256, (n, s, s, 3), generator=g, dtype=torch.uint8),
            "state": torch.randn(n, config.state_dim, generator=g), "instruction": ["open the drawer"] * n,
            "actions": torch.rand(n, config.chunk, config.action_dim, generator=g) * 2 - 1}


def step_time(model: torch.nn.Module, method, config, batch: dict, repeats: int) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.train()

    def step() -> None:
        loss, _ = model.loss(batch)
        if method is not None:
            loss = loss + sum(method.losses(model, config).values(), torch.zeros(()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return median_seconds(step, repeats)


def infer_time(model: torch.nn.Module, batch: dict, repeats: int) -> float:
    model.eval()
    with torch.no_grad():
        return median_seconds(lambda: model.predict(batch), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=ROOT / "results" / "reference")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    base = (load_checkpoint(args.policy).model if (args.policy / "config.json").exists()
            else VLA(VLAConfig(), build_tokenizer(instruction_corpus())))
    batch = make_batch(base.config, args.batch)
    frozen = copy.deepcopy(base)
    for p in frozen.parameters():
        p.requires_grad_(True)
    ref_step, ref_infer = step_time(frozen, None, None, batch, args.repeats), infer_time(frozen, batch, args.repeats)
    rows = {"base (full fine-tuning step)": {"step_s": round(ref_step, 4), "infer_s": round(ref_infer, 4)}}
    print(f"{'method':<30} {'step s':>8} {'x base':>7} {'infer s':>8} {'x base':>7}")
    print(f"{'base':<30} {ref_step:8.4f} {1:7.2f} {ref_infer:8.4f} {1:7.2f}")
    for name in PACKAGES:
        method = get_method(name)
        options = {}
        if name == "capvector":  # a zero vector: the cost of CapVector's step does not depend on its values
            from policies.adapters.capvector import save_vector

            path = Path("/tmp/bench_capvector.safetensors")
            save_vector({n: torch.zeros_like(p) for n, p in base.named_parameters()}, path)
            options = {"vector": str(path)}
        config = method.config(options)
        model = method.apply(copy.deepcopy(base), config, calibration=make_batch(base.config, 16))
        step, infer = step_time(model, method, config, batch, args.repeats), infer_time(model, batch, args.repeats)
        rows[name] = {"step_s": round(step, 4), "infer_s": round(infer, 4), "step_x": round(step / ref_step, 2),
                      "infer_x": round(infer / ref_infer, 2)}
        print(f"{name:<30} {step:8.4f} {step / ref_step:7.2f} {infer:8.4f} {infer / ref_infer:7.2f}", flush=True)
        if name == "lora":
            merged = merge_adapters(model)
            t = infer_time(merged, batch, args.repeats)
            rows["lora merged"] = {"infer_s": round(t, 4), "infer_x": round(t / ref_infer, 2)}
            print(f"{'lora merged':<30} {'':>8} {'':>7} {t:8.4f} {t / ref_infer:7.2f}")
        if name == "lora_sp":
            from policies.adapters.lora_sp import set_dynamic

            set_dynamic(model, False)
            t = infer_time(model, batch, args.repeats)
            rows["lora_sp full rank"] = {"infer_s": round(t, 4), "infer_x": round(t / ref_infer, 2),
                                         "dynamic_over_full_rank": round(infer / t, 2)}
            print(f"{'lora_sp full rank (no select)':<30} {'':>8} {'':>7} {t:8.4f} {t / ref_infer:7.2f}"
                  f"   dynamic / full rank = {infer / t:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"policy": str(args.policy), "batch": args.batch, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
