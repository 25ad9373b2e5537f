"""``simeval serve`` against clients that are wrong or hostile: a bad request fails alone, not its
batch; a client whose I/O profile is not the server's is refused at connect; a non-loopback bind
needs a key; frames, connections and memory are bounded; clients get one-line reasons, never the
server's tracebacks."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from raw_ws import handshake, read_frame, stream_zeros
from servers import fake_server, memory_mb, policy_server, zeros
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from policies.base import Batch, ObservationSpec, Policy
from policies.loader import load_policy
from policies.remote.client import RemoteConfig, RemotePolicy
from policies.remote.wire import pack, unpack
from policies.scripted import ScriptedPolicy
from simeval.cli import main
from simeval.harness import RunRequest, execute
from simeval.serve import PolicyServer, ServeConfig, served
from simeval.suites import load_suite

KEY = "K"


class Echo(Policy):
    """Answers each slot with its state's first 7 numbers; a negative opening is a policy failure."""

    observation_spec = ObservationSpec(cameras=("wrist",), image_size=16)

    def act(self, batch: Batch) -> np.ndarray:
        if np.any(batch.state[:, 7] < 0):
            raise RuntimeError("negative gripper opening\n(a second line the client must not see)")
        return batch.state[:, :7].copy()


def _request(opening: float) -> bytes:
    state = np.full(8, 0.25, np.float32)
    state[7] = opening
    return pack({"state": state, "instruction": "x", "wrist": np.zeros((16, 16, 3), np.uint8)})


def _client(port: int, key: str | None = None):
    headers = {"Authorization": f"Api-Key {key}"} if key else None
    conn = connect(f"ws://127.0.0.1:{port}", additional_headers=headers, compression=None, max_size=None)
    conn.recv(timeout=10)  # the metadata
    return conn


def _records(out: Path) -> dict[str, tuple]:
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    return {r["id"]: (r["success"], r["steps"], r["error"], json.dumps(r["params"], sort_keys=True)) for r in rows}


def _suite(tmp_path: Path, episodes: int = 8, task: str = "PutCubeOnPlate", steps: int = 120) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(f"name: hardening\ntasks: [{task}]\nrobots: [Panda]\nperturbations: [nominal]\n"
                    f"episodes: {episodes}\nmax_steps: {steps}\nseed: 5\nimage_size: 32\n")
    return path


# --- 1. a bad request fails alone ----------------------------------------------------------------

def test_a_failing_request_fails_alone_and_the_rest_of_its_batch_gets_actions(caplog):
    config = ServeConfig(port=0, max_batch=3, batch_wait_ms=500)
    with policy_server(Echo(), config) as (srv, port):
        conns = [_client(port) for _ in range(3)]
        replies: dict[int, object] = {}

        def ask(i: int, opening: float) -> None:
            conns[i].send(_request(opening))
            replies[i] = conns[i].recv(timeout=10)
        threads = [threading.Thread(target=ask, args=(i, o)) for i, o in enumerate((0.5, -1.0, 0.75))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in (0, 2):
            assert isinstance(replies[i], bytes), replies[i]
            np.testing.assert_allclose(unpack(replies[i])["actions"], [[0.25] * 7])
        assert srv.batches[0] == 3  # the three were one policy call
        # 8c: the client gets the exception's one line, the traceback stays in the server's log
        assert replies[1] == "RuntimeError: negative gripper opening | (a second line the client must not see)"
        with pytest.raises(ConnectionClosed) as closed:
            conns[1].recv(timeout=10)
        assert closed.value.rcvd.code == 1011
        for conn in conns:
            conn.close()
    logged = [r for r in caplog.records if r.name == "simeval.serve" and r.exc_info]
    assert logged and "in act" in logging.Formatter().formatException(logged[0].exc_info)


def _hostile(port: int, stop: threading.Event, request: dict, seen: list) -> None:
    """Sends ``request`` on a fresh connection, again and again, and keeps the server's answers."""
    while not stop.is_set():
        conn = _client(port, KEY)
        try:
            conn.send(pack(request))
            seen.append(conn.recv(timeout=10))
        except ConnectionClosed:
            pass
        finally:
            conn.close()


def test_a_hostile_client_beside_a_real_run_changes_none_of_its_records(tmp_path):
    suite = _suite(tmp_path)
    assert main(["run", "--policy", "scripted", "--suite", str(suite), "--out", str(tmp_path / "local"),
                 "--video", "none", "--workers", "2"]) == 0
    state = np.zeros(8, np.float32)
    unknown_task = {"state": state, "instruction": "x", "privileged": {"tcp_pos": 1},
                    "episode": {"id": "h", "task": "Nope", "robot": "Panda", "seed": 0}}
    bad_state = {"state": state, "instruction": "x", "privileged": {"tcp_pos": "none"},
                 "episode": {"id": "h", "task": "PutCubeOnPlate", "robot": "Panda", "seed": 0}}
    with served("scripted", "--api-key", KEY, "--batch-wait-ms", "3") as (port, _):
        stop, seen = threading.Event(), {0: [], 1: []}
        threads = [threading.Thread(target=_hostile, args=(port, stop, req, seen[i % 2]), daemon=True)
                   for i, req in enumerate([unknown_task, bad_state] * 2)]
        for t in threads:
            t.start()
        try:
            assert main(["run", "--policy", f"ws://127.0.0.1:{port}", "--api-key", KEY, "--suite", str(suite),
                         "--out", str(tmp_path / "remote"), "--video", "none", "--workers", "2"]) == 0
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=20)
    assert _records(tmp_path / "remote") == _records(tmp_path / "local")
    assert sum(r[0] for r in _records(tmp_path / "local").values()) == 8
    assert len(seen[0]) > 20 and all(s.startswith("ValueError: unknown task 'Nope'") for s in seen[0]), seen[0][:3]
    assert seen[1] and all("scripted expert cannot read this privileged state" in s for s in seen[1]), seen[1][:3]


