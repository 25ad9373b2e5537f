"""A policy server that answers badly fails that episode with the reason, and the run goes on; the
replan horizon; what ``simeval serve`` does with concurrent, bad and unauthorised requests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from servers import NO_CAMERAS, fake_server, zeros
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from policies.base import Batch, ObservationSpec, Policy
from policies.loader import load_policy
from policies.remote.wire import pack, unpack
from simeval.cli import main
from simeval.harness import RunRequest, execute
from simeval.serve import PolicyServer, ServeConfig
from simeval.suites import load_suite

SUITE = """\
name: fake
tasks: [PushButton]
robots: [Panda]
perturbations: [nominal]
episodes: 2
max_steps: 20
seed: 1
image_size: 32
"""


def _run(tmp_path: Path, port: int, **remote) -> list[dict]:
    suite = tmp_path / "fake.yaml"
    suite.write_text(SUITE)
    url = f"ws://127.0.0.1:{port}"
    policy = load_policy(url, remote)
    out = tmp_path / "out"
    execute(RunRequest(suite=load_suite(str(suite)), policy=url, out=out, workers=1, video="none"), policy)
    policy.close()
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]


def _nan(request):
    chunk = np.zeros((4, 7), np.float32)
    chunk[2, 1] = np.nan
    return {"actions": chunk}


@pytest.mark.parametrize("reply, error", [
    (lambda r: {"action": np.zeros((4, 7))}, "policy server reply has no 'actions' (it has: action)"),
    (lambda r: {"actions": np.zeros((4, 6))}, "policy server reply 'actions' has shape (4, 6) (float64); expected (H, 7)"),
    (lambda r: {"actions": "none"}, "policy server reply 'actions' has shape ()"),
    (_nan, "policy returned a non-finite action"),
    (lambda r: "Traceback (most recent call last):\n  File \"x.py\"\nRuntimeError: CUDA out of memory\n",
     "policy server error: RuntimeError: CUDA out of memory"),
])
def test_a_bad_reply_fails_the_episode_with_the_reason(reply, error, tmp_path):
    with fake_server(reply) as server:
        records = _run(tmp_path, server["port"])
    assert len(records) == 2  # both episodes ran and were recorded
    assert all(not r["success"] and r["error"].startswith(error) for r in records), [r["error"] for r in records]


def test_a_reply_later_than_the_timeout_fails_the_episode(tmp_path):
    def slow(request):
        time.sleep(1.5)
        return zeros()(request)

    with fake_server(slow) as server:
        started = time.perf_counter()
        records = _run(tmp_path, server["port"], timeout=0.5)
    assert [r["error"] for r in records] == ["no reply from the policy server within 0.5 s (--timeout)"] * 2
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("replan, requests_per_episode", [(None, 2), (5, 4), (1, 20)])
def test_each_chunk_runs_open_loop_for_replan_steps(replan, requests_per_episode, tmp_path):
    """Chunks of 10, episodes of 20 steps (PushButton is not pressed by doing nothing)."""
    with fake_server(zeros(10)) as server:
        records = _run(tmp_path, server["port"], **({"replan": replan} if replan else {}))
        assert len(server["requests"]) == 2 * requests_per_episode
    assert [r["steps"] for r in records] == [20, 20]
    first = server["requests"][0]
    assert first["episode"]["task"] == "PushButton" and set(first) == {"state", "instruction", "episode"}
    starts = [r["episode"]["id"] for r in server["requests"] if "episode" in r]
    assert sorted(starts) == sorted(r["id"] for r in records)  # an episode's first request only carries it


def test_a_server_without_simeval_metadata_needs_a_profile(tmp_path, capsys):
    with fake_server(zeros(), metadata={}) as server:
        suite = tmp_path / "fake.yaml"
        suite.write_text(SUITE)
        assert main(["run", "--policy", f"ws://127.0.0.1:{server['port']}", "--suite", str(suite),
                     "--out", str(tmp_path / "o")]) == 2
    assert "not a simeval server; pass --io libero" in capsys.readouterr().err


def test_remote_options_apply_to_servers_only(capsys):
    assert main(["run", "--policy", "random", "--suite", "smoke", "--replan", "4"]) == 2
    assert capsys.readouterr().err.strip() == "simeval: error: --replan apply to a policy server (--policy " \
                                              "ws://HOST:PORT), not to 'random'"


# --- the server ----------------------------------------------------------------------------------

class StateEcho(Policy):
    """Answers each slot with its state's first 7 numbers; remembers its batch sizes."""

    observation_spec = ObservationSpec(cameras=("wrist",), image_size=16)
    chunk = 1

    def act(self, batch: Batch) -> np.ndarray:
        assert batch.wrist.shape == (len(batch), 16, 16, 3)
        if np.any(batch.state[:, 7] < 0):
            raise RuntimeError("negative gripper opening")
        return batch.state[:, :7].copy()


