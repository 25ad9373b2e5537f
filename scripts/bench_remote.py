"""Benchmark of remote policies: a policy through ``simeval serve`` on loopback against the same
policy run in the harness's own process.

    python scripts/bench_remote.py [--episodes 3] [--rounds 3] [--json results/bench_remote.json]

One run, the same episodes in every case: PutCubeOnPlate and PickUpBlueCube on the Panda, nominal,
camera:2, light:3, noise:3 and layout:2, ``--episodes`` each, both cameras at 128 x 128 (what the
reference reads), 2 workers, no videos. The cases alternate, local then remote, for ``--rounds``
rounds, so that the machine's noise falls on both; the figure is the median over rounds of each
and the median of the per-round ratios. The server is started once (``--threads 1``: on this
machine it shares the cores with the two env workers, as the local policy does with one torch
thread), warmed up, and kept. Every remote round must give the local per-episode outcomes.
Also reported: bytes sent per request and received per reply, the round trip per request (send
to reply), and the server's own time per request (its ``server_timing``: queueing and inference).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from policies.loader import load_policy
from simeval.harness import RunRequest, execute
from simeval.serve import served
from simeval.suites import Suite

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = str(ROOT / "results" / "reference")


def _suite(episodes: int) -> Suite:
    return Suite(name="bench-remote", tasks=["PutCubeOnPlate", "PickUpBlueCube"], robots=["Panda"],
                 perturbations=["nominal", "camera:2", "light:3", "noise:3", "layout:2"], episodes=episodes, seed=0)


def _once(policy_spec: str, policy, suite: Suite, workers: int, out: Path) -> tuple[dict, dict]:
    request = RunRequest(suite=suite, policy=policy_spec, out=out, workers=workers, video="none", force=True,
                         progress=False)
    results = execute(request, policy)
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    return results["timing"], {r["id"]: (r["success"], r["steps"], r["error"]) for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3, help="episodes per (task, variant)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--policy", default=REFERENCE)
    parser.add_argument("--batch-wait-ms", default="0", help="the server's --batch-wait-ms")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    suite = _suite(args.episodes)
    load = os.getloadavg()
    local_policy = load_policy(args.policy)
    rows: dict[str, list] = {"local": [], "remote": []}
    server = served(args.policy, "--batch-wait-ms", args.batch_wait_ms)
    with tempfile.TemporaryDirectory() as tmp, server as (port, _):
        url = f"ws://127.0.0.1:{port}"
        warm = load_policy(url)
        _once(url, warm, _suite(1), args.workers, Path(tmp) / "warm")  # server's first inference, envs' first GL
        warm.close()
        expected = None
        for round_ in range(args.rounds):
            timing, outcomes = _once(args.policy, local_policy, suite, args.workers, Path(tmp) / "local")
            expected = expected or outcomes
            assert outcomes == expected, "the local outcomes changed between rounds"
            rows["local"].append(timing["episodes_per_s"])
            remote = load_policy(url)
            timing, outcomes = _once(url, remote, suite, args.workers, Path(tmp) / "remote")
            remote.close()
            assert outcomes == expected, "the remote outcomes differ from the local ones"
            rows["remote"].append(timing["episodes_per_s"])
            t = remote.traffic
            print(f"round {round_ + 1}: local {rows['local'][-1]:.3f} ep/s, remote {rows['remote'][-1]:.3f} ep/s "
                  f"({rows['remote'][-1] / rows['local'][-1]:.2f}x); {t.requests} requests", flush=True)
    ratios = [r / l for l, r in zip(rows["local"], rows["remote"])]
    summary = {
        "episodes": len(suite.episode_specs()), "workers": args.workers, "rounds": args.rounds,
        "policy": Path(args.policy).name, "batch_wait_ms": float(args.batch_wait_ms), "load_before": [round(v, 2) for v in load], "cpu_count": os.cpu_count(),
        "local_episodes_per_s": rows["local"], "remote_episodes_per_s": rows["remote"],
        "median_local": statistics.median(rows["local"]), "median_remote": statistics.median(rows["remote"]),
        "median_ratio": statistics.median(ratios), "outcomes_identical": True,
        "requests_last_round": t.requests, "bytes_per_request": t.bytes_sent / t.requests,
        "bytes_per_reply": t.bytes_received / t.requests,
        "round_trip_ms_median": 1000 * statistics.median(t.round_trip_s),
        "round_trip_ms_p90": 1000 * statistics.quantiles(t.round_trip_s, n=10)[-1],
        "server_ms_median": 1000 * statistics.median(t.server_s) if t.server_s else None,
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
