"""``--backend ray``: the same records as the local pool, a killed actor, resume, and the one-line
errors. The tests share one local Ray, started here with 2 CPUs and shut down after."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import ray

from simeval.cli import main
from simeval.harness import RunRequest, execute
from simeval.observers import RoundHook
from simeval.pools.ray import RayPool
from simeval.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = str(ROOT / "results" / "reference")
SCRIPTED_SUITE = """\
name: tiny
tasks: [PushButton, PutCubeOnPlate]
robots: [Panda, Piper]
perturbations: [nominal, "layout:2", "robot_init:3"]
episodes: 1
max_steps: 90
seed: 3
image_size: 32
"""
REFERENCE_SUITE = """\
name: refsuite
tasks: [PutCubeOnPlate]
robots: [Panda]
perturbations: [nominal, "camera:2", "light:3"]
episodes: 2
max_steps: 120
seed: 5
"""


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _suite(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def _run(suite: Path, out: Path, policy: str = "scripted", backend: str = "local", hook=None, workers: int = 2,
         **kwargs) -> dict:
    request = RunRequest(suite=load_suite(str(suite)), policy=policy, out=out, workers=workers, video="none",
                         backend=backend, progress=False, **kwargs)
    return execute(request, observers=[RoundHook(hook)] if hook else ())


def _records(out: Path) -> dict[str, tuple]:
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in records}) == len(records)  # never counted twice
    return {r["id"]: (r["success"], r["steps"], r["error"], json.dumps(r["params"], sort_keys=True)) for r in records}


@pytest.mark.parametrize("policy, text, n", [("scripted", SCRIPTED_SUITE, 12), (REFERENCE, REFERENCE_SUITE, 6)])
def test_ray_gives_the_local_records(policy, text, n, tmp_path):
    suite = _suite(tmp_path, text)
    _run(suite, tmp_path / "local", policy)
    results = _run(suite, tmp_path / "ray", policy, backend="ray")
    assert _records(tmp_path / "ray") == _records(tmp_path / "local") and len(_records(tmp_path / "local")) == n
    assert results["timing"]["worker_restarts"] == 0


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_a_killed_actor_is_replaced_and_nothing_is_lost_or_counted_twice(how, tmp_path):
    suite = _suite(tmp_path, SCRIPTED_SUITE)
    _run(suite, tmp_path / "local")
    killed = []

    def kill(pool: RayPool, rounds: int) -> None:
        if rounds == 20:
            if how == "ray.kill":
                ray.kill(pool.actor(0))
            else:
                os.kill(pool.pid(0), signal.SIGKILL)
            killed.append(rounds)

    results = _run(suite, tmp_path / "ray", backend="ray", hook=kill)
    assert killed and results["timing"]["worker_restarts"] == 1
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")


def test_more_workers_than_the_cluster_has_cpus_run_on_those_that_start(tmp_path):
    """The third actor finds no CPU (Ray has 2): its slots take no episode, and the run ends."""
    suite = _suite(tmp_path, SCRIPTED_SUITE)
    _run(suite, tmp_path / "local")
    _run(suite, tmp_path / "ray", backend="ray", workers=3)
    assert _records(tmp_path / "ray") == _records(tmp_path / "local")


def test_actors_that_never_start_stop_the_run_in_one_line(tmp_path, capsys, monkeypatch):
    """Every CPU taken (held by another job): the actors wait START_S, then exit code 2."""
    import simeval.pools.ray as ray_pool

    monkeypatch.setattr(ray_pool, "CHECK_S", 0.5)
    monkeypatch.setattr(ray_pool, "START_S", 2.0)
    taken = ray.util.placement_group([{"CPU": 2}])
    ray.get(taken.ready(), timeout=60)
    try:
        suite = _suite(tmp_path, SCRIPTED_SUITE)
        assert main(["run", "--policy", "scripted", "--suite", str(suite), "--backend", "ray", "--workers", "2",
                     "--out", str(tmp_path / "out"), "--video", "none"]) == 2
    finally:
        ray.util.remove_placement_group(taken)
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("simeval: error: the Ray started for this run: no env actor has been up for 2 s") \
        and "--resume" in err, err


def test_an_interrupted_ray_run_resumes(tmp_path):
    suite = _suite(tmp_path, SCRIPTED_SUITE)
    _run(suite, tmp_path / "local")

    out = tmp_path / "ray"

    def interrupt(pool, rounds):  # Ctrl-C once a few episodes have finished
        log = out / "episodes.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(suite, out, backend="ray", hook=interrupt)
    partial = _records(out)  # episodes.jsonl is valid after the interrupt
    assert 0 < len(partial) < 12
    results = _run(suite, out, backend="ray", resume=True)
    assert _records(out) == _records(tmp_path / "local")
    assert results["timing"]["episodes_run"] == 12 - len(partial)


def test_the_cli_runs_on_ray(tmp_path, capsys):
    suite = _suite(tmp_path, SCRIPTED_SUITE)
    assert main(["run", "--policy", "scripted", "--suite", str(suite), "--backend", "ray", "--workers", "2",
                 "--out", str(tmp_path / "out"), "--video", "none"]) == 0
    assert "12/12 succeeded" in capsys.readouterr().out


def test_without_the_extra_ray_is_a_one_line_error_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    suite = _suite(tmp_path, SCRIPTED_SUITE)
    assert main(["run", "--policy", "scripted", "--suite", str(suite), "--backend", "ray",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == 'simeval: error: --backend ray needs Ray, an optional extra: pip install -e ".[ray]"\n'
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"),
    ("ray://127.0.0.1:1", "cannot reach the Ray cluster at ray://127.0.0.1:1: Connection refused"),
    ("nowhere", "--ray-address 'nowhere': give auto, HOST:PORT"),
])
def test_an_unreachable_cluster_is_one_line_and_exit_2(address, message, tmp_path, capsys):
    suite = _suite(tmp_path, SCRIPTED_SUITE)
    for command in ("run", "collect"):
        extra = ["--policy", "scripted"] if command == "run" else []
        assert main([command, *extra, "--suite", str(suite), "--backend", "ray", "--ray-address", address,
                     "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not (tmp_path / "out").exists()


def test_collect_on_ray_records_the_same_demonstrations(tmp_path):
    import numpy as np

    suite = _suite(tmp_path, SCRIPTED_SUITE)
    for backend in ("local", "ray"):
        assert main(["collect", "--suite", str(suite), "--robot", "Panda", "--tasks", "PushButton", "--workers", "2",
                     "--out", str(tmp_path / backend), *(["--backend", "ray"] if backend == "ray" else [])]) == 0
    local, remote = sorted((tmp_path / "local" / "demos").glob("*.npz")), sorted((tmp_path / "ray" / "demos").glob("*.npz"))
    assert [p.name for p in local] == [p.name for p in remote] and len(local) == 3
    for a, b in zip(local, remote):
        with np.load(a) as x, np.load(b) as y:
            for key in ("agentview", "wrist", "state", "action", "executed"):
                np.testing.assert_array_equal(x[key], y[key])


def test_ray_is_imported_only_for_the_ray_backend(tmp_path):
    import subprocess

    suite = _suite(tmp_path, SCRIPTED_SUITE)
    code = ("import sys; from simeval.cli import main; "
            f"assert main(['run', '--policy', 'random', '--suite', {str(suite)!r}, '--workers', '1', '--video', "
            f"'none', '--out', {str(tmp_path / 'out')!r}]) == 0; assert 'ray' not in sys.modules, 'ray imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