# --- 5. a client's profile that is not the server's ----------------------------------------------

def test_a_run_whose_io_is_not_the_servers_is_refused_at_connect(tmp_path, capsys):
    suite = _suite(tmp_path, episodes=1, task="PushButton", steps=10)
    with served("random", "--io", "libero") as (port, _):
        url = f"ws://127.0.0.1:{port}"
        assert main(["run", "--policy", url, "--suite", str(suite), "--out", str(tmp_path / "a")]) == 2
        err = capsys.readouterr().err
        assert err == f"simeval: error: the server at {url} serves the 'libero' I/O profile and this run sends " \
                      f"'simeval'; pass --io libero (or serve with --io simeval)\n"
    with served("random") as (port, _):
        assert main(["run", "--policy", f"ws://127.0.0.1:{port}", "--io", "libero", "--suite", str(suite),
                     "--out", str(tmp_path / "b")]) == 2
        assert "serves the 'simeval' I/O profile and this run sends 'libero'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any episode


def test_a_server_whose_metadata_names_no_profile_still_works(tmp_path):
    """openpi's own server sends its policy's metadata, no ``io``: the run goes ahead as before."""
    suite = _suite(tmp_path, episodes=1, task="PushButton", steps=10)
    with fake_server(zeros(10), metadata={"policy": "openpi"}) as server:
        assert main(["run", "--policy", f"ws://127.0.0.1:{server['port']}", "--io", "libero", "--suite",
                     str(suite), "--out", str(tmp_path / "o"), "--video", "none"]) == 0
        assert len(server["requests"]) == 1 and "observation/state" in server["requests"][0]


# --- 8. what the network can do ------------------------------------------------------------------

def _serve(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simeval", "serve", "--policy", "random", "--port", "0", *flags],
                          capture_output=True, text=True, timeout=30)


