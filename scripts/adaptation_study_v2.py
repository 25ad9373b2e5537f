"""The adaptation study, version 2: matched budgets, three training seeds, the episodes to separate
the methods. Resumable stage by stage, across sessions and machines.

    python scripts/adaptation_study_v2.py [--stages 5] [--list] [--quick]

What runs (each a *stage*: adapt the Panda-pretrained reference to the PiPER with one method and
seed, then evaluate it on the PiPER perturb suite):
- **single task** (PutCubeOnPlate, 600 steps): nominal and every dimension at levels 1-5, 5 episodes
  per cell (n = 180). The PEFT methods at two matched budgets, a small one (VLA-GSE's 2.51% of the
  base's parameters) and a large one (15%), with each method's own knob set by
  ``policies.adapters.budget``; full fine-tuning, CLP and CapVector as they are, and CapVector's
  auxiliary-objective fine-tune evaluated itself. Three seeds each (adapter initialisation and
  data order). A rank sweep, one seed: LoRA against LoRA-SP at rank or bank 4, 16 and 64.
- **multi-task** (all ten tasks, 1,200 steps): nominal and levels 1-5, one episode per task and cell
  (n = 360), the PEFT methods at the small budget only. CapVector merges the vector its single-task
  stage of the same seed extracted, as the paper extracts once on a small task set.
- the unadapted base in both settings: the zero-shot floor.

Every finished stage writes one small file under ``results/adaptation_study_v2/stages/``: its
options, parameter counts, timings and every episode's outcome (id, success, steps, error). Those
files are committed, so a later session (whose checkout has no ``runs/``) resumes where this one
stopped: stages with a file are skipped. Checkpoints and run directories stay in ``--work``.
"""

from __future__ import annotations

import argparse
import json
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
    levels: str
    budgets: tuple[str, ...]
    max_steps: int | None = None  # the tasks' own step limits unless set


@dataclass
class Stage:
    """One adaptation and its evaluation; ``name`` is its file under the stages folder."""

    setting: str
    label: str  # what the tables call it: "lora@small", "full", "sweep lora r=4", "none"
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
        return {"single": Setting(("PutCubeOnPlate",), 4, 1, "3", ("small",), 15),
                "multi": Setting(("PutCubeOnPlate", "PushButton"), 4, 1, "3", ("small",), 15)}
    return {"single": Setting(("PutCubeOnPlate",), 600, 5, "1-5", ("small", "large")),
            "multi": Setting(tuple(t.name for t in TASKS), 1200, 1, "1-5", ("small",))}


def plan(base: Path, quick: bool = False) -> list[Stage]:
    """Every stage, in the order they run: each seed's single-task methods, the rank sweep, then
    the multi-task ones (the most informative comparisons finish first)."""
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
        if setting == "single" and not quick:
            block += [Stage(setting, f"sweep {m} {knob}={v}", m, {knob: v}, 0)
                      for v in SWEEP for m, knob in (("lora", "rank"), ("lora_sp", "bank"))]
        stages += block
    return stages


def stage_file(results: Path, stage: Stage) -> Path:
    return results / "stages" / f"{stage.name}.json"


