"""``simeval run --policy ws://...`` against ``simeval serve``: the same outcomes as local, and
what happens when the server cannot be reached, refuses the key, or dies mid-run."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from policies.loader import load_policy
from simeval.cli import main
from simeval.harness import RunRequest, execute
from simeval.observers import RoundHook
from simeval.serve import served, start_server, stop_server, wait_ready
from simeval.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = str(ROOT / "results" / "reference")
SUITE = """\
name: remote
tasks: [PutCubeOnPlate]
robots: [Panda]
perturbations: [nominal, "camera:2", "light:3"]
episodes: 2
max_steps: 120
seed: 5
"""


@pytest.fixture
def suite_file(tmp_path) -> Path:
    path = tmp_path / "remote.yaml"
    path.write_text(SUITE)
    return path


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]


def _outcomes(out: Path) -> dict[str, tuple]:
    records = _records(out)
    assert len({r["id"] for r in records}) == len(records)  # never counted twice
    return {r["id"]: (r["success"], r["steps"], r["error"], json.dumps(r["params"], sort_keys=True)) for r in records}


def _run(suite_file: Path, out: Path, policy: str, *flags: str) -> int:
    return main(["run", "--policy", policy, "--suite", str(suite_file), "--out", str(out), "--video", "none",
                 "--workers", "2", *flags])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("policy", [REFERENCE, "scripted", "random"])
def test_remote_run_gives_the_local_outcomes(policy, suite_file, tmp_path):
    assert _run(suite_file, tmp_path / "local", policy) == 0
    with served(policy) as (port, _):
        assert _run(suite_file, tmp_path / "remote", f"ws://127.0.0.1:{port}") == 0
    local, remote = _outcomes(tmp_path / "local"), _outcomes(tmp_path / "remote")
    assert remote == local and len(local) == 6
    assert all(o[2] is None for o in remote.values())
    meta = json.loads((tmp_path / "remote" / "run.json").read_text())
    assert meta["policy_options"] == {"io": "simeval", "replan": None}
    if policy == REFERENCE:
        assert sum(o[0] for o in local.values()) >= 2  # the reference does succeed here: outcomes vary


def test_an_unreachable_server_is_one_line_and_exit_2(suite_file, tmp_path, capsys):
    port = _free_port()
    assert _run(suite_file, tmp_path / "out", f"ws://127.0.0.1:{port}") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"simeval: error: cannot reach the policy server at ws://127.0.0.1:{port}: connection refused " \
                  f"(is the server running, on this port?)"
    assert not (tmp_path / "out").exists()
    for bad in ("ws://", "http://127.0.0.1:8000"):
        assert _run(suite_file, tmp_path / "out", bad) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_the_api_key_is_required_when_the_server_has_one(suite_file, tmp_path, capsys):
    with served("random", "--api-key", "s3cret") as (port, _):
        url = f"ws://127.0.0.1:{port}"
        import urllib.request
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).status == 200
        for flags in ((), ("--api-key", "wrong")):
            assert _run(suite_file, tmp_path / "refused", url, *flags) == 2
            err = capsys.readouterr().err
            assert "HTTP 401: the server refused the API key (--api-key)" in err and err.count("\n") == 1
        assert _run(suite_file, tmp_path / "ok", url, "--api-key", "s3cret") == 0
    assert "s3cret" not in (tmp_path / "ok" / "run.json").read_text()  # the key is never written down
    assert len(_records(tmp_path / "ok")) == 6


def test_a_server_killed_mid_run_and_restarted_loses_nothing(suite_file, tmp_path):
    """The server dies (SIGKILL) after a few rounds and comes back a second later on the same port:
    the episodes in flight re-run from scratch and every outcome is the local one."""
    assert _run(suite_file, tmp_path / "local", REFERENCE) == 0
    port = _free_port()
    first = start_server(REFERENCE, port=port)
    wait_ready(first)
    servers = [first]

    def kill(pool, rounds):
        if rounds == 6:
            os.kill(servers[0].pid, signal.SIGKILL)
            servers[0].wait()

            def restart() -> None:
                time.sleep(1.0)
                servers.append(start_server(REFERENCE, port=port))
            threading.Thread(target=restart, daemon=True).start()

    try:
        policy = load_policy(f"ws://127.0.0.1:{port}")
        request = RunRequest(suite=load_suite(str(suite_file)), policy=f"ws://127.0.0.1:{port}",
                             out=tmp_path / "remote", workers=2, video="none")
        execute(request, policy, observers=[RoundHook(kill)])
        policy.close()
    finally:
        for proc in servers:
            stop_server(proc)
    assert len(servers) == 2  # it was killed and restarted
    assert _outcomes(tmp_path / "remote") == _outcomes(tmp_path / "local")


def test_a_server_that_stays_dead_fails_the_remaining_episodes_and_the_run_goes_on(suite_file, tmp_path):
    port = _free_port()
    proc = start_server("random", port=port)
    wait_ready(proc)

    def kill(pool, rounds):
        if rounds == 4 and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    try:
        policy = load_policy(f"ws://127.0.0.1:{port}", {"backoff_s": 0.02, "connect_tries": 2})
        request = RunRequest(suite=load_suite(str(suite_file)), policy=f"ws://127.0.0.1:{port}",
                             out=tmp_path / "out", workers=1, video="none")
        results = execute(request, policy, observers=[RoundHook(kill)])
    finally:
        stop_server(proc)
    records = _records(tmp_path / "out")
    assert len(records) == 6 and results["overall"]["n"] == 6  # every episode has its record
    errors = [r["error"] for r in records if r["error"]]
    assert errors, "episodes after the kill must be recorded as errors"
    assert all(e.startswith(("policy server unreachable", "lost the connection")) and e.endswith(
        "3 times running this episode") for e in errors), errors
