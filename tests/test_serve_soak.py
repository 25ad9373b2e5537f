"""A soak of ``simeval serve`` on the loopback, bounded in time and count: two real runs (well-formed
clients) beside clients that send garbage, wrong fields, unknown tasks, trickled frames, oversized
frames, many requests before reading an answer, and that hang up mid-request. The runs' records equal a local run's, the server's peak
memory stays within a stated bound, and when every client is gone it holds no connection."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from raw_ws import handshake, read_frame, send_frame, stream_zeros
from servers import memory_mb, open_sockets

from envs.env import TabletopEnv
from policies.remote.wire import pack
from simeval.cli import main
from simeval.serve import served

KEY = "soak"
RUNS = 2  # well-formed clients: `simeval run --policy ws://...`, 2 env workers each
ROUNDS = 100  # requests per hostile client
OVERSIZED_MB = 50
MEMORY_BOUND_MB = 64  # the server's peak resident memory over its resident memory before the soak
SUITE = """\
name: soak
tasks: [PutCubeOnPlate]
robots: [Panda]
perturbations: [nominal, "light:3"]
episodes: 3
max_steps: 120
seed: 11
"""


def _records(out: Path) -> dict[str, tuple]:
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    return {r["id"]: (r["success"], r["steps"], r["error"], json.dumps(r["params"], sort_keys=True)) for r in rows}


def _valid_request() -> dict:
    """A well-formed first request of an episode, with real privileged state."""
    env = TabletopEnv("PutCubeOnPlate", "Panda", image_size=32)
    obs, _ = env.reset(seed=3)
    privileged = env.privileged_state()
    env.close()
    return {"state": obs["state"], "instruction": obs["instruction"], "privileged": privileged,
            "episode": {"id": "soak", "task": "PutCubeOnPlate", "robot": "Panda", "seed": 3}}


def _hostile(kind: str, port: int, valid: bytes, tally: dict) -> None:
    """``ROUNDS`` requests of one kind, each on a fresh connection; counts what came back."""
    bad = {"garbage": b"\xc1\xc1 not msgpack", "missing": pack({"instruction": "x"}),
           "unknown-task": pack({**_unpacked(valid), "episode": {"id": "h", "task": "Nope", "robot": "Panda", "seed": 0}}),
           "bad-privileged": pack({**_unpacked(valid), "privileged": {"tcp_pos": "none"}})}
    if kind == "pipeline":  # ROUNDS requests on one connection before reading any answer
        sock = handshake(port, KEY)
        read_frame(sock)
        for _ in range(ROUNDS):
            send_frame(sock, valid)
        for _ in range(ROUNDS):
            tally[kind]["actions" if read_frame(sock)[0] == 2 else "other"] += 1
        sock.close()
        return
    for _ in range(ROUNDS if kind != "oversized" else 3):
        sock = handshake(port, KEY)
        read_frame(sock)  # the metadata
        if kind in bad:
            send_frame(sock, bad[kind])
        elif kind == "text":
            send_frame(sock, b"hello", opcode=1)
        elif kind == "slow":  # a valid request trickled in 8 pieces, 20 ms apart
            send_frame(sock, valid, pause_s=0.02, pieces=8)
        elif kind == "hang-up":  # a valid request, then gone before the answer
            send_frame(sock, valid)
        elif kind == "half-frame":  # half a request, then gone
            sock.sendall((b"\x82\xfe" + len(valid).to_bytes(2, "big") + b"\0\0\0\0" + valid)[: len(valid) // 2])
        elif kind == "oversized":
            stream_zeros(sock, OVERSIZED_MB * 2**20)
        if kind not in ("hang-up", "half-frame"):
            opcode, _ = read_frame(sock)
            tally[kind][{2: "actions", 1: "error", 8: "closed"}.get(opcode, "other")] += 1
        else:
            tally[kind]["gone"] += 1
        sock.close()


def _unpacked(frame: bytes) -> dict:
    from policies.remote.wire import unpack

    return dict(unpack(frame))


def test_soak(tmp_path):
    suite = tmp_path / "soak.yaml"
    suite.write_text(SUITE)
    assert main(["run", "--policy", "scripted", "--suite", str(suite), "--out", str(tmp_path / "local"),
                 "--video", "none", "--workers", "2"]) == 0
    local = _records(tmp_path / "local")
    valid = pack(_valid_request())
    kinds = ["garbage", "text", "missing", "unknown-task", "bad-privileged", "slow", "pipeline", "hang-up",
             "half-frame", "oversized"]
    tally = {k: {"actions": 0, "error": 0, "closed": 0, "other": 0, "gone": 0} for k in kinds}
    started = time.perf_counter()
    with served("scripted", "--api-key", KEY, "--batch-wait-ms", "2", "--max-connections", "32") as (port, proc):
        idle_sockets, start = open_sockets(proc.pid), memory_mb(proc.pid)
        before = start["VmRSS"]
        peak, done = [before], threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                peak.append(memory_mb(proc.pid)["VmRSS"])
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        hostile = [threading.Thread(target=_hostile, args=(k, port, valid, tally), daemon=True) for k in kinds]
        for t in hostile:
            t.start()
        runs = [subprocess.Popen([sys.executable, "-m", "simeval", "run", "--policy", f"ws://127.0.0.1:{port}",
                                  "--api-key", KEY, "--suite", str(suite), "--out", str(tmp_path / f"remote{i}"),
                                  "--video", "none", "--workers", "2"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for i in range(RUNS)]
        for run in runs:
            assert run.wait(timeout=120) == 0, run.stderr.read()[-2000:]
        for t in hostile:
            t.join(timeout=120)
        deadline = time.monotonic() + 10  # closing handshakes finish
        while open_sockets(proc.pid) > idle_sockets and time.monotonic() < deadline:
            time.sleep(0.05)
        left = open_sockets(proc.pid) - idle_sockets
        done.set()
        watcher.join()
        hwm = memory_mb(proc.pid)["VmHWM"]
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read() == b"OK\n"
    seconds = time.perf_counter() - started
    for i in range(RUNS):
        assert _records(tmp_path / f"remote{i}") == local
    assert left == 0, f"{left} connections left open"
    bound = before + MEMORY_BOUND_MB
    assert max(peak) < bound and hwm <= max(start["VmHWM"], bound), (start, max(peak), hwm)
    errors = {"garbage", "text", "missing", "unknown-task", "bad-privileged"}
    assert all(tally[k]["error"] == ROUNDS for k in errors), tally
    assert tally["slow"]["actions"] == tally["pipeline"]["actions"] == ROUNDS, tally
    assert tally["oversized"]["closed"] == 3, tally
    assert tally["hang-up"]["gone"] == tally["half-frame"]["gone"] == ROUNDS
    requests = RUNS * sum(r[1] for r in local.values()) + sum(sum(t.values()) for t in tally.values())
    print(f"\nsoak: {requests} requests from {RUNS * 2 + len(kinds)} clients ({RUNS} runs x 2 connections, "
          f"{len(kinds)} hostile), server RSS {before:.0f} MB before, peak {max(peak):.0f} MB (VmHWM {hwm:.0f} MB), "
          f"{seconds:.1f} s, {left} connections left")