def run_stage(stage: Stage, args: argparse.Namespace, spec: Setting) -> dict[str, Any]:
    """Adapt (unless ``none``), evaluate, and the stage's record (see the module docstring)."""
    work = args.work / stage.name
    record: dict[str, Any] = {"stage": stage.name, **asdict(stage), "steps": spec.steps}
    policy = args.base
    if stage.method != "none":
        adapted = work / "adapted"
        options = dict(stage.options)
        if stage.method == "capvector" and stage.setting == "multi":  # the single-task seed's vector
            options["vector"] = str(args.work / f"single/capvector/seed{stage.seed}/adapted/capability_vector.safetensors")
        summary = _adapt(args.base, stage.method, options, args.data, adapted, spec, args.batch, stage.seed)
        record.update(trainable=summary["trainable"]["total"], total=summary["total"]["total"],
                      train_seconds=summary["train_seconds"], vector_seconds=summary.get("vector_seconds", 0.0),
                      options=summary["options"])
        policy = adapted
    record["eval"] = _evaluate(policy, work / "eval", spec, args.workers)
    auxiliary = work / "adapted" / "capvector" / "auxiliary"
    if stage.method == "capvector" and auxiliary.is_dir():  # the auxiliary fine-tune, evaluated itself
        extraction = json.loads((auxiliary.parent / "extraction.json").read_text())
        record["auxiliary"] = {"eval": _evaluate(auxiliary, work / "eval-auxiliary", spec, args.workers), **extraction}
    return record


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
                         "seed": 0, "perturbations": ["nominal", f"*:{spec.levels}"],
                         "max_steps": spec.max_steps}, "adaptation_study_v2")
    results = execute(RunRequest(suite=suite, policy=str(policy), out=out, workers=workers, video="none",
                                 force=True, progress=False))
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    records.sort(key=lambda r: r["id"])
    return {"n": len(records), "successes": sum(bool(r["success"]) and not r["error"] for r in records),
            "wall_s": results["timing"]["wall_s"], "ids": [r["id"] for r in records],
            "success": "".join("1" if r["success"] and not r["error"] else "0" for r in records),
            "steps": [r["steps"] for r in records], "errors": {r["id"]: r["error"] for r in records if r["error"]}}


def load_stages(results: Path) -> list[dict[str, Any]]:
    return [json.loads(f.read_text()) for f in sorted((results / "stages").rglob("*.json"))]


