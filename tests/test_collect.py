"""``simeval collect``: scripted demonstrations with noisy execution and clean labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simeval.cli import main

SUITE = """\
name: demo
tasks: [PushButton]
robots: [Panda, Piper]
perturbations: [nominal, "light:2"]
episodes: 1
seed: 1
image_size: 32
"""


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(SUITE)
    return path


def _demos(folder):
    return {p.name: np.load(p) for p in sorted((folder / "demos").glob("*.npz"))}


def test_collect_writes_one_file_per_successful_episode(suite_file, tmp_path):
    out = tmp_path / "data"
    assert main(["collect", "--suite", str(suite_file), "--out", str(out), "--noise", "0.1", "--workers", "2"]) == 0
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    demos = _demos(out)
    assert len(records) == 4 and len(demos) == sum(r["success"] for r in records) >= 3
    for record in records:
        if record["success"]:
            data = np.load(out / record["demo"])
            steps = record["steps"]
            assert data["agentview"].shape == (steps, 32, 32, 3) and data["wrist"].shape == (steps, 32, 32, 3)
            assert data["state"].shape == (steps, 8) and data["action"].shape == data["executed"].shape == (steps, 7)
            meta = json.loads(str(data["meta"]))
            assert meta["id"] == record["id"] and meta["instruction"] == "push the button"
            noise = data["executed"][:, :6] - data["action"][:, :6]
            assert 0.03 < np.abs(noise).mean() < 0.2  # noisy execution, clean labels
            assert np.array_equal(data["executed"][:, 6], data["action"][:, 6])  # the gripper is not noised
            assert data["agentview"].std() > 5 and not np.array_equal(data["agentview"][0], data["agentview"][-1])
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["demos"] == len(demos)


def test_collect_is_deterministic_and_noise_free_when_asked(suite_file, tmp_path):
    for name, workers in (("a", 1), ("b", 2)):
        main(["collect", "--suite", str(suite_file), "--out", str(tmp_path / name), "--noise", "0", "--workers",
              str(workers)])
    a, b = _demos(tmp_path / "a"), _demos(tmp_path / "b")
    assert a.keys() == b.keys() and a
    for key in a:
        assert np.array_equal(a[key]["action"], b[key]["action"]) and np.array_equal(a[key]["wrist"], b[key]["wrist"])
        assert np.array_equal(a[key]["action"], a[key]["executed"])


def test_collect_rotation_noise_off(suite_file, tmp_path):
    out = tmp_path / "data"
    assert main(["collect", "--suite", str(suite_file), "--out", str(out), "--noise", "0.2", "--rot-noise", "0",
                 "--workers", "1"]) == 0
    demos = _demos(out)
    assert demos
    for data in demos.values():
        noise = data["executed"][:, :6] - data["action"][:, :6]
        assert np.abs(noise[:, :3]).mean() > 0.05  # position noised ...
        assert np.array_equal(data["executed"][:, 3:6], np.clip(data["action"][:, 3:6], -1, 1))  # ... rotation not
    assert json.loads((out / "dataset.json").read_text())["rot_noise"] == 0.0


def test_collect_bad_noise(suite_file, tmp_path, capsys):
    assert main(["collect", "--suite", str(suite_file), "--out", str(tmp_path / "x"), "--noise", "3"]) == 2
    assert "argument --noise: expected a finite number in [0, 1], got '3'" in capsys.readouterr().err
    assert main(["collect", "--suite", str(suite_file), "--out", str(tmp_path / "y"), "--rot-noise", "-1"]) == 2
    assert "argument --rot-noise: expected a finite number in [0, 1], got '-1'" in capsys.readouterr().err
