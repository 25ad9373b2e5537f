"""``--backend ray`` when the cluster fails: a node's raylet killed mid-run (its episodes re-run on the
nodes left; with none left, one line, exit code 2 and a log that ``--resume`` completes), and an
address that accepts connections but never answers. The runs are real ``simeval run`` processes on
a real local cluster (:mod:`tests.ray_cluster`), each bounded by a timeout: the code before these
fixes hung on both."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import simeval
from simeval.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_cluster import ENV, local_cluster  # noqa: E402

ROOT = Path(simeval.__file__).resolve().parents[1]  # the simeval under test, for the runs' processes too
SUITE = """\
name: nodes
tasks: [PushButton, PutCubeOnPlate]
robots: [Panda, Piper]
perturbations: [nominal, "layout:2", "robot_init:3"]
episodes: 3
max_steps: 90
seed: 3
image_size: 32
"""
EPISODES = 36
RUN_TIMEOUT_S = 100  # after the kill; the old code never ended


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    return path


def _records(out: Path) -> dict[str, tuple]:
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in records}) == len(records)  # never counted twice
    return {r["id"]: (r["success"], r["steps"], r["error"], json.dumps(r["params"], sort_keys=True)) for r in records}


def _local(suite: Path, out: Path, *extra: str) -> None:
    assert main(["run", "--policy", "scripted", "--suite", str(suite), "--workers", "2", "--video", "none",
                 "--out", str(out), *extra]) == 0


def _run_killing(suite: Path, out: Path, address: str, kill, after: int = 3) -> tuple[int, str, float]:
    """``simeval run`` on the cluster at ``address``; ``kill()`` once ``after`` episodes are logged.
    The exit code, stderr, and the seconds from the kill to the exit."""
    command = [sys.executable, "-m", "simeval", "run", "--policy", "scripted", "--suite", str(suite), "--workers",
               "2", "--video", "none", "--backend", "ray", "--ray-address", address, "--out", str(out)]
    env = {**ENV, "PYTHONPATH": str(ROOT)}
    with open(out.parent / "stderr.txt", "w+") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
        try:
            log, deadline = out / "episodes.jsonl", time.monotonic() + 120
            while not (log.exists() and len(log.read_text().splitlines()) >= after):
                assert proc.poll() is None and time.monotonic() < deadline, "the run ended or stalled before the kill"
                time.sleep(0.1)
            assert len(log.read_text().splitlines()) < EPISODES - 6, "too late to kill: the run is nearly over"
            kill()
            killed = time.monotonic()
            try:
                code = proc.wait(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the run did not end within {RUN_TIMEOUT_S} s of the kill (it hangs)")
            return code, (err.seek(0), err.read())[1], time.monotonic() - killed
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_a_dead_nodes_episodes_re_run_on_the_nodes_left(tmp_path):
    suite = _suite(tmp_path)
    _local(suite, tmp_path / "local")
    with local_cluster(1, 1) as cluster:  # one env actor on each node (one CPU each)
        code, err, took = _run_killing(suite, tmp_path / "ray", cluster.address, lambda: cluster.kill_raylet(1))
    assert code == 0, err[-3000:]
    assert "simeval: warning: Ray node" in err and "died" in err
    assert _records(tmp_path / "ray") == _records(tmp_path / "local") and len(_records(tmp_path / "local")) == EPISODES
    results = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert results["timing"]["worker_restarts"] >= 1
    print(f"finished {took:.1f} s after the second node's raylet was killed")


@pytest.mark.slow
@pytest.mark.parametrize("lost", ["raylet", "head"])  # the head's raylet (its GCS lives on), or the head itself
def test_with_no_node_left_the_run_stops_in_one_line_exit_2_and_resume_completes_it(lost, tmp_path):
    suite = _suite(tmp_path)
    with local_cluster(2) as cluster:
        kill = (lambda: cluster.kill_raylet(0)) if lost == "raylet" else cluster.kill_head
        code, err, took = _run_killing(suite, tmp_path / "ray", cluster.address, kill)
    assert code == 2, err[-3000:]
    last = err.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"simeval: error: the Ray cluster at {cluster.address}: ") and "--resume" in last, last
    assert err.count("simeval: error") == 1
    partial = _records(tmp_path / "ray")
    assert 3 <= len(partial) < EPISODES
    assert not (tmp_path / "ray" / "results.json").exists()
    _local(suite, tmp_path / "ray", "--resume")  # locally: the backend is not part of a run's identity
    _local(suite, tmp_path / "local")
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")
    print(f"stopped {took:.1f} s after the head's {'raylet was' if lost == 'raylet' else 'GCS and raylet were'} "
          f"killed: {last}")


class SilentServer:
    """Accepts TCP connections and never says a word (a wrong port, a hung service)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.socket.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.socket.close()
        for conn in self.held:
            conn.close()


def _refused_port() -> int:
    with socket.socket() as s:  # bound, never listening: a connection is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["silent", "ray://silent", "refused"])
def test_an_address_that_never_answers_fails_within_5_s_in_one_line(kind, tmp_path):
    server = SilentServer() if "silent" in kind else None
    port = server.port if server else _refused_port()
    address = f"{'ray://' if kind.startswith('ray://') else ''}127.0.0.1:{port}"
    suite = _suite(tmp_path)
    code = ("import sys, time; from simeval.cli import main; t = time.monotonic(); "
            f"rc = main(['run', '--policy', 'scripted', '--suite', {str(suite)!r}, '--backend', 'ray', "
            f"'--ray-address', {address!r}, '--out', {str(tmp_path / 'out')!r}]); "
            "print(f'took {time.monotonic() - t:.2f}', file=sys.stderr); sys.exit(rc)")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**ENV, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"--ray-address {address} did not fail within 60 s")
    finally:
        if server:
            server.close()
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 2, done.stderr[-2000:]
    assert lines[0].startswith("simeval: error: cannot ") and address in lines[0]
    took = float(lines[1].split()[1])
    assert took < 7.0, f"took {took} s"  # the bound is 5 s; the rest is loading the suite and Ray
    print(f"{address}: {lines[0]} ({took:.2f} s)")
