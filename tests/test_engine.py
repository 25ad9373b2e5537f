"""The rollout engine: chunks inside the workers, rendering only what a policy reads, video frames
only for possible examples, the progress bar and the thread policy. The outcomes must equal the
per-step path's (``PoolConfig.per_step``), frame for frame where a policy reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from envs.env import TabletopEnv
from envs.perturbations.base import shape_rng
from envs.perturbations.noise import KINDS
from policies.base import Batch, EpisodeStart, ObservationSpec, Policy
from simeval.cli import main
from simeval.harness import RunRequest, pool_config, run_episodes
from simeval.runner import Active, Observer
from simeval.suites import load_suite
from simeval.video import VideoPolicy

SUITE = """\
name: engine
tasks: [PutCubeOnPlate, PushButton]
robots: [Panda]
perturbations: [nominal, "noise:4", "camera:3"]
episodes: 2
max_steps: 23
seed: 5
image_size: 32
"""


class PixelChunks(Policy):
    """Chunks of 5 actions drawn from a generator seeded by the pixels it is shown: any change in a
    rendered image at a decision point changes every later action, and so the outcome."""

    observation_spec = ObservationSpec(cameras=("agentview", "wrist"))

    def reset(self, slots, starts) -> None:
        pass

    def act(self, batch: Batch) -> np.ndarray:
        out = []
        for i in range(len(batch)):
            seed = [int(batch.agentview[i].astype(np.int64).sum()), int(batch.wrist[i].astype(np.int64).sum()),
                    int(1e6 * abs(float(batch.state[i, 0])))]
            out.append(np.random.default_rng(seed).uniform(-1, 1, (5, 7)))
        return np.stack(out)


def _gaussian_noise_seed() -> int:
    return next(s for s in range(100) if KINDS[int(shape_rng(s, "noise").integers(len(KINDS)))] == "gaussian_noise")


def test_a_decision_frame_does_not_depend_on_the_frames_skipped_before_it():
    seed = _gaussian_noise_seed()
    stepped, chunked = TabletopEnv("PutCubeOnPlate", "Panda", image_size=32), TabletopEnv("PutCubeOnPlate", "Panda", image_size=32)
    try:
        actions = np.random.default_rng(0).uniform(-1, 1, (8, 7))
        first, _ = stepped.reset(seed=seed, options={"perturbation": "noise:4"})
        again, _ = chunked.reset(seed=seed, options={"perturbation": "noise:4"})
        assert np.array_equal(first["agentview"], again["agentview"])
        for k, action in enumerate(actions, start=1):
            obs = stepped.step(action)[0]  # renders every step
            chunked.advance(action)  # renders only every fourth step
            if k % 4 == 0:
                seen = chunked.observe()
                assert np.array_equal(obs["agentview"], seen["agentview"]) and np.array_equal(obs["wrist"], seen["wrist"])
                assert np.array_equal(obs["state"], seen["state"])
        assert not np.array_equal(obs["agentview"], first["agentview"])
        assert np.array_equal(chunked.frame("agentview"), chunked.frame("agentview"))  # once per step
    finally:
        stepped.close()
        chunked.close()


def _run(tmp_path: Path, name: str, policy: Policy, per_step: bool, video: str = "none", observers=()) -> list[dict]:
    suite_file = tmp_path / "engine.yaml"
    suite_file.write_text(SUITE)
    request = RunRequest(suite=load_suite(str(suite_file)), policy="test", out=tmp_path / name, workers=2,
                         video=video, per_step=per_step, progress=False)
    return run_episodes(request, policy, observers, VideoPolicy(video, request.suite.to_dict())).records


def test_chunks_in_the_workers_give_the_per_step_outcomes(tmp_path):
    chunks = _run(tmp_path, "chunks", PixelChunks(), per_step=False)
    steps = _run(tmp_path, "steps", PixelChunks(), per_step=True)
    fields = ("id", "success", "steps", "error", "params", "first_moved")
    assert [{k: r[k] for k in fields} for r in chunks] == [{k: r[k] for k in fields} for r in steps]
    assert len(chunks) == 12 and all(r["error"] is None for r in chunks)
    assert all(r["steps"] <= 23 for r in chunks)
    assert any(r["steps"] == 23 for r in chunks)  # the limit stops a chunk in its middle (23 = 4 x 5 + 3)


class Frames(Observer):
    """Which episodes recorded frames, and how many."""

    def __init__(self) -> None:
        self.frames: dict[str, int | None] = {}

    def finished(self, slot: int, episode: Active, record) -> None:
        self.frames[record.id] = None if episode.frames is None else len(episode.frames)


class HalfScripted(Policy):
    """The scripted experts on even seeds, standing still on odd ones: both outcomes in every cell."""

    observation_spec = ObservationSpec(cameras=(), privileged=True)

    def __init__(self) -> None:
        from policies.scripted import ScriptedPolicy

        self.expert, self.idle = ScriptedPolicy(), set()

    def reset(self, slots, starts) -> None:
        self.expert.reset(slots, starts)
        for slot, start in zip(slots, starts):
            (self.idle.add if start.seed % 2 else self.idle.discard)(slot)

    def act(self, batch: Batch) -> np.ndarray:
        actions = self.expert.act(batch)
        actions[[i for i, s in enumerate(batch.slots) if s in self.idle]] = 0.0
        return actions


def test_only_episodes_that_can_become_examples_record_frames(tmp_path):
    suite_file = tmp_path / "many.yaml"
    suite_file.write_text(SUITE.replace("episodes: 2", "episodes: 10").replace("[PutCubeOnPlate, PushButton]",
                                                                              "[PushButton]"))
    # one slot: episodes start in index order, each after the one before has ended
    request = RunRequest(suite=load_suite(str(suite_file)), policy="scripted", out=tmp_path / "run", workers=1,
                         slots_per_worker=1, video="examples", progress=False)
    seen = Frames()
    records = run_episodes(request, HalfScripted(), [seen], VideoPolicy("examples", request.suite.to_dict())).records
    assert 0 < sum(r["success"] for r in records) < len(records)
    expected = set()
    for cell in {r["perturbation"] for r in records}:
        outcomes: set[bool] = set()
        for record in sorted((r for r in records if r["perturbation"] == cell), key=lambda r: r["id"]):
            if outcomes != {True, False}:  # the cell still lacks an example of an outcome
                expected.add(record["id"])
            outcomes.add(record["success"])
    recorded = {i for i, n in seen.frames.items() if n is not None}
    assert recorded == expected and len(recorded) < len(records)
    by_id = {r["id"]: r for r in records}
    assert all(seen.frames[i] == by_id[i]["steps"] + 1 for i in recorded)  # the reset frame and one per step
    videos = {r["id"] for r in records if r["video"]}
    assert len(videos) == 2 * len({r["perturbation"] for r in records}) and videos <= recorded
    assert all((tmp_path / "run" / by_id[i]["video"]).stat().st_size > 1000 for i in videos)


def test_the_pool_renders_what_the_policy_reads():
    suite = load_suite("smoke")
    request = RunRequest(suite=suite, policy="x", out=Path("unused"), workers=2)
    assert pool_config(ObservationSpec(cameras=(), privileged=True), request, 10, True).cameras == ()
    config = pool_config(ObservationSpec(cameras=("wrist",), image_size=64), request, 10, False)
    assert config.cameras == ("wrist",) and config.image_size == 64
    assert pool_config(ObservationSpec(), request, 10, False).image_size == suite.image_size
    old = pool_config(ObservationSpec(cameras=(), privileged=True), RunRequest(suite=suite, policy="x", out=Path("u"),
                                                                                workers=2, per_step=True), 10, True)
    assert old.per_step and old.cameras == ("agentview",)  # as before: the agentview for videos, every step
    with pytest.raises(ValueError, match="cameras"):
        ObservationSpec(cameras=("top",))
    with pytest.raises(ValueError, match="image_size"):
        ObservationSpec(image_size=8)


def test_the_reference_reads_both_cameras_at_its_training_render_size():
    root = Path(__file__).resolve().parents[1] / "results" / "reference"
    if not (root / "config.json").is_file():
        pytest.skip("no shipped reference")
    from policies.loader import load_policy

    spec = load_policy(str(root)).observation_spec
    assert spec == ObservationSpec(cameras=("agentview", "wrist"), image_size=128, privileged=False)
    assert json.loads((root / "config.json").read_text())["extra"]["render_size"] == 128


def test_the_progress_bar_shows_rate_and_eta(tmp_path, capsys):
    suite_file = tmp_path / "engine.yaml"
    suite_file.write_text(SUITE)
    assert main(["run", "--policy", "scripted", "--suite", str(suite_file), "--out", str(tmp_path / "run"),
                 "--workers", "2", "--video", "none"]) == 0
    err = capsys.readouterr().err
    assert "12/12" in err and "ep/s" in err and "success" in err
    assert "<" in err.split("12/12")[-1]  # tqdm's [elapsed<remaining]


def test_torch_threads_in_the_main_process_leave_the_workers_their_cores(monkeypatch):
    import torch

    from simeval.pools import threads as pool

    monkeypatch.setattr(pool.os, "cpu_count", lambda: 8)
    assert pool.main_threads(2) == 6 and pool.main_threads(8) == 1 and pool.main_threads(16) == 1
    before = torch.get_num_threads()
    with pool.policy_threads(16):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert pool.WORKER_THREADS["OMP_NUM_THREADS"] == "1" and pool.WORKER_THREADS["LP_NUM_THREADS"] == "1"


def test_the_reference_acts_the_same_on_an_observation_whatever_shares_its_batch():
    root = Path(__file__).resolve().parents[1] / "results" / "reference"
    if not (root / "config.json").is_file():
        pytest.skip("no shipped reference")
    from policies.loader import load_policy

    policy = load_policy(str(root))
    rng = np.random.default_rng(0)
    images = {cam: rng.integers(0, 255, (4, 128, 128, 3), dtype=np.uint8) for cam in ("agentview", "wrist")}
    state = rng.normal(size=(4, 8)).astype(np.float32)

    def act(rows: list[int]) -> np.ndarray:
        return policy.act(Batch(slots=rows, state=state[rows], instruction=["put the cube on the plate"] * len(rows),
                                agentview=images["agentview"][rows], wrist=images["wrist"][rows]))

    alone = act([0])[0]
    assert np.array_equal(alone, act([0, 1])[0]) and np.array_equal(alone, act([3, 2, 1, 0])[3])  # bit for bit
