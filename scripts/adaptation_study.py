"""The cross-embodiment adaptation study: the reference VLA, pretrained on the Panda only, adapted to
the unseen PiPER with every method on the same demonstrations and step budget, then evaluated
zero-shot on the PiPER ``perturb`` suite. One command (1 h 52 min measured on 2 CPU cores by default):

    python scripts/adaptation_study.py [--quick] [--methods lora,gse] [--steps 600] [--mt-steps 1200]
    python scripts/adaptation_study.py --plot-only     # redraw the PNG from results/adaptation_study.json

1. PiPER demonstrations, collected once (``simeval collect --suite nominal --robot Piper --seed 7``,
   so no demonstration is an evaluation episode: the built-in suites use seed 0);
2. single-task: each method adapts the base on one task's demonstrations (``--task``) and is evaluated
   on that task under nominal and every perturbation dimension at levels 1-5;
3. multi-task: each method adapts on all tasks at once and is evaluated on all tasks under nominal and
   every dimension at level 3 (the setting in which LoRA-SP reports its largest gain over LoRA);
4. the unadapted base ("none") is evaluated too: the zero-shot floor.
CapVector extracts its vector once, in the single-task setting, and multi-task merges the same vector.
Everything goes to ``--work`` (default runs/study; finished steps are skipped when re-run) and the
tables and plot to ``results/adaptation_study.{md,json,png}``. ``--quick`` is a tiny smoke version.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.adapters.registry import PACKAGES  # noqa: E402

DIMENSIONS = ("nominal", "camera", "robot_init", "language", "light", "background", "noise", "layout")


@contextmanager
def timed(stages: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall seconds to ``stages[name]``: where a study's time goes (printed, and in the JSON)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = round(stages.get(name, 0.0) + time.perf_counter() - start, 2)


def collect(data: Path, episodes: int, tasks: tuple[str, ...] | None = None) -> None:
    """PiPER demonstrations of ``tasks`` (default: every task); skipped when the dataset is complete."""
    from envs.tasks.library import TASKS

    count = len(tasks) if tasks else len(TASKS)
    log = data / "episodes.jsonl"
    if log.is_file() and len(log.read_text().splitlines()) >= count * episodes:
        return
    command = ["simeval", "collect", "--suite", "nominal", "--robot", "Piper", "--episodes", str(episodes),
               "--seed", "7", "--out", str(data)] + (["--resume"] if (data / "run.json").is_file() else [])
    if tasks and count < len(TASKS):
        command += ["--tasks", ",".join(tasks)]
    subprocess.run(command, check=True)


def adapt(base: Path, method: str, data: Path, out: Path, steps: int, batch: int, tasks: tuple[str, ...] | None,
          options: dict) -> dict:
    from policies.finetune import finetune

    if (out / "finetune.json").is_file():
        return json.loads((out / "finetune.json").read_text())
    if out.exists():
        import shutil

        shutil.rmtree(out)
    return finetune(base, method, options, [data], out, steps=steps, batch=batch, robots=("Piper",), tasks=tasks)


def evaluate(policy: Path, out: Path, tasks: list[str], episodes: int, levels: str, workers: int,
             max_steps: int | None = None) -> dict:
    """The PiPER perturb suite (restricted to ``tasks``) with this policy; results.json as a dict."""
    from simeval.harness import RunRequest, execute
    from simeval.suites import parse_suite

    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    suite = parse_suite({"name": "perturb", "tasks": tasks, "robots": ["Piper"], "episodes": episodes, "seed": 0,
                         "perturbations": ["nominal", f"*:{levels}"], "max_steps": max_steps}, "adaptation_study")
    return execute(RunRequest(suite=suite, policy=str(policy), out=out, workers=workers, video="none", force=True))


def row(method: str, summary: dict | None, results: dict, base_params: int) -> dict:
    """One table row; "% of full" is trainable parameters over the base's (what full fine-tuning trains);
    training time includes CapVector's extraction of its vector (two fine-tunes)."""
    trainable = summary["trainable"]["total"] if summary else 0
    return {"method": method, "trainable": trainable, "total": summary["total"]["total"] if summary else None,
            "pct_of_full": round(100 * trainable / base_params, 2) if summary else None,
            "train_seconds": summary["train_seconds"] + summary.get("vector_seconds", 0.0) if summary else 0.0,
            "eval_seconds": results.get("timing", {}).get("wall_s"),
            "dimensions": {d: results["by_dimension"].get(d) for d in DIMENSIONS},
            "overall": results["overall"], "grounding": results.get("grounding", {}).get("overall")}


