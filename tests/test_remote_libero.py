"""``simeval run --io libero`` against an openpi-style server: the requests look like openpi's
LIBERO client's, and LIBERO's delta-pose actions move simeval's robots by LIBERO's units."""

from __future__ import annotations

import json

import numpy as np
from servers import fake_server

from policies.loader import load_policy
from simeval.harness import RunRequest, execute
from simeval.suites import load_suite

SUITE = """\
name: libero
tasks: [PushButton]
robots: [Panda, Piper]
perturbations: [nominal]
episodes: 1
max_steps: 15
seed: 2
"""


def test_libero_requests_and_actions_in_a_real_run(tmp_path):
    """The server answers 'forward 1 cm per step, gripper open' in LIBERO's units (0.2 of 5 cm);
    the robots' tcp must advance about 1 cm per step in x, as the next requests' states show."""
    chunk = np.tile(np.array([0.2, 0, 0, 0, 0, 0, -1], np.float32), (10, 1))
    suite = tmp_path / "libero.yaml"
    suite.write_text(SUITE)
    with fake_server(lambda request: {"actions": chunk}, metadata={}) as server:  # openpi's metadata: {}
        url = f"ws://127.0.0.1:{server['port']}"
        policy = load_policy(url, {"io": "libero", "replan": 5})
        execute(RunRequest(suite=load_suite(str(suite)), policy=url, out=tmp_path / "out", workers=1,
                           video="none", policy_options=policy.config.described()), policy)
        policy.close()
    requests = server["requests"]
    assert len(requests) == 6  # 15 steps, 5 per request, 2 episodes
    for request in requests:
        assert set(request) == {"observation/image", "observation/wrist_image", "observation/state", "prompt"}
        for key in ("observation/image", "observation/wrist_image"):
            assert request[key].shape == (224, 224, 3) and request[key].dtype == np.uint8
            assert request[key].std() > 5  # a rendered scene, not a blank frame
        assert request["observation/state"].shape == (8,) and request["prompt"] == "push the button"
        state = request["observation/state"]
        assert abs(np.linalg.norm(state[3:6]) - np.pi) < 0.8  # near gripper-down: about a half turn
        assert state[6] > 0.03 and state[7] < -0.03  # fingers open, +q and -q
    assert sorted(len(c) for c in server["connections"]) == [3, 3]  # one slot (connection) per episode
    for episode in server["connections"]:
        steps = np.diff([r["observation/state"][0] for r in episode]) / 5
        assert np.all((steps > 0.006) & (steps < 0.012)), steps  # about 1 cm per step forward
    records = [json.loads(line) for line in (tmp_path / "out" / "episodes.jsonl").read_text().splitlines()]
    assert [r["steps"] for r in records] == [15, 15] and all(r["error"] is None for r in records)
    meta = json.loads((tmp_path / "out" / "run.json").read_text())
    assert meta["policy_options"] == {"io": "libero", "replan": 5}
