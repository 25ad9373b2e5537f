"""The real third-party client: ``openpi-client`` 0.1.2 from PyPI drives ``simeval serve``.

openpi-client pins numpy < 2 and imports ``typing_extensions`` without declaring it, so it lives in
its own virtual environment (``.venv-openpi`` at the repository root, made here on first use) and
runs as a separate process (``tests/openpi_driver.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from envs.env import TabletopEnv
from policies.base import Batch, EpisodeStart
from policies.loader import load_policy
from policies.remote.profiles import LiberoProfile, SlotObservation
from simeval.serve import served

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = str(ROOT / "results" / "reference")
VENV = ROOT / ".venv-openpi"
CLIENT = ["openpi-client==0.1.2", "typing_extensions"]


@pytest.fixture(scope="module")
def openpi_python() -> str:
    """The side venv's python, with openpi-client installed (made once, then reused)."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import openpi_client.websocket_client_policy"]
    if not python.exists() or subprocess.run(probe, capture_output=True).returncode != 0:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", *CLIENT], capture_output=True, text=True)
        assert install.returncode == 0, f"installing {CLIENT} into {VENV} failed:\n{install.stderr[-2000:]}"
    assert subprocess.run(probe, capture_output=True).returncode == 0
    return str(python)


@pytest.fixture(scope="module")
def observations(tmp_path_factory) -> dict:
    """Six observations from two real episodes of PutCubeOnPlate (camera:2 perturbs the second)."""
    rows: dict[str, list] = {k: [] for k in ("state", "instruction", "agentview", "wrist", "episode")}
    rng = np.random.default_rng(0)
    for episode, (seed, variant) in enumerate([(3, "nominal"), (4, "camera:2")]):
        env = TabletopEnv("PutCubeOnPlate", "Panda", image_size=128)
        obs, _ = env.reset(seed=seed, options={"perturbation": variant})
        for step in range(3):
            for key in ("state", "instruction", "agentview", "wrist"):
                rows[key].append(obs[key])
            start = (f"openpi/{episode}", "PutCubeOnPlate", "Panda", str(seed)) if step == 0 else ("", "", "", "0")
            rows["episode"].append(start)
            for _ in range(4):
                obs, *_ = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
        env.close()
    return {k: np.array(v) for k, v in rows.items()}


def _drive(python: str, port: int, io: str, data: dict, tmp_path: Path) -> dict:
    source, target = tmp_path / f"{io}-in.npz", tmp_path / f"{io}-out.npz"
    np.savez(source, **data)
    done = subprocess.run([python, str(ROOT / "tests" / "openpi_driver.py"), str(port), io, str(source), str(target)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = dict(np.load(target))
    assert out["numpy"].item().startswith("1."), "the client must run on its own numpy < 2"
    return out


def _local(policy, observations: list[SlotObservation]) -> np.ndarray:
    actions = []
    for obs in observations:
        if obs.start is not None:
            policy.reset([0], [obs.start])
        batch = Batch(slots=[0], state=obs.state[None], instruction=[obs.instruction],
                      agentview=obs.images["agentview"][None], wrist=obs.images["wrist"][None])
        actions.append(policy.act(batch)[0])
    return np.stack(actions)


def _slot_observations(data: dict) -> list[SlotObservation]:
    out = []
    for i in range(len(data["state"])):
        episode_id, task, robot, seed = data["episode"][i]
        start = EpisodeStart(str(episode_id), str(task), str(robot), int(seed)) if episode_id else None
        out.append(SlotObservation(data["state"][i], str(data["instruction"][i]),
                                   {"agentview": data["agentview"][i], "wrist": data["wrist"][i]}, None, start))
    return out


def test_openpi_client_gets_the_local_policys_actions(openpi_python, observations, tmp_path):
    with served(REFERENCE) as (port, _):
        out = _drive(openpi_python, port, "simeval", observations, tmp_path)
    metadata = json.loads(out["metadata"].item())
    assert metadata["observation_spec"] == {"cameras": ["agentview", "wrist"], "image_size": 128, "privileged": False}
    assert metadata["chunk"] == 4 and metadata["io"] == "simeval"
    expected = _local(load_policy(REFERENCE), _slot_observations(observations))
    assert out["actions"].shape == expected.shape == (6, 4, 7)
    np.testing.assert_array_equal(out["actions"], expected)
    assert np.abs(np.diff(expected, axis=0)).max() > 1e-3  # different observations, different actions


def test_openpi_client_as_libero_example_drives_a_libero_profile_server(openpi_python, observations, tmp_path):
    profile, wire = LiberoProfile(), []
    data = dict(observations)
    for cam in ("agentview", "wrist"):  # LIBERO's cameras render 256 px
        data[cam] = np.stack([np.asarray(Image.fromarray(image).resize((256, 256))) for image in data[cam]])
    slot_obs = _slot_observations(data)
    for obs in slot_obs:
        wire.append(profile.encode(obs))
    data["libero_state"] = np.stack([w["observation/state"] for w in wire])
    with served(REFERENCE, "--io", "libero") as (port, _):
        out = _drive(openpi_python, port, "libero", data, tmp_path)
    assert json.loads(out["metadata"].item())["io"] == "libero"
    # the images our profile sends are byte for byte what openpi's LIBERO client sends
    ours = np.stack([np.stack([w["observation/image"], w["observation/wrist_image"]]) for w in wire])
    np.testing.assert_array_equal(out["sent"], ours)
    # and the server answered what the policy answers on the decoded request, in LIBERO's units
    policy = load_policy(REFERENCE)
    decoded = [profile.decode(w, policy.observation_spec) for w in wire]
    for obs, original in zip(decoded, slot_obs):
        obs.start = original.start
    expected = np.stack([profile.actions_to_wire(chunk) for chunk in _local(policy, decoded)])
    np.testing.assert_allclose(out["actions"], expected, rtol=1e-6, atol=1e-7)