def _outcomes(evaluation: dict[str, Any]) -> dict[str, tuple[bool, dict]]:
    """{episode id: (success, a record with the id's variant)}: what ``simeval.compare`` pairs."""
    return {i: (bit == "1", {"id": i, "perturbation": i.split("/")[2]})
            for i, bit in zip(evaluation["ids"], evaluation["success"])}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting and method: success pooled over seeds, overall and per dimension, with Wilson
    intervals; each seed's rate, their mean and spread; and paired comparisons of the overall
    rate, pooled over the seeds both methods have (the base's one run pairs with each), against full
    fine-tuning and against LoRA at the small budget, Holm-adjusted over each setting's family."""
    import statistics

    from simeval.compare import compare_outcomes
    from simeval.metrics import wilson_interval
    from simeval.paired import holm
    from simeval.records import variant_cell

    out: dict[str, Any] = {}
    for setting in sorted({r["setting"] for r in records}):
        groups: dict[str, list[dict]] = {}
        for r in records:
            if r["setting"] == setting:
                groups.setdefault(r["label"], []).append(r)
                if "auxiliary" in r:
                    groups.setdefault("capvector-auxiliary", []).append({**r, "eval": r["auxiliary"]["eval"]})
        rows = {}
        for label, runs in groups.items():
            dims: dict[str, list[int]] = {}
            for run in runs:
                for i, bit in zip(run["eval"]["ids"], run["eval"]["success"]):
                    dims.setdefault(variant_cell(i.split("/")[2])[0], []).append(bit == "1")
            rates = [run["eval"]["successes"] / run["eval"]["n"] for run in runs]
            cell = lambda oks: {"n": len(oks), "successes": sum(oks), "rate": sum(oks) / len(oks),  # noqa: E731
                                "ci95": list(wilson_interval(sum(oks), len(oks)))}
            rows[label] = {"seeds": sorted(run["seed"] for run in runs), "overall": cell([o for v in dims.values() for o in v]),
                           "dimensions": {d: cell(v) for d, v in dims.items()}, "seed_rates": rates,
                           "mean": statistics.mean(rates), "spread": statistics.stdev(rates) if len(rates) > 1 else None,
                           "share": runs[0]["trainable"] / base_total(records) if "trainable" in runs[0] else None,
                           "train_seconds": statistics.mean(r.get("train_seconds", 0) + r.get("vector_seconds", 0)
                                                            for r in runs)}
        comparisons = []
        for a, b in _pairs(list(groups)):
            seeds = {k: {r["seed"]: r for r in groups[k]} for k in (a, b)}
            shared = sorted(set(seeds[a]) & set(seeds[b])) or sorted(seeds[a] if len(seeds[b]) == 1 else seeds[b])
            pick = lambda k, s: seeds[k][s] if s in seeds[k] else next(iter(seeds[k].values()))  # noqa: E731
            pooled = {k: [_outcomes(pick(k, s)["eval"]) for s in shared] for k in (a, b)}
            comparisons += compare_outcomes(pooled)["comparisons"]
        for comp, adjusted in zip(comparisons, holm([c["cells"][0]["p_value"] for c in comparisons])):
            comp["cells"] = comp["cells"][:1]  # overall, pooled over the seeds both have
            comp["cells"][0]["p_holm"] = adjusted
        out[setting] = {"methods": rows, "comparisons": comparisons}
    return out


def base_total(records: list[dict[str, Any]]) -> int:
    """The base model's parameters (what full fine-tuning trains): shares are of the base, as the
    budgets are (an adapted model's own total also counts its adapter)."""
    full = [r for r in records if r["method"] == "full" and "trainable" in r]
    return full[0]["trainable"] if full else max(r.get("total", 1) for r in records)


def _pairs(labels: list[str]) -> list[tuple[str, str]]:
    """Every method against full fine-tuning and against LoRA at the small budget, each pair once."""
    pairs: list[tuple[str, str]] = []
    for ref in ("full", "lora@small"):
        for label in labels:
            if ref in labels and label != ref and (ref, label) not in pairs:
                pairs.append((label, ref))
    return pairs


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = ["# Adaptation study v2: progress", ""]
    for setting, block in summary.items():
        lines += [f"## {setting}", "", "| method | seeds | % trainable | train s | overall (pooled) [95% CI] | per seed |",
                  "|---|---|---:|---:|---:|---|"]
        for label, row in block["methods"].items():
            share = "—" if row["share"] is None else f"{100 * row['share']:.2f}"
            low, high = row["overall"]["ci95"]
            lines.append(f"| {label} | {','.join(map(str, row['seeds']))} | {share} | {row['train_seconds']:.0f} | "
                         f"{100 * row['overall']['rate']:.1f} [{100 * low:.0f}-{100 * high:.0f}] (n={row['overall']['n']}) | "
                         f"{', '.join(f'{100 * r:.0f}' for r in row['seed_rates'])} |")
        if block["comparisons"]:
            lines += ["", "| paired | n | difference [95% CI] | p | p (Holm) |", "|---|---:|---:|---:|---:|"]
            for comp in block["comparisons"]:
                c = comp["cells"][0]
                lines.append(f"| {comp['a']} - {comp['b']} | {c['n']} | {100 * c['difference']:+.1f} "
                             f"[{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}] | {c['p_value']:.3g} | "
                             f"{c['p_holm']:.3g} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=ROOT / "results" / "reference")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "piper-nominal")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "study-v2")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "adaptation_study_v2")
    parser.add_argument("--demos", type=int, default=40, help="PiPER demonstrations collected per task")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", type=int, default=None, help="run at most this many missing stages, then stop")
    parser.add_argument("--list", action="store_true", help="list the stages, done or not, and stop")
    parser.add_argument("--summary", action="store_true", help="tables and paired comparisons of the stages done "
                        "so far, to <results>/summary.{md,json}, and stop")
    parser.add_argument("--quick", action="store_true", help="tiny smoke version: one seed, 4 steps, level 3, "
                        "2 tasks, 15-step episodes")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.demos, args.workers = 8, 2, 1
    if args.summary:
        summary = summarize(load_stages(args.results))
        (args.results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        (args.results / "summary.md").write_text(summary_markdown(summary))
        print(summary_markdown(summary))
        return
    stages = plan(args.base, args.quick)
    done = [s for s in stages if stage_file(args.results, s).is_file()]
    if args.list:
        for s in stages:
            print(f"{'done' if s in done else '    '}  {s.name}  {s.options or ''}")
        print(f"{len(done)} of {len(stages)} stages done")
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    from adaptation_study import collect

    specs = settings(args.quick)
    collect(args.data, args.demos, tuple(dict.fromkeys(t for s in specs.values() for t in s.tasks)))
    todo = [s for s in stages if s not in done][: args.stages]
    for stage in todo:
        started = time.perf_counter()
        record = run_stage(stage, args, specs[stage.setting])
        record["stage_seconds"] = round(time.perf_counter() - started, 1)
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