def test_a_non_loopback_bind_needs_a_key_or_insecure():
    done = _serve("--host", "0.0.0.0")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--host '0.0.0.0' accepts connections from other machines" in done.stderr
    assert "give --api-key KEY, or --insecure" in done.stderr
    # --insecure goes ahead and says so (an address this machine does not have: nothing listens)
    done = _serve("--host", "192.0.2.1", "--insecure")
    lines = done.stderr.splitlines()
    assert lines[0] == "simeval: warning: serving on 192.0.2.1 without an API key (--insecure): anyone who " \
                       "reaches port 0 can use the policy"
    assert done.returncode == 2 and "cannot listen on 192.0.2.1:0" in lines[1]
    from simeval.serve import is_loopback

    assert [h for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost") if not is_loopback(h)] == []
    assert [h for h in ("0.0.0.0", "", "::", "10.1.2.3", "example.com") if is_loopback(h)] == []


def test_the_largest_message_follows_the_profile_and_a_flag_raises_it():
    from policies.remote.profiles import REQUEST_SLACK

    assert PolicyServer(Echo(), ServeConfig()).max_size == 16 * 16 * 3 + REQUEST_SLACK
    assert PolicyServer(Echo(), ServeConfig(io="libero")).max_size == 2 * 256 * 256 * 3 + REQUEST_SLACK
    assert PolicyServer(ScriptedPolicy(), ServeConfig()).max_size == REQUEST_SLACK  # no images
    assert PolicyServer(Echo(), ServeConfig(max_message_mb=300)).max_size == 300 * 2**20
    with pytest.raises(ValueError, match="--max-message-mb 0"):
        ServeConfig(max_message_mb=0)


def test_a_request_over_the_limit_fails_its_episode_with_a_one_line_reason(tmp_path):
    suite = load_suite(str(_suite(tmp_path, episodes=1, task="PushButton", steps=10)))
    with policy_server(ScriptedPolicy(), ServeConfig(port=0, max_message_mb=0.0005)) as (_, port):
        url = f"ws://127.0.0.1:{port}"
        policy = load_policy(url)
        execute(RunRequest(suite=suite, policy=url, out=tmp_path / "o", workers=1, video="none"), policy)
        policy.close()
    (record,) = [json.loads(line) for line in (tmp_path / "o" / "episodes.jsonl").read_text().splitlines()]
    assert record["error"].startswith("the policy server refused a request of ")
    assert "as too big (" in record["error"] and record["error"].endswith("its --max-message-mb)")


def test_huge_frames_leave_the_servers_memory_bounded():
    """Four clients each announce a 200 MB frame at once: each is closed with 1009 when its header
    arrives, and the server's peak resident memory grows by less than 64 MB."""
    with served("scripted") as (port, proc):
        conn = _client(port)
        conn.close()
        before = memory_mb(proc.pid)  # VmHWM: the start-up's peak, which may be above what follows
        closes: list = []

        def flood() -> None:
            sock = handshake(port)
            read_frame(sock)  # the metadata
            stream_zeros(sock, 200 * 2**20)
            opcode, payload = read_frame(sock)
            closes.append((opcode, int.from_bytes(payload[:2], "big") if opcode == 8 else None))
            sock.close()
        threads = [threading.Thread(target=flood) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        peak = memory_mb(proc.pid)["VmHWM"]
        assert proc.poll() is None  # still serving
        _client(port).close()
    assert closes == [(8, 1009)] * 4  # a close frame, "message too big"
    assert peak < max(before["VmHWM"], before["VmRSS"] + 64), f"peak {peak:.0f} MB from {before}"


def test_connections_beyond_the_limit_are_refused_with_503_and_a_one_line_reason():
    with policy_server(Echo(), ServeConfig(port=0, max_connections=2)) as (srv, port):
        first, second = _client(port), _client(port)
        with pytest.raises(InvalidStatus) as refused:
            _client(port)
        assert refused.value.response.status_code == 503
        with pytest.raises(ValueError) as busy:
            RemotePolicy(RemoteConfig(f"ws://127.0.0.1:{port}"))
        assert str(busy.value) == f"cannot reach the policy server at ws://127.0.0.1:{port}: HTTP 503: server " \
                                  f"busy: 2 connections open, its limit (--max-connections)"
        first.close()
        deadline = time.monotonic() + 10
        while srv.connections > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        third = _client(port)  # a closed connection's place is free again
        third.send(_request(0.5))
        np.testing.assert_allclose(unpack(third.recv(timeout=10))["actions"], [[0.25] * 7])
        second.close()
        third.close()


@pytest.mark.parametrize("argv, message", [
    (["--max-connections", "0"], "--max-connections 0: an integer in 1..65536"),
    (["--max-message-mb", "-1"], "argument --max-message-mb: expected a finite number in (0, 65536], got '-1'"),
    (["--host", "10.1.2.3"], "--host '10.1.2.3' accepts connections from other machines"),
])
def test_serve_limits_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["serve", "--policy", "random", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
