"""``simeval run``: determinism across worker counts, resume, a killed worker, faulty policies."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from policies import loader
from policies.base import Batch, ObservationSpec, Policy
from simeval.cli import main
from simeval.harness import RunRequest, execute
from simeval.observers import RoundHook
from simeval.suites import load_suite

SUITE = """\
name: tiny
tasks: [PushButton, PutCubeOnPlate]
robots: [Panda, Piper]
perturbations: [nominal, "layout:2", "robot_init:3"]
episodes: 1
max_steps: 90
seed: 3
image_size: 32
"""


@pytest.fixture
def suite_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SUITE)
    return path


def _run(suite_file: Path, out: Path, policy: str = "scripted", workers: int = 1, kill_hook=None, **kwargs) -> dict:
    request = RunRequest(suite=load_suite(str(suite_file)), policy=policy, out=out, workers=workers,
                         video=kwargs.pop("video", "none"), **kwargs)
    return execute(request, observers=[RoundHook(kill_hook)] if kill_hook else ())


def _outcomes(out: Path) -> dict[str, tuple]:
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in records}) == len(records)  # never counted twice
    return {r["id"]: (r["success"], r["steps"], r["error"], json.dumps(r["params"], sort_keys=True)) for r in records}


@pytest.mark.parametrize("policy", ["scripted", "random"])
def test_outcomes_do_not_depend_on_the_number_of_workers(policy, suite_file, tmp_path):
    _run(suite_file, tmp_path / "one", policy, workers=1)
    _run(suite_file, tmp_path / "two", policy, workers=2)
    one, two = _outcomes(tmp_path / "one"), _outcomes(tmp_path / "two")
    assert one == two and len(one) == 12
    if policy == "scripted":
        assert sum(o[0] for o in one.values()) >= 10  # 90 steps is enough for most of these


def test_outputs_of_a_run(suite_file, tmp_path):
    results = _run(suite_file, tmp_path / "run", video="examples")
    out = tmp_path / "run"
    assert {"run.json", "episodes.jsonl", "results.json", "summary.md", "report.html"} <= {p.name for p in out.iterdir()}
    assert results["overall"]["n"] == 12 and set(results["by_dimension"]) == {"nominal", "robot_init", "layout"}
    assert results["timing"]["env_steps"] > 0 and results["versions"]["mujoco"]
    videos = list((out / "videos").glob("*.mp4"))
    cells = {(r["dimension"], r["level"]) for r in map(json.loads, (out / "episodes.jsonl").read_text().splitlines())}
    assert len(videos) >= len(cells) and all(v.stat().st_size > 1000 for v in videos)


def test_resume_runs_only_what_is_missing(suite_file, tmp_path):
    reference = tmp_path / "reference"
    _run(suite_file, reference)

    class Interrupt:
        def __call__(self, pool, rounds):
            if rounds == 60:
                raise KeyboardInterrupt

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        _run(suite_file, out, kill_hook=Interrupt())
    partial = _outcomes(out)
    assert 0 < len(partial) < 12
    with pytest.raises(ValueError, match="--resume"):
        _run(suite_file, out)
    results = _run(suite_file, out, resume=True)
    assert _outcomes(out) == _outcomes(reference)
    assert results["timing"]["episodes_run"] == 12 - len(partial)


def test_a_killed_worker_is_replaced_and_its_episode_rerun(suite_file, tmp_path):
    reference = tmp_path / "reference"
    _run(suite_file, reference, workers=2)

    def kill(pool, rounds):
        if rounds == 25:
            os.kill(pool.pid(0), signal.SIGKILL)

    results = _run(suite_file, tmp_path / "killed", workers=2, kill_hook=kill)
    assert results["timing"]["worker_restarts"] == 1
    assert _outcomes(tmp_path / "killed") == _outcomes(reference)


class Faulty(Policy):
    """Raises for PushButton, returns NaN on Panda, a wrong shape otherwise -- after a few steps."""

    observation_spec = ObservationSpec(cameras=())

    def __init__(self, path=None) -> None:
        self.starts: dict[int, object] = {}
        self.calls: dict[int, int] = {}

    def reset(self, slots, starts) -> None:
        for slot, start in zip(slots, starts):
            self.starts[slot], self.calls[slot] = start, 0

    def act(self, batch: Batch) -> np.ndarray:
        out = np.zeros((len(batch), 7))
        for i, slot in enumerate(batch.slots):
            self.calls[slot] += 1
            start = self.starts[slot]
            if self.calls[slot] > 3 and start.task == "PushButton":
                raise RuntimeError("boom")
            if self.calls[slot] > 3 and start.robot == "Panda":
                out[i, 2] = np.nan
        if self.calls[batch.slots[0]] > 5:
            return np.zeros((len(batch), 5))
        return out


def test_faulty_policies_fail_episodes_not_the_run(suite_file, tmp_path, monkeypatch):
    checkpoint = tmp_path / "faulty"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"policy_type": "faulty"}))
    monkeypatch.setitem(loader.CHECKPOINT_ENTRY_POINTS, "faulty", f"{__name__}:Faulty")
    results = _run(suite_file, tmp_path / "run", policy=str(checkpoint))
    records = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 12 and results["counts"]["errors"] == 12
    reasons = {r["error"].split(" ")[0] + " " + r["error"].split(" ")[1] for r in records}
    assert any("raised" in r["error"] for r in records) and any("non-finite" in r["error"] for r in records)
    assert any("shape" in r["error"] for r in records), reasons
    assert all(not r["success"] for r in records)


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("text, words", [
    ("name: x\ntasks: [Juggle]\nrobots: all\nperturbations: [nominal]\n", [":2", "'tasks'", "unknown Juggle"]),
    ("name: x\ntasks: all\nrobots: all\nperturbations: [nominal]\nepisodez: 3\n", [":5", "'episodez'", "valid keys"]),
    ("name: x\ntasks: all\nrobots: all\nperturbations: [gravity:2]\n", [":4", "unknown perturbation dimension"]),
    ("name: x\ntasks: all\nrobots: all\nperturbations: [nominal]\nepisodes: -1\n", [":5", "'episodes'", "within 1.."]),
    ("name: x\ntasks: [a, b\nrobots: all\n", ["malformed YAML"]),
    ("tasks: all\n", ["missing key 'name'"]),
])
def test_bad_suite_files_name_file_line_and_key(text, words, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["run", "--policy", "scripted", "--suite", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and all(w in err for w in words), err


@pytest.mark.parametrize("argv, words", [
    (["--suite", "galaxy"], ["unknown suite 'galaxy'", "smoke", "perturb"]),
    (["--suite", "smoke", "--policy", "genius"], ["unknown policy 'genius'", "scripted", "random"]),
    (["--suite", "smoke", "--robot", "UR5"], ["unknown robot UR5"]),
    (["--suite", "smoke", "--tasks", "Juggle"], ["unknown task Juggle"]),
    (["--suite", "smoke", "--tasks", "PushButton"], ["none of these tasks is in suite 'smoke'"]),
    (["--suite", "smoke", "--video", "some"], ["--video", "examples"]),
    (["--suite", "smoke", "--episode", "smoke/nothing"], ["no episode 'smoke/nothing'"]),
])
def test_bad_run_arguments(argv, words, tmp_path, capsys):
    args = ["run", "--policy", "scripted", "--out", str(tmp_path / "o"), *argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(w in err for w in words), err


def test_a_directory_of_another_suite_is_refused(suite_file, tmp_path, capsys):
    out = tmp_path / "run"
    _run(suite_file, out)
    assert main(["run", "--policy", "random", "--suite", str(suite_file), "--out", str(out)]) == 2
    assert "another suite or policy" in capsys.readouterr().err
    assert main(["run", "--policy", "random", "--suite", str(suite_file), "--out", str(out), "--force",
                 "--video", "none", "--workers", "1"]) == 0


def test_a_single_episode_reruns_alone(suite_file, tmp_path):
    _run(suite_file, tmp_path / "all")
    everything = _outcomes(tmp_path / "all")
    episode = sorted(everything)[5]
    _run(suite_file, tmp_path / "one", episode=episode)
    assert _outcomes(tmp_path / "one") == {episode: everything[episode]}


def test_check_passes_on_itself_and_fails_a_worse_run(suite_file, tmp_path, capsys):
    _run(suite_file, tmp_path / "good")
    baseline = tmp_path / "baseline.json"
    assert main(["check", "--run", str(tmp_path / "good"), "--baseline", str(baseline), "--update"]) == 0
    assert main(["check", "--run", str(tmp_path / "good"), "--baseline", str(baseline)]) == 0
    _run(suite_file, tmp_path / "bad", policy="random")
    assert main(["check", "--run", str(tmp_path / "bad"), "--baseline", str(baseline)]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["check", "--run", str(tmp_path / "nowhere"), "--baseline", str(baseline)]) == 2