def _cell(cell: dict | None) -> str:
    if not cell or cell.get("rate") is None:
        return "—"
    low, high = cell["ci95"]
    return f"{100 * cell['rate']:.0f} [{100 * low:.0f}-{100 * high:.0f}]"


def table(rows: list[dict]) -> str:
    header = ["method", "trainable params", "% of full", "train s", "eval s", *DIMENSIONS, "overall", "grounding"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        pct = "—" if r["pct_of_full"] is None else f"{r['pct_of_full']:.2f}"
        cells = [r["method"], f"{r['trainable']:,}", pct, f"{r['train_seconds']:.0f}", f"{r['eval_seconds'] or 0:.0f}",
                 *[_cell(r["dimensions"][d]) for d in DIMENSIONS], _cell(r["overall"]), _cell(r["grounding"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _error_bars(cells: list[dict | None]) -> tuple[list[float], list[list[float]]]:
    """Bar heights and asymmetric Wilson 95% error bars, in %; a cell not evaluated is NaN (no bar drawn)."""
    rates, low, high = [], [], []
    for c in cells:
        known = bool(c) and c.get("rate") is not None
        rates.append(100 * c["rate"] if known else float("nan"))
        low.append(100 * (c["rate"] - c["ci95"][0]) if known else 0.0)
        high.append(100 * (c["ci95"][1] - c["rate"]) if known else 0.0)
    return rates, [low, high]


def plot(tables: dict[str, list[dict]], path: Path) -> Path:
    """Success per dimension (and overall) for every method, one panel per setting, Wilson 95% CI bars.

    matplotlib's object API on the Agg canvas (no display, no pyplot state)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = [*DIMENSIONS, "overall"]
    fig = Figure(figsize=(13, 3.9 * len(tables) + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tables), 1, squeeze=False)[:, 0]
    colors = [f"C{i}" for i in range(10)]
    shared = len({tuple(r["method"] for r in rows) for rows in tables.values()}) == 1  # then one legend
    for p, (ax, (title, rows)) in enumerate(zip(axes, tables.items())):
        x = np.arange(len(columns), dtype=float)
        width = 0.84 / max(1, len(rows))
        for m, r in enumerate(rows):
            cells = [r["overall"] if c == "overall" else r["dimensions"].get(c) for c in columns]
            rates, errors = _error_bars(cells)
            centers = x - 0.42 + (m + 0.5) * width
            ax.bar(centers, rates, width * 0.92, yerr=errors, label=r["method"],
                   color=colors[m % len(colors)], error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "#333333"})
            for center, rate in zip(centers, rates):
                if np.isnan(rate):  # not evaluated, which must not read as a 0% bar
                    ax.text(center, 1, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="#888888")
        ax.axvline(len(columns) - 1.5, color="#999999", linewidth=0.8, linestyle="--")  # dimensions | pooled
        ax.set_xticks(x, columns)
        ax.set_xlim(-0.55, len(columns) - 0.45)
        ax.set_ylim(0, 104)  # a 100% bar and its cap stay visible
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("success rate (%)")
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(True, axis="y", color="#e6e6e6")
        ax.set_axisbelow(True)
        if p == 0 or not shared:
            ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=9, frameon=False, title="method")
    axes[-1].set_xlabel("perturbation dimension (PiPER perturb suite); error bars: Wilson 95% CI; n/a: not evaluated")
    fig.suptitle("Cross-embodiment adaptation: Panda-pretrained reference adapted to the PiPER", fontsize=12)
    fig.savefig(path, format="png")
    return path


def replot(results: Path) -> Path:
    """The plot again from a finished study's JSON (``--plot-only``): no collection, training or evaluation."""
    return plot(json.loads(results.with_suffix(".json").read_text())["settings"], results.with_suffix(".png"))


def quick(args: argparse.Namespace) -> None:
    """``--quick``: a smoke test of every stage (collect, each method's adaptation, evaluation on every
    dimension, tables, plot), not a result, so as little work as each stage allows (about a minute on 2 cores)."""
    import torch

    args.steps = args.mt_steps = 4
    args.batch, args.episodes, args.mt_episodes, args.workers = 8, 1, 1, 1  # one env worker: less start-up CPU
    args.levels, args.mt_levels, args.demos, args.max_steps = "3", "3", 2, 15
    args.mt_tasks = "PutCubeOnPlate,PushButton"  # only these (and --task) are collected
    args.work, args.results = args.work.with_name(args.work.name + "-quick"), args.results.with_name(
        args.results.name + "_quick")
    torch.set_num_threads(1)  # tiny batches: more threads only spin against the env worker on a busy machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=ROOT / "results" / "reference")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "piper-nominal")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "study")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "adaptation_study")
    parser.add_argument("--methods", default=",".join(PACKAGES), help=f"comma-separated, from {', '.join(PACKAGES)}")
    parser.add_argument("--task", default="PutCubeOnPlate", help="the single-task setting's task")
    parser.add_argument("--demos", type=int, default=40, help="PiPER demonstrations collected per task")
    parser.add_argument("--steps", type=int, default=600, help="single-task adaptation steps (every method)")
    parser.add_argument("--mt-steps", type=int, default=1200, help="multi-task adaptation steps (every method)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--episodes", type=int, default=2, help="evaluation episodes per (task, variant)")
    parser.add_argument("--mt-episodes", type=int, default=1, help="the same, multi-task setting")
    parser.add_argument("--levels", default="1-5", help="perturbation levels evaluated (single-task)")
    parser.add_argument("--mt-levels", default="3", help="the same, multi-task setting (all tasks: one level fits "
                        "the 2-hour budget)")
    parser.add_argument("--mt-tasks", default="all", help="the multi-task setting's tasks (comma-separated)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the tasks' step limits")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke version (about a minute): every stage, "
                        "4 steps of batch 8, 2 demonstrations per task, level 3, 2 tasks, 15-step episodes")
    parser.add_argument("--plot-only", action="store_true",
                        help="only redraw <results>.png from an earlier run's <results>.json")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in PACKAGES]
    if bad:
        sys.exit(f"adaptation_study: unknown method {bad[0]!r}; valid methods: {', '.join(PACKAGES)}")
    if args.quick:
        quick(args)
    if args.plot_only:
        print(f"wrote {replot(args.results)}")
        return
    from envs.tasks.library import TASKS
    from policies.vla.checkpoint import load_checkpoint

    stages: dict[str, float] = {}
    with timed(stages, "load base"):
        base_params = sum(p.numel() for p in load_checkpoint(args.base).model.parameters())
    settings = {"single-task": ((args.task,), args.steps, args.episodes, args.levels),
                "multi-task": (tuple(t.name for t in TASKS) if args.mt_tasks == "all" else tuple(args.mt_tasks.split(",")),
                               args.mt_steps, args.mt_episodes, args.mt_levels)}
    needed = dict.fromkeys(t for tasks, *_ in settings.values() for t in tasks)  # in order, once each
    with timed(stages, "collect"):
        collect(args.data, args.demos, tuple(needed))
    tables: dict[str, list[dict]] = {}
    reuse: dict[str, dict] = {}  # method options that later settings take from the first
    for setting, (tasks, steps, episodes, levels) in settings.items():
        work = args.work / setting
        with timed(stages, "evaluate"):
            floor = evaluate(args.base, work / "none" / "eval", list(tasks), episodes, levels, args.workers,
                             args.max_steps)
        rows = [row("none (zero-shot base)", None, floor, base_params)]
        for method in methods:
            with timed(stages, "adapt"):
                summary = adapt(args.base, method, args.data, work / method / "adapted", steps, args.batch,
                                tasks, reuse.get(method, {}))
            with timed(stages, "evaluate"):
                results = evaluate(work / method / "adapted", work / method / "eval", list(tasks), episodes, levels,
                                   args.workers, args.max_steps)
            rows.append(row(method, summary, results, base_params))
            print(f"{setting} {method}: overall {_cell(results['overall'])}", flush=True)
            if method == "capvector":  # extracted once, on a small task set, then transferred (as in the paper)
                reuse.setdefault(method, {"vector": str(work / method / "adapted" / "capability_vector.safetensors")})
        names = "all tasks" if len(tasks) == len(TASKS) else ", ".join(tasks)
        tables[f"{setting} ({names}; {steps} steps, batch {args.batch}; levels {levels}, {episodes} episode(s) "
               "per task and cell)"] = rows
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with timed(stages, "plot"):
        plot(tables, args.results.with_suffix(".png"))
    args.results.with_suffix(".json").write_text(json.dumps({"settings": tables, "stage_seconds": stages, "args": {
        k: str(v) for k, v in vars(args).items()}}, indent=1) + "\n")
    text = "\n\n".join(f"### {title}\n\n{table(rows)}" for title, rows in tables.items())
    args.results.with_suffix(".md").write_text(
        "# Adaptation study: Panda-pretrained reference adapted to the PiPER\n\n"
        "Success in % with 95% Wilson intervals on the PiPER perturb suite (nominal and every dimension at the "
        "levels each setting names); trainable parameters and % of full fine-tuning; adaptation wall seconds.\n\n"
        + text + "\n")
    print("wall seconds by stage: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    print(f"wrote {args.results.with_suffix('.md')}, .json, .png")


if __name__ == "__main__":
    main()
