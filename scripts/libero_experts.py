"""Success of LIBERO's privileged experts (``--policy scripted-libero``) per task, through ``simeval run``.

    python scripts/libero_experts.py --suites libero_spatial,libero_object --episodes 10 \\
        --runs runs/libero_experts --out results/libero_experts

runs ``simeval run --policy scripted-libero --suite <suite> --episodes N --video none --resume`` per
suite (init states 0..N-1 of every task, openpi's protocol: 10 wait steps, the suite's step limit,
seed 7) into ``<runs>/<suite>``, then writes ``<out>.json`` (per task: successes, episodes, failed
init states, mean steps of the successes, the step limit) and ``<out>.md`` (a table). ``--resume``
makes a stopped study continue, and a larger ``--episodes`` adds init states to an earlier one.
Exits 1 if a suite given in ``--target-suites`` is below ``--threshold``. ``--no-run`` only summarises
the records already there (a study stopped part way; each task then counts its own episodes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simeval.cli import main as simeval_main
from simeval.libero import catalog
from simeval.records import read_records


def run_suite(suite: str, episodes: int, workers: int, runs: Path, run: bool = True) -> list[dict]:
    """The suite's episodes through the CLI (unless ``run`` is false: the records already there);
    per task, what the records say."""
    out = runs / suite
    if run:
        code = simeval_main(["run", "--policy", "scripted-libero", "--suite", suite, "--episodes", str(episodes),
                             "--workers", str(workers), "--video", "none", "--out", str(out), "--resume"])
        if code != 0:
            raise SystemExit(f"simeval run on {suite} exited {code}")
    records = [r for r in read_records(out / "episodes.jsonl") if int(r["id"].rsplit("/", 1)[1]) < episodes]
    rows = []
    for task in catalog.tasks(suite):
        mine = sorted((r for r in records if r["task"] == task.name), key=lambda r: r["id"])
        won = [r for r in mine if r["success"]]
        rows.append({"suite": suite, "index": task.index, "task": task.name, "episodes": len(mine),
                     "successes": len(won),
                     "failed_init_states": [int(r["id"].rsplit("/", 1)[1]) for r in mine if not r["success"]],
                     "errors": sorted({r["error"] for r in mine if r["error"]}),
                     "mean_steps": round(sum(r["steps"] for r in won) / len(won), 1) if won else None,
                     "max_steps": catalog.max_steps(suite)})
    return rows


def to_markdown(rows: list[dict], command: str) -> str:
    lines = [f"LIBERO's privileged experts (`scripted-libero`), `{command}`", "",
             "| suite | task | success | mean steps of successes (limit) | failed init states |",
             "|---|---|---|---|---|"]
    for r in rows:
        rate = 100.0 * r["successes"] / max(r["episodes"], 1)
        lines.append(f"| {r['suite']} | {r['index']}: {r['task']} | {r['successes']}/{r['episodes']} ({rate:.0f}%) | "
                     f"{r['mean_steps']} ({r['max_steps']}) | {', '.join(map(str, r['failed_init_states'])) or '-'} |")
    lines.append("")
    for suite in dict.fromkeys(r["suite"] for r in rows):
        won, n = (sum(r[k] for r in rows if r["suite"] == suite) for k in ("successes", "episodes"))
        lines.append(f"- {suite}: {won}/{n} ({100.0 * won / max(n, 1):.1f}%)")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default="libero_spatial,libero_object")
    parser.add_argument("--episodes", type=int, default=10, help="init states 0..N-1 of every task")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--runs", type=Path, default=Path("runs/libero_experts"))
    parser.add_argument("--out", type=Path, default=Path("results/libero_experts"))
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--target-suites", default="libero_spatial,libero_object")
    parser.add_argument("--no-run", action="store_true", help="only summarise the records already in --runs "
                                                              "(a study stopped part way: each task's own count)")
    args = parser.parse_args()
    suites = [s for s in args.suites.split(",") if s]
    unknown = [s for s in suites if not catalog.is_benchmark(s)]
    if unknown:
        parser.error(f"unknown suite {', '.join(unknown)}; valid: {', '.join(catalog.benchmarks())}")
    rows = [row for suite in suites for row in run_suite(suite, args.episodes, args.workers, args.runs,
                                                          run=not args.no_run)]
    command = " ".join(["python scripts/libero_experts.py", *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {}
    for suite in suites:
        won, n = (sum(r[k] for r in rows if r["suite"] == suite) for k in ("successes", "episodes"))
        summary[suite] = {"successes": won, "episodes": n, "rate": round(won / max(n, 1), 4)}
    Path(f"{args.out}.json").write_text(json.dumps({"command": command, "episodes_per_task": args.episodes,
                                                    "suites": summary, "tasks": rows}, indent=1) + "\n")
    Path(f"{args.out}.md").write_text(to_markdown(rows, command))
    print(to_markdown(rows, command))
    low = [s for s in args.target_suites.split(",") if s in summary and summary[s]["rate"] < args.threshold]
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
