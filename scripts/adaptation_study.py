"""The cross-embodiment adaptation study: the reference VLA, pretrained on the Panda only, adapted to
the unseen PiPER by every method at matched budgets and three training seeds, then evaluated on the
PiPER perturb suite with the power to separate the methods. Resumable stage by stage, across sessions.

    python scripts/adaptation_study.py [--stages 5] [--list] [--quick]
    python scripts/adaptation_study.py --report    # tables, claims and plots from the stages done so far
    python scripts/adaptation_study.py --rerun single/lora-small/seed2   # does this machine repeat a stage?

What runs (each a *stage*: adapt the reference to the PiPER with one method and seed, then evaluate it):
- **single task** (PutCubeOnPlate, 600 steps): nominal and every dimension at levels 1-5, 5 episodes
  per cell (n = 180). The PEFT methods at two matched budgets, a small one (VLA-GSE's 2.51% of the
  base's parameters) and a large one (15%), with each method's own knob set by
  ``policies.adapters.budget``; full fine-tuning, CLP and CapVector as they are, and CapVector's
  auxiliary-objective fine-tune evaluated itself. Three seeds each (adapter initialisation and
  data order). A rank sweep, one seed: LoRA against LoRA-SP at rank or bank 4, 16 and 64.
- **multi-task** (all ten tasks, 1,200 steps): nominal and every dimension at levels 1, 3 and 5, one
  episode per task and cell (n = 220; levels 2 and 4 cut to fit the compute budget, see the README),
  the PEFT methods at the small budget only. CapVector merges the vector its single-task
  stage of the same seed extracted (re-extracted with that seed when this checkout lacks it), as the
  paper extracts once on a small task set.
- the unadapted base in both settings: the zero-shot floor.

The demonstrations are collected once (``simeval collect --suite nominal --robot Piper --seed 7``,
so none is an evaluation episode: the suites use seed 0). Every finished stage writes one small file
under ``<results>/stages/``: its options, parameter counts, timings and every episode's outcome.
Those files are committed, so a later checkout (which has no ``runs/``) resumes where this one
stopped. ``--report`` writes ``<results>.{md,json,png}``, ``<results>_paired.png`` and
``<results>_rank.png`` from those files alone (see ``study_report``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGETS = {"small": 0.0251, "large": 0.15}
PEFT = ("lora", "lora_sp", "gse", "last_k")
SEEDS = (0, 1, 2)
SWEEP = (4, 16, 64)


@dataclass(frozen=True)
class Setting:
    tasks: tuple[str, ...]
    steps: int
    episodes: int  # per task and cell
    levels: tuple[str, ...]  # level specs, each "3" or "1-5"
    budgets: tuple[str, ...]
    max_steps: int | None = None  # the tasks' own step limits unless set


@dataclass
class Stage:
    """One adaptation and its evaluation; ``name`` is its file under the stages folder."""

    setting: str
    label: str  # what the tables call it: "lora@small", "full", "sweep lora rank=4", "none"
    method: str  # the adapter method ("none": the base itself)
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def name(self) -> str:
        safe = self.label.replace(" ", "_").replace("=", "").replace("@", "-")
        return f"{self.setting}/{safe}/seed{self.seed}"


def settings(quick: bool) -> dict[str, Setting]:
    from envs.tasks.library import TASKS

    if quick:
        return {"single": Setting(("PutCubeOnPlate",), 4, 1, ("3",), ("small",), 15),
                "multi": Setting(("PutCubeOnPlate", "PushButton"), 4, 1, ("3",), ("small",), 15)}
    return {"single": Setting(("PutCubeOnPlate",), 600, 5, ("1-5",), ("small", "large")),
            "multi": Setting(tuple(t.name for t in TASKS), 1200, 1, ("1", "3", "5"), ("small",))}


def plan(base: Path, quick: bool = False) -> list[Stage]:
    """Every stage, in the order they run: the single-task setting, then the multi-task one. Within a
    setting, the stages its claims compare run first (see :func:`claims_first`), seed by seed."""
    from policies.adapters.budget import match_budget
    from policies.vla.checkpoint import load_checkpoint

    model = load_checkpoint(base).model
    chosen = {(m, b): match_budget(model, m, BUDGETS[b]).options for m in PEFT for b in BUDGETS}
    seeds = SEEDS[:1] if quick else SEEDS
    stages: list[Stage] = []
    for setting, spec in settings(quick).items():
        block = [Stage(setting, "none", "none")]
        for seed in seeds:
            block.append(Stage(setting, "full", "full", {}, seed))
            block += [Stage(setting, f"{m}@{b}", m, chosen[(m, b)], seed) for b in spec.budgets for m in PEFT]
            block += [Stage(setting, "clp", "clp", {}, seed), Stage(setting, "capvector", "capvector", {}, seed)]
            if setting == "single" and seed == 0 and not quick:
                block += [Stage(setting, f"sweep {m} {knob}={v}", m, {knob: v}, 0)
                          for v in SWEEP for m, knob in (("lora", "rank"), ("lora_sp", "bank"))]
        stages += claims_first(block, setting)
    return stages


def claims_first(block: list[Stage], setting: str) -> list[Stage]:
    """The unadapted base and the methods a claim of ``setting`` compares, at every seed, before the
    methods no claim needs (the large budget, the rank sweep, and multi-task last-k, CLP, CapVector).

    Why: the study runs across sessions, and one that stops early has then tested every claim with
    all its seeds. Each part keeps plan order (seed 0 of every method first), and a stage's file
    does not depend on when it ran, so the order changes nothing but what is done first."""
    from study_report import CLAIMS

    claimed = {"none"}
    for claim in (c for c in CLAIMS if c.setting == setting):
        claimed |= {claim.a} | ({f"{m}@small" for m in PEFT} if claim.b == "best peft" else {claim.b})
    return sorted(block, key=lambda stage: stage.label not in claimed)


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


def stage_file(results: Path, stage: Stage) -> Path:
    return results / "stages" / f"{stage.name}.json"


def report(results: Path) -> list[Path]:
    """``<results>.{md,json}`` and the plots, from the stage files alone."""
    from study_markdown import markdown
    from study_plots import plot_paired, plot_rank, plot_success
    from study_report import load_stages, summarize, check_claims

    records = load_stages(results / "stages")
    if not records:
        sys.exit(f"adaptation_study: no finished stages under {results / 'stages'}; run the study first")
    summary = summarize(records)
    claims = check_claims(records, summary)
    stem = results.with_suffix("")
    stem.with_suffix(".json").write_text(json.dumps({"settings": summary, "claims": claims}, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(summary, claims, records))
    written = [stem.with_suffix(".md"), stem.with_suffix(".json"), plot_success(summary, stem.with_suffix(".png")),
               plot_paired(summary, stem.parent / f"{stem.name}_paired.png"),
               plot_rank(summary, stem.parent / f"{stem.name}_rank.png")]
    return [p for p in written if p]


def run_stage(stage: Stage, args: argparse.Namespace, specs: dict[str, Setting]) -> dict[str, Any]:
    """Adapt (unless ``none``), evaluate, and the stage's record (see the module docstring)."""
    spec = specs[stage.setting]
    work = args.work / stage.name
    record: dict[str, Any] = {"stage": stage.name, **asdict(stage), "steps": spec.steps}
    policy = args.base
    if stage.method != "none":
        adapted = work / "adapted"
        options = dict(stage.options)
        if stage.method == "capvector" and stage.setting == "multi":
            options["vector"] = str(single_task_vector(stage.seed, args, specs["single"]))
        summary = _adapt(args.base, stage.method, options, args.data, adapted, spec, args.batch, stage.seed)
        record.update(trainable=summary["trainable"]["total"], total=summary["total"]["total"],
                      train_seconds=summary["train_seconds"], vector_seconds=summary.get("vector_seconds", 0.0),
                      options=summary["options"])
        if stage.method == "capvector":
            record["vector_sha256"] = _sha256(Path(options.get("vector") or adapted / "capability_vector.safetensors"))
        policy = adapted
    record["eval"] = _evaluate(policy, work / "eval", spec, args.workers)
    auxiliary = work / "adapted" / "capvector" / "auxiliary"
    if stage.method == "capvector" and auxiliary.is_dir():  # the auxiliary fine-tune, evaluated itself
        extraction = json.loads((auxiliary.parent / "extraction.json").read_text())
        record["auxiliary"] = {"eval": _evaluate(auxiliary, work / "eval-auxiliary", spec, args.workers), **extraction}
    return record


