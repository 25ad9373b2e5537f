"""``simeval finetune``: adapt a VLA checkpoint to new demonstrations with one adapter method.

The same loop as ``simeval train`` (``policies.train.fit``): only the parameters the method releases
train, the method's auxiliary terms (router, load-balance, orthogonality losses) join the task loss,
and the result is an adapted checkpoint (``policies.adapters.io``) that ``simeval run --policy DIR``
evaluates like any other. CapVector without ``--vector`` first extracts its capability vector from
two fine-tunes of the base on the same data (plain, and with the auxiliary objective).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.data import load_demos, sample_batch
from policies.train import TrainConfig, fit, make_optimizer

# Learning rates by method: adapters start at zero and take larger steps than whole-model updates.
VECTOR_FILE = "capability_vector.safetensors"
DEFAULT_LR = {"full": 1e-4, "last_k": 1e-4, "clp": 1e-4, "capvector": 1e-4, "lora": 1e-3, "lora_sp": 1e-3,
              "gse": 1e-3}


def finetune(base: Path, method_name: str, options: dict[str, Any], data: list[Path], out: Path,
             steps: int = 2000, batch: int = 32, lr: float | None = None, robots: tuple[str, ...] | None = None,
             tasks: tuple[str, ...] | None = None, seed: int = 0, threads: int = 2,
             device: str = "auto") -> dict[str, Any]:
    """Fine-tune ``base`` with ``method_name``; write the adapted checkpoint to ``out``; a summary."""
    from policies.adapters.base import count_parameters, fingerprint
    from policies.adapters.io import save_adapted
    from policies.adapters.registry import get_method
    from policies.vla.checkpoint import load_checkpoint

    method = get_method(method_name)
    config = method.config(dict(options))  # option errors before any data is read
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose another --out")
    cfg = TrainConfig(steps=steps, batch=batch, lr=lr or DEFAULT_LR[method_name], warmup=min(100, steps // 10),
                      seed=seed, threads=threads, device=device, robots=tuple(robots or ()),
                      checkpoint_every=max(steps, 1))
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    dev = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if cfg.device == "auto" else cfg.device))
    model = load_checkpoint(base).model
    base_fp = fingerprint(model)
    demos = load_demos(data, model.config.image_size, cfg.robots or None, tasks or None)
    rng, generator = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    context: dict[str, Any] = {"calibration": sample_batch(demos, rng.integers(0, len(demos), 64), model.config.chunk)}
    vector_seconds = 0.0  # CapVector's two extraction fine-tunes, part of its training cost
    if method_name == "capvector":  # the vector travels inside the checkpoint, by a relative name
        start = time.perf_counter()
        vector = Path(config.vector) if config.vector else extract_vector(base, demos, cfg, out / "capvector", dev)
        vector_seconds = time.perf_counter() - start
        if vector.resolve() != (out / VECTOR_FILE).resolve():
            shutil.copyfile(vector, out / VECTOR_FILE)
        config.vector = VECTOR_FILE
    model = method.apply(model.to(dev), config, adapter_dir=out, **context).train()
    optimizer = make_optimizer(model, cfg)
    start = time.perf_counter()
    fit(model, optimizer, demos, cfg, model.config.chunk, dev, rng, generator, 0, out / "metrics.jsonl",
        extra_losses=lambda _batch: method.losses(model, config))
    seconds = time.perf_counter() - start
    probe = [sample_batch(demos, rng.integers(0, len(demos), 32), model.config.chunk) for _ in range(4)]
    diagnostics = method.diagnose(model, probe)
    counts = count_parameters(model)
    summary = {"method": method_name, "options": config.to_dict(), "steps": steps, "batch": batch, "lr": cfg.lr,
               "train_seconds": round(seconds, 1), "step_seconds": round(seconds / max(1, steps), 4),
               "vector_seconds": round(vector_seconds, 1),
               "trainable": counts["trainable"], "total": counts["total"], "frames": len(demos),
               "episodes": len(demos.length), "data": [str(d) for d in data], "train": asdict(cfg),
               "diagnostics": diagnostics}
    save_adapted(out, base, method, config, model, base_fp, {"finetune": summary})
    (out / "finetune.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


AUXILIARY_DIR = "auxiliary"  # inside the extraction folder: the auxiliary-objective fine-tune, a checkpoint


def extract_vector(base: Path, demos: Any, cfg: TrainConfig, out: Path, device: torch.device) -> Path:
    """CapVector's two fine-tunes of ``base`` with identical settings (plain SFT, and SFT plus the
    auxiliary objective); the difference of their weights is saved as the capability vector. The
    auxiliary fine-tune is also kept as a checkpoint (``out/auxiliary``), so that it can be
    evaluated itself, and each fine-tune's wall seconds go to ``out/extraction.json``: CapVector
    claims the merged model reaches the auxiliary model's success at plain fine-tuning's cost."""
    from policies.adapters.base import mark_trainable
    from policies.adapters.capvector import AuxiliaryHead, auxiliary_loss, capability_vector, save_vector
    from policies.vla.checkpoint import load_checkpoint, save_checkpoint

    weights, seconds = {}, {}
    for name in ("ft", "ao"):
        torch.manual_seed(cfg.seed)
        started = time.perf_counter()
        checkpoint = load_checkpoint(base)
        model = checkpoint.model.to(device).train()
        mark_trainable(model, (".*",))
        params = list(model.parameters())
        head = None
        if name == "ao":
            head = AuxiliaryHead(model.config.d_model).to(device)
            head.watch(model)  # reuse the context of model.loss: one pass through the trunk per step
            params += list(head.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng, generator = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
        out.mkdir(parents=True, exist_ok=True)
        extra = (lambda batch, m=model, h=head: {"aux": auxiliary_loss(m, h, batch, demos)}) if head else None
        fit(model, optimizer, demos, cfg, model.config.chunk, device, rng, generator, 0,
            out / f"metrics_{name}.jsonl", extra_losses=extra)
        seconds[name] = round(time.perf_counter() - started, 1)
        weights[name] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if name == "ao":  # the policy without its head: what the auxiliary objective taught the trunk
            save_checkpoint(out / AUXILIARY_DIR, model.eval(), model.config, checkpoint.tokenizer,
                            {**checkpoint.extra, "capvector_auxiliary": {"steps": cfg.steps, "seconds": seconds[name]}})
    path = out / "capability_vector.safetensors"
    save_vector(capability_vector(weights["ft"], weights["ao"]), path)
    (out / "extraction.json").write_text(json.dumps({"plain_seconds": seconds["ft"], "auxiliary_seconds": seconds["ao"],
                                                     "steps": cfg.steps, "auxiliary": AUXILIARY_DIR}, indent=1) + "\n")
    return path