@pytest.fixture
def server():
    """A PolicyServer on a free port in a thread; yields (server, port)."""
    ready = threading.Event()
    box: dict = {}

    def run() -> None:
        srv = PolicyServer(StateEcho(), ServeConfig(port=0, max_batch=3, batch_wait_ms=300, api_key="k"), "echo")
        box["server"] = srv

        def on_ready(port: int) -> None:
            box["port"] = port
            ready.set()
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        box["task"] = loop.create_task(srv.run(on_ready))
        try:
            loop.run_until_complete(box["task"])
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    yield box["server"], box["port"]
    box["loop"].call_soon_threadsafe(box["task"].cancel)
    thread.join(timeout=10)


def _request(state: np.ndarray) -> bytes:
    return pack({"state": state.astype(np.float32), "instruction": "x", "wrist": np.zeros((16, 16, 3), np.uint8)})


def _client(port: int, key: str = "k"):
    conn = connect(f"ws://127.0.0.1:{port}", additional_headers={"Authorization": f"Api-Key {key}"},
                   compression=None, max_size=None)
    return conn, unpack(conn.recv(timeout=10))


def test_requests_on_several_connections_share_a_policy_call(server):
    srv, port = server
    clients = [_client(port) for _ in range(5)]
    assert clients[0][1]["observation_spec"] == {"cameras": ["wrist"], "image_size": 16, "privileged": False}
    assert clients[0][1]["chunk"] == 1 and clients[0][1]["io"] == "simeval"
    states = [np.full(8, i / 10) for i in range(5)]
    replies: dict[int, dict] = {}

    def ask(i: int) -> None:
        clients[i][0].send(_request(states[i]))
        replies[i] = unpack(clients[i][0].recv(timeout=10))
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(5):  # each connection gets its own answer
        np.testing.assert_allclose(replies[i]["actions"], [states[i][:7]], rtol=1e-6)
        assert "infer_ms" in replies[i]["server_timing"] and "infer_ms" in replies[i]["policy_timing"]
    assert sum(srv.batches) == 5 and max(srv.batches) == 3 and len(srv.batches) < 5  # batched, up to --max-batch
    for conn, _ in clients:
        conn.close()


def test_a_bad_request_gets_openpis_error_frame_and_close_1011(server):
    _, port = server
    for frame, message in ((pack({"instruction": "x"}), "field 'state' missing"),
                           (b"\xc1garbage", "not a msgpack frame"),
                           (_request(-np.ones(8)), "RuntimeError: negative gripper opening")):
        conn, _ = _client(port)
        conn.send(frame)
        text = conn.recv(timeout=10)
        assert isinstance(text, str) and message in text
        with pytest.raises(ConnectionClosed) as closed:
            conn.recv(timeout=10)
        assert closed.value.rcvd.code == 1011


def test_the_server_refuses_a_wrong_key_and_answers_healthz(server):
    import urllib.error
    import urllib.request

    _, port = server
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read() == b"OK\n"
    with pytest.raises(Exception) as refused:
        _client(port, key="nope")
    assert "401" in str(refused.value)


@pytest.mark.parametrize("argv, message", [
    (["--policy", "scripted", "--io", "libero"], "reads simulator state, which the libero profile does not carry"),
    (["--policy", "random", "--port", "70000"], "--port 70000: a port number in 0..65535"),
    (["--policy", "random", "--io", "rlds"], "unknown --io profile 'rlds'"),
    (["--policy", "nowhere"], "unknown policy 'nowhere'"),
    (["--policy", "random", "--max-batch", "0"], "--max-batch 0"),
])
def test_serve_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
