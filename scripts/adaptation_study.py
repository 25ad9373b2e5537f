"""The cross-embodiment adaptation study: the reference VLA, pretrained on the Panda only, adapted to
the unseen PiPER with every method on the same demonstrations and step budget, then evaluated
zero-shot on the PiPER ``perturb`` suite. One command (1 h 52 min measured on 2 CPU cores by default):

    python scripts/adaptation_study.py [--quick] [--methods lora,gse] [--steps 600] [--mt-steps 1200]

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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.adapters.registry import PACKAGES  # noqa: E402

DIMENSIONS = ("nominal", "camera", "robot_init", "language", "light", "background", "noise", "layout")


def collect(data: Path, episodes: int) -> None:
    """PiPER demonstrations of every task (skipped when the dataset is complete)."""
    if (data / "episodes.jsonl").is_file() and len((data / "episodes.jsonl").read_text().splitlines()) >= 10 * episodes:
        return
    command = ["simeval", "collect", "--suite", "nominal", "--robot", "Piper", "--episodes", str(episodes),
               "--seed", "7", "--out", str(data)] + (["--resume"] if (data / "run.json").is_file() else [])
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


def plot(tables: dict[str, list[dict]], path: Path) -> None:
    """Success per dimension (and overall) for every method, one panel per setting, with 95% CIs."""
    from PIL import Image, ImageDraw

    columns = [*DIMENSIONS, "overall"]
    width, panel = 1100, 330
    image = Image.new("RGB", (width, panel * len(tables) + 40), "white")
    draw = ImageDraw.Draw(image)
    palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (127, 127, 127), (188, 189, 34)]
    for p, (title, rows) in enumerate(tables.items()):
        top, left, right, bottom = 40 + p * panel, 60, width - 170, 40 + p * panel + panel - 60
        draw.text((left, top - 25), title, fill=(0, 0, 0))
        for frac in (0, 0.25, 0.5, 0.75, 1.0):
            y = bottom - frac * (bottom - top)
            draw.line((left, y, right, y), fill=(225, 225, 225))
            draw.text((20, y - 6), f"{int(frac * 100)}%", fill=(80, 80, 80))
        group = (right - left) / len(columns)
        bar = group * 0.8 / max(1, len(rows))
        for c, column in enumerate(columns):
            draw.text((left + c * group + 4, bottom + 8), column[:10], fill=(40, 40, 40))
            for m, r in enumerate(rows):
                cell = r["overall"] if column == "overall" else r["dimensions"].get(column)
                if not cell or cell.get("rate") is None:
                    continue
                x0 = left + c * group + group * 0.1 + m * bar
                y = bottom - cell["rate"] * (bottom - top)
                draw.rectangle((x0, y, x0 + bar - 1, bottom), fill=palette[m % len(palette)])
                lo, hi = (bottom - v * (bottom - top) for v in cell["ci95"])
                draw.line((x0 + bar / 2, lo, x0 + bar / 2, hi), fill=(0, 0, 0))
        for m, r in enumerate(rows):
            y = top + 14 * m
            draw.rectangle((right + 15, y, right + 25, y + 10), fill=palette[m % len(palette)])
            draw.text((right + 30, y - 1), r["method"], fill=(0, 0, 0))
    image.save(path)


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
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke version (a few minutes): 20 steps, level 3, 3 tasks, 30-step episodes")
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in PACKAGES]
    if bad:
        sys.exit(f"adaptation_study: unknown method {bad[0]!r}; valid methods: {', '.join(PACKAGES)}")
    if args.quick:
        args.steps = args.mt_steps = 20
        args.episodes = args.mt_episodes = 1
        args.levels, args.mt_levels, args.demos, args.max_steps = "3", "3", 4, 30
        args.mt_tasks = "PutCubeOnPlate,PushButton,OpenDrawer"
        args.work, args.results = args.work.with_name(args.work.name + "-quick"), args.results.with_name(
            args.results.name + "_quick")
    from envs.tasks.library import TASKS
    from policies.vla.checkpoint import load_checkpoint

    base_params = sum(p.numel() for p in load_checkpoint(args.base).model.parameters())
    collect(args.data, args.demos)
    settings = {"single-task": ((args.task,), args.steps, args.episodes, args.levels),
                "multi-task": (tuple(t.name for t in TASKS) if args.mt_tasks == "all" else tuple(args.mt_tasks.split(",")),
                               args.mt_steps, args.mt_episodes, args.mt_levels)}
    tables: dict[str, list[dict]] = {}
    reuse: dict[str, dict] = {}  # method options that later settings take from the first
    for setting, (tasks, steps, episodes, levels) in settings.items():
        work = args.work / setting
        rows = [row("none (zero-shot base)", None,
                    evaluate(args.base, work / "none" / "eval", list(tasks), episodes, levels, args.workers,
                             args.max_steps), base_params)]
        for method in methods:
            summary = adapt(args.base, method, args.data, work / method / "adapted", steps, args.batch,
                            tasks, reuse.get(method, {}))
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
    args.results.with_suffix(".json").write_text(json.dumps({"settings": tables, "args": {
        k: str(v) for k, v in vars(args).items()}}, indent=1) + "\n")
    text = "\n\n".join(f"### {title}\n\n{table(rows)}" for title, rows in tables.items())
    args.results.with_suffix(".md").write_text(
        "# Adaptation study: Panda-pretrained reference adapted to the PiPER\n\n"
        "Success in % with 95% Wilson intervals on the PiPER perturb suite (nominal and every dimension at the "
        "levels each setting names); trainable parameters and % of full fine-tuning; adaptation wall seconds.\n\n"
        + text + "\n")
    plot(tables, args.results.with_suffix(".png"))
    print(f"wrote {args.results.with_suffix('.md')}, .json, .png")


if __name__ == "__main__":
    main()
