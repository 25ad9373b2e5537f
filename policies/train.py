"""``simeval train``: behaviour cloning of the reference VLA from scripted demonstrations.

A YAML config has two sections, ``model`` (fields of :class:`policies.vla.config.VLAConfig`) and
``train`` (fields of :class:`TrainConfig`). Training is seeded, logs every ``log_every`` steps to
``metrics.jsonl``, writes a checkpoint every ``checkpoint_every`` steps to ``latest/`` (model,
tokenizer, optimiser moments and random-generator states, all safetensors or JSON) and can resume
from it exactly; the final checkpoint is ``final/`` and ``curve.png`` plots the loss.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save

from policies.data import CAMERAS, load_demos, random_shift, sample_batch


@dataclass
class TrainConfig:
    steps: int = 6000
    batch: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    warmup: int = 200
    grad_clip: float = 1.0
    shift_pad: int = 4  # random-shift augmentation, pixels at the model's image size
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    robots: tuple[str, ...] = ("Panda",)
    device: str = "auto"  # auto: cuda when present, else cpu
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "checkpoint_every", "log_every", "threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup < 0 or self.shift_pad < 0:
            raise ValueError("train: lr must be > 0 and weight_decay, warmup, shift_pad >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device must be auto, cpu or cuda, got {self.device!r}")
        self.robots = tuple(self.robots)


def load_config(path: Path) -> tuple[Any, TrainConfig]:
    """(VLAConfig, TrainConfig) from a YAML file; one-line errors naming the section and field."""
    from policies.vla.config import VLAConfig

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read the training config ({err})".splitlines()[0]) from None
    unknown = set(data) - {"model", "train"}
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; valid sections: model, train")
    train = data.get("train") or {}
    valid = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(train) - valid)
    if bad:
        raise ValueError(f"{path}: unknown train field(s) {bad}; valid: {', '.join(sorted(valid))}")
    return VLAConfig.from_dict(data.get("model") or {}), TrainConfig(**train)


def _lr(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _save_state(folder: Path, optimizer: torch.optim.Optimizer, model: torch.nn.Module, step: int,
                rng: np.random.Generator, generator: torch.Generator) -> None:
    """Optimiser moments (safetensors, by parameter name) and the step and generator states (JSON)."""
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {"torch_generator": generator.get_state()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value):
                    tensors[f"{names[id(param)]}::{key}"] = value.detach().cpu().contiguous().reshape(-1) \
                        if value.dim() == 0 else value.detach().cpu().contiguous()
    (folder / "optimizer.safetensors").write_bytes(save(tensors))  # an OSError names the file
    (folder / "train_state.json").write_text(json.dumps({"step": step, "numpy_rng": rng.bit_generator.state}))


def _load_state(folder: Path, optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                rng: np.random.Generator, generator: torch.Generator) -> int:
    state = json.loads((folder / "train_state.json").read_text())
    tensors = load_file(str(folder / "optimizer.safetensors"))
    generator.set_state(tensors.pop("torch_generator"))
    rng.bit_generator.state = state["numpy_rng"]
    params = dict(model.named_parameters())
    for key, value in tensors.items():
        name, slot = key.split("::")
        param = params[name]
        value = value.to(param.device)
        optimizer.state[param][slot] = value.reshape(()) if slot == "step" else value
    return int(state["step"])


def train(config_path: Path, data: list[Path], out: Path, steps: int | None = None, resume: bool = False) -> dict:
    """Train, checkpointing as it goes; the summary (steps, final loss, seconds, device)."""
    from policies.vla.checkpoint import load_checkpoint, save_checkpoint
    from policies.vla.model import VLA, count_parameters
    from policies.vla.tokenizer import build_tokenizer, instruction_corpus

    model_cfg, cfg = load_config(config_path)
    if steps is not None:
        cfg.steps = steps
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    latest = out / "latest"
    if out.exists() and not resume and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; pass --resume to continue its training or choose another --out")
    if resume and out.is_dir() and any(out.iterdir()) and not (out / "train_config.json").is_file():
        raise ValueError(f"{out} is not a simeval training directory (no train_config.json), so --resume would "
                         f"replace its latest/ and final/; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    demos = load_demos(data, model_cfg.image_size, cfg.robots)
    rng, generator = np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)
    if resume and latest.is_dir():
        model = load_checkpoint(latest, device=str(device))[0]
    else:
        model = VLA(model_cfg, build_tokenizer(instruction_corpus()))
        model.set_state_stats(demos.state.mean(0), demos.state.std(0))
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    step = _load_state(latest, optimizer, model, rng, generator) if resume and latest.is_dir() else 0
    (out / "train_config.json").write_text(json.dumps({"model": model_cfg.to_dict(), "train": asdict(cfg),
                                                       "data": [str(d) for d in data], "frames": len(demos),
                                                       "episodes": len(demos.length),
                                                       "parameters": count_parameters(model)}, indent=1))

    def checkpoint(step: int) -> None:
        tmp = out / "latest.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(tmp, model, model_cfg, model.tokenizer, {"step": step, "render_size": demos.render_size})
        _save_state(tmp, optimizer, model, step, rng, generator)
        shutil.rmtree(latest, ignore_errors=True)
        tmp.rename(latest)  # a crash mid-save never leaves a broken latest/

    step = fit(model, optimizer, demos, cfg, model_cfg.chunk, device, rng, generator, step, out / "metrics.jsonl",
               checkpoint)
    final = out / "final"
    shutil.rmtree(final, ignore_errors=True)
    save_checkpoint(final, model, model_cfg, model.tokenizer, {"step": step, "render_size": demos.render_size})
    plot_curve(out / "metrics.jsonl", out / "curve.png")
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    return {"steps": step, "loss": last["loss"], "seconds": last["seconds"], "device": str(device),
            "checkpoint": str(final)}


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; no weight decay on biases, norms and embeddings' 1-D tensors."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=cfg.lr)


def fit(model: torch.nn.Module, optimizer: torch.optim.Optimizer, demos: Any, cfg: TrainConfig, chunk: int,
        device: torch.device, rng: np.random.Generator, generator: torch.Generator, step: int, metrics: Path,
        checkpoint: Callable[[int], None] | None = None,
        extra_losses: Callable[[dict], dict[str, torch.Tensor]] | None = None) -> int:
    """The behaviour-cloning loop shared by ``train`` and ``finetune``: from ``step`` to ``cfg.steps``.

    Each step samples a batch (random-shift augmented), sets the learning rate, adds any
    ``extra_losses(batch)`` terms (adapter regularisers, auxiliary objectives) to the task loss,
    clips and steps; logs to ``metrics`` every ``log_every`` steps and calls ``checkpoint(step)``
    every ``checkpoint_every`` steps and at the end. Returns the final step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    log, start, window = metrics.open("a"), time.perf_counter(), []
    while step < cfg.steps:
        frames = rng.integers(0, len(demos), cfg.batch)
        batch = sample_batch(demos, frames, chunk)
        for camera in CAMERAS:
            batch[camera] = random_shift(batch[camera], cfg.shift_pad, generator)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        batch["frames"] = frames
        for group in optimizer.param_groups:
            group["lr"] = _lr(cfg, step)
        loss, stats = model.loss(batch)
        for name, term in (extra_losses(batch) if extra_losses else {}).items():
            loss = loss + term
            stats[name] = float(term.detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        optimizer.step()
        step += 1
        window.append(stats)
        if step % cfg.log_every == 0 or step == cfg.steps:
            elapsed = time.perf_counter() - start
            means = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
            log.write(json.dumps({"step": step, **means, "lr": _lr(cfg, step - 1), "seconds": round(elapsed, 1)}) + "\n")
            log.flush()
            sys.stderr.write(f"\rstep {step}/{cfg.steps} | loss {means['loss']:.4f} | {elapsed:.0f} s")
            sys.stderr.flush()
            window = []
        if checkpoint and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            checkpoint(step)
    sys.stderr.write("\n")
    log.close()
    return step


def plot_curve(metrics: Path, path: Path, width: float = 6.4, height: float = 3.6) -> Path:
    """The training loss against steps (log scale: it falls over decades), so a run can be judged at a glance.

    matplotlib's object API with the Agg canvas: no display and no pyplot state, safe in any thread."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    steps = np.array([r["step"] for r in rows], float)
    losses = np.maximum(np.array([r["loss"] for r in rows], float), 1e-6)
    kind = "flow-matching MSE" if rows and "flow_mse" in rows[0] else "L1"
    window = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
    fig = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(steps, losses, color="#2a5ac8", linewidth=1.6, marker="o" if len(steps) < 30 else None, markersize=3)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.06, not 6 x 10^-2
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: _minor_label(value, ax.get_ylim())))
    ax.tick_params(axis="y", which="minor", labelsize=8, labelcolor="#666666")
    ax.set_xlim(left=0)
    ax.grid(True, which="major", color="#dddddd")
    ax.grid(True, which="minor", axis="y", color="#f0f0f0")
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel(f"{kind} loss, log scale\n(actions normalised to [-1, 1])")
    ax.set_title("Training loss" + (f", mean over each {window}-step window" if window > 1 else ", every step"),
                 fontsize=11)
    if rows and "seconds" in rows[-1]:
        seconds = float(rows[-1]["seconds"])
        took = f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"
        ax.text(0.99, 0.97, f"{steps[-1]:.0f} steps in {took}", transform=ax.transAxes, ha="right", va="top",
                fontsize=9, color="#555555")
    fig.savefig(path, format="png")
    return path


def _minor_label(value: float, limits: tuple[float, float]) -> str:
    """Every minor log tick labelled within a decade, only 2 and 5 over a few decades, none beyond: no clutter."""
    decades = math.log10(max(limits) / max(min(limits), 1e-12))
    mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9))
    return f"{value:g}" if decades < 1 or (decades < 2.5 and mantissa in (2, 5)) else ""