def single_task_vector(seed: int, args: argparse.Namespace, single: Setting) -> Path:
    """The capability vector the single-task CapVector stage of ``seed`` extracted; extracted again
    (same base, data, steps and seed) when this checkout lacks it, since ``runs/`` is not committed."""
    adapted = args.work / f"single/capvector/seed{seed}/adapted"
    vector = adapted / "capability_vector.safetensors"
    if not vector.is_file():
        _adapt(args.base, "capvector", {}, args.data, adapted, single, args.batch, seed)
    return vector


def provenance(data: Path) -> dict[str, str]:
    """What a stage's outcome depends on beyond its options and seed: the demonstrations' contents and
    the CPU whose float kernels ran it. Another machine repeats an evaluation up to a few episodes,
    but not a stage's training (see the README), so every record says where it ran."""
    import platform

    import numpy as np
    import torch

    digest = hashlib.sha256()
    for demo in sorted((data / "demos").glob("*.npz")):  # the arrays, not the zip bytes (those hold times)
        with np.load(demo) as arrays:
            for key in sorted(arrays.files):
                digest.update(f"{demo.name}/{key}/{arrays[key].dtype}/{arrays[key].shape}".encode())
                digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    info = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in (info.read_text().splitlines() if info.is_file() else [])
              if line.startswith("model name")]
    cpu = models[0] if models else platform.processor()
    return {"data_sha256": digest.hexdigest(), "cpu": cpu, "torch_cpu": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def rerun_file(results: Path, stage: Stage, tag: str) -> Path:
    return results / "reruns" / f"{stage.name}-{tag}.json"


def timed_stage(stage: Stage, args: argparse.Namespace, specs: dict[str, Setting], machine: dict) -> dict[str, Any]:
    """``run_stage``'s record with its wall seconds and where it ran."""
    started = time.perf_counter()
    record = run_stage(stage, args, specs)
    record.update(stage_seconds=round(time.perf_counter() - started, 1), provenance=machine)
    return record


def rerun_pairing(kept: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """The stage file's episodes (a) against the rerun's (b): ``simeval compare``'s overall cell."""
    from simeval.compare import compare_outcomes
    from study_report import outcomes

    cell = compare_outcomes({"stage": [outcomes(kept)], "rerun": [outcomes(again)]})["comparisons"][0]["cells"][0]
    return {**cell, "identical": kept["success"] == again["success"]}


def rerun(stage: Stage, args: argparse.Namespace, specs: dict[str, Setting], tag: str, machine: dict) -> Path:
    """Run a finished stage again, from scratch, into ``rerun_file`` and compare its outcomes with the
    stage file's, episode by episode: does this machine repeat it?"""
    kept = json.loads(stage_file(args.results, stage).read_text())
    out = rerun_file(args.results, stage, tag)
    record = timed_stage(stage, argparse.Namespace(**{**vars(args), "work": args.work / "reruns" / tag}), specs,
                         machine)
    record.update(rerun_of=f"stages/{stage.name}.json", paired=rerun_pairing(kept["eval"], record["eval"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record) + "\n")
    print(f"{stage.name} again: {record['eval']['successes']}/{record['eval']['n']} against the stage file's "
          f"{kept['eval']['successes']}/{kept['eval']['n']}: only the stage file {record['paired']['only_a']}, only "
          f"the rerun {record['paired']['only_b']}, McNemar p = {record['paired']['p_value']:.2g}", flush=True)
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _adapt(base: Path, method: str, options: dict, data: Path, out: Path, spec: Setting, batch: int,
           seed: int) -> dict:
    from policies.finetune import finetune

    if (out / "finetune.json").is_file():
        return json.loads((out / "finetune.json").read_text())
    if out.exists():  # an adaptation this study started and did not finish
        import shutil

        shutil.rmtree(out)
    return finetune(base, method, options, [data], out, steps=spec.steps, batch=batch, robots=("Piper",),
                    tasks=spec.tasks, seed=seed)


def _evaluate(policy: Path, out: Path, spec: Setting, workers: int) -> dict[str, Any]:
    """The PiPER perturb grid of ``spec``; every episode's outcome, compactly, and the wall time."""
    from simeval.harness import RunRequest, execute
    from simeval.suites import parse_suite

    suite = parse_suite({"name": "perturb", "tasks": list(spec.tasks), "robots": ["Piper"], "episodes": spec.episodes,
                         "seed": 0, "perturbations": ["nominal", *(f"*:{level}" for level in spec.levels)],
                         "max_steps": spec.max_steps}, "adaptation_study")
    results = execute(RunRequest(suite=suite, policy=str(policy), out=out, workers=workers, video="none",
                                 force=True, progress=False))
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    records.sort(key=lambda r: r["id"])
    return {"n": len(records), "successes": sum(bool(r["success"]) and not r["error"] for r in records),
            "wall_s": results["timing"]["wall_s"], "ids": [r["id"] for r in records],
            "success": "".join("1" if r["success"] and not r["error"] else "0" for r in records),
            "steps": [r["steps"] for r in records], "errors": {r["id"]: r["error"] for r in records if r["error"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=ROOT / "results" / "reference")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "piper-nominal")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "study")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "adaptation_study",
                        help="stage files go to <results>/stages/, the report to <results>.{md,json,png}")
    parser.add_argument("--demos", type=int, default=40, help="PiPER demonstrations collected per task")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", type=int, default=None, help="run at most this many missing stages, then stop")
    parser.add_argument("--list", action="store_true", help="list the stages, done or not, and stop")
    parser.add_argument("--report", action="store_true", help="tables, claims and plots of the stages done so far, "
                        "to <results>.{md,json,png}, and stop")
    parser.add_argument("--rerun", metavar="STAGE", help="run one finished stage again (a name --list prints) "
                        "into <results>/reruns/, with this machine's provenance, and compare the outcomes")
    parser.add_argument("--tag", default=None, help="with --rerun: the rerun's file suffix (default: torch's CPU "
                        "capability, e.g. avx512)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke version: one seed, 4 steps, level 3, "
                        "2 tasks, 15-step episodes")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.demos, args.workers = 8, 2, 1
    if args.report:
        print("wrote " + ", ".join(str(p) for p in report(args.results)))
        return
    stages = plan(args.base, args.quick)
    done = [s for s in stages if stage_file(args.results, s).is_file()]
    if args.list:
        for s in stages:
            print(f"{'done' if s in done else '    '}  {s.name}  {s.options or ''}")
        print(f"{len(done)} of {len(stages)} stages done")
        return
    specs = settings(args.quick)
    chosen, tag = None, args.tag
    if args.rerun:
        chosen = next((s for s in done if s.name == args.rerun), None)
        if chosen is None:
            parser.error(f"--rerun: {args.rerun!r} is not a finished stage; valid: the names --list marks done")
        import torch

        tag = tag or torch.backends.cpu.get_cpu_capability().lower()
        if rerun_file(args.results, chosen, tag).exists():  # never overwrite an earlier rerun
            parser.error(f"--rerun: {rerun_file(args.results, chosen, tag)} exists; pass another --tag")
    collect(args.data, args.demos, tuple(dict.fromkeys(t for s in specs.values() for t in s.tasks)))
    todo = [] if chosen else [s for s in stages if s not in done][: args.stages]
    machine = provenance(args.data) if todo or chosen else {}
    if chosen:
        rerun(chosen, args, specs, tag, machine)
        return
    for stage in todo:
        record = timed_stage(stage, args, specs, machine)
        path = stage_file(args.results, stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record) + "\n")
        rate = record["eval"]["successes"] / max(1, record["eval"]["n"])
        print(f"{stage.name}: {record['eval']['successes']}/{record['eval']['n']} ({rate:.0%}) in "
              f"{record['stage_seconds']:.0f} s", flush=True)
    left = len(stages) - len(done) - len(todo)
    print(f"{len(done) + len(todo)} of {len(stages)} stages done; {left} left")


if __name__ == "__main__":
    main()
