"""simeval's LIBERO path against LIBERO's loop written the obvious way: the same episodes, bit for bit.

The reference is ``scripts/libero_obvious_loop.py`` (openpi's LIBERO example: a plain
``OffScreenRenderEnv`` per task, ``seed(7)``, hard resets, every step rendered, episodes in order) in
LIBERO's side environment; simeval runs the same episodes through ``harness.execute`` with two workers
(rendering on demand, soft resets, the placement draws replayed per slot). Both drive the probe policy
(``envs/libero/probe_policy.py``), whose actions are an exact function of the frames it reads, so any
frame, state or step that differs shows. Per episode: every simulator state (after set_init_state, each
wait step, each policy step), the sha1 of both images at every decision, success and the step count.

Episodes: libero_spatial tasks 0 and 4, init states 0 and 1, on two workers; libero_goal task 0, init
states 0-2 (fixtures placed by the RNG, so the draw replay is checked), on one worker, whose two slots
share one process's ``np.random`` and whose first slot runs init 2 in the env init 0 ran in. Spatial task 4 (the bowl in the
cabinet's drawer) has a ``close`` predicate: every hard reset's ``_load_model`` appends its Open/Close
sampler to ``object_property_initializers``, so each reset draws more and the fixtures land elsewhere;
a soft reset must do the same. Policy steps are capped (``MAX_STEPS``) to keep it to a few minutes on
2 cores: the obvious loop renders both cameras every step.
Skipped where the side environment is not built (``simeval setup libero``); nothing is built here.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from simeval.libero import sideenv

REPO = Path(__file__).resolve().parents[1]
LOOP = REPO / "scripts" / "libero_obvious_loop.py"
MAX_STEPS = 20  # policy steps per episode (openpi's are 220 / 300): 4 decisions, 30 env steps
# benchmark, task indices, init states 0..N-1, simeval's workers. One worker's two slots share its side
# process (and LIBERO's global np.random): libero_goal's init state 2 runs in the env init 0 ran in
CASES = (("libero_spatial", (0, 4), 2, 2), ("libero_goal", (0,), 3, 1))
LOOP_TIMEOUT_S = 600


_WHY = sideenv.incomplete(sideenv.SideEnv.at(sideenv.default_home()))  # builds nothing
pytestmark = [pytest.mark.libero,
              pytest.mark.skipif(_WHY is not None, reason=f"LIBERO's side environment is not built here ({_WHY}); "
                                                          f"build it with simeval setup libero")]


def _sha1(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


def _name(benchmark: str, task: str, init: int) -> str:
    return f"{benchmark}__{task}__{init:02d}"  # the worker's trace file names


def _obvious(benchmark: str, tasks: tuple[int, ...], episodes: int, out: Path) -> dict:
    """The obvious loop in the side environment: its JSON, and its states under ``out/states``."""
    side = sideenv.ensure_side_env(announce=None, progress=False)
    cmd = [str(side.python), str(LOOP), "--benchmark", benchmark, "--tasks", ",".join(map(str, tasks)),
           "--episodes", str(episodes), "--max-steps", str(MAX_STEPS), "--states", str(out / "states"),
           "--out", str(out / "loop.json")]
    done = subprocess.run(cmd, env=side.environ(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=LOOP_TIMEOUT_S)
    assert done.returncode == 0, f"the obvious loop failed:\n{done.stderr[-4000:]}"
    return json.loads((out / "loop.json").read_text())


def _simeval(benchmark: str, tasks: tuple[int, ...], episodes: int, workers: int, out: Path) -> dict:
    """The same episodes through simeval; per episode name: success, steps, decision hashes."""
    from policies.libero_probe import LiberoProbePolicy
    from simeval import worlds
    from simeval.harness import RunRequest, execute
    from simeval.records import read_records
    from simeval.runner import Observer
    from simeval.suites import parse_suite

    names = worlds.task_names(benchmark)
    suite = parse_suite({"name": f"fidelity_{benchmark}", "world": benchmark, "tasks": [names[t] for t in tasks],
                         "robots": ["Panda"], "perturbations": ["nominal"], "episodes": episodes, "seed": 7,
                         "image_size": 256, "max_steps": MAX_STEPS})

    class Hashes(Observer):
        def __init__(self) -> None:
            self.by_id: dict[str, dict[str, list[str]]] = {}

        def started(self, slot, episode) -> None:  # a re-run episode starts its list afresh
            self.by_id[episode.spec.id] = {"agentview": [], "wrist": []}

        def acted(self, slot, episode, images, chunk) -> None:
            for cam in ("agentview", "wrist"):
                self.by_id[episode.spec.id][cam].append(_sha1(images[cam]))

    hashes = Hashes()
    request = RunRequest(suite=suite, policy="libero_probe", out=out / "run", workers=workers, video="none",
                         progress=False, force=True)
    execute(request, policy=LiberoProbePolicy(), observers=[hashes])
    specs = {s.id: s for s in suite.episode_specs()}
    rows = {}
    for record in read_records(out / "run" / "episodes.jsonl"):
        spec = specs[record["id"]]
        assert record["error"] is None, f"{record['id']}: {record['error']}"
        rows[_name(benchmark, spec.task, spec.index)] = {"success": record["success"], "steps": record["steps"],
                                                         **hashes.by_id[record["id"]]}
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Both paths on every case: {benchmark: (the obvious loop's JSON, simeval's rows, the two state dirs)}."""
    root = tmp_path_factory.mktemp("libero_fidelity")
    dirs = {b: (root / b / "obvious", root / b / "simeval") for b, _, _, _ in CASES}
    for obvious, ours in dirs.values():
        obvious.mkdir(parents=True)
        (ours / "trace").mkdir(parents=True)
    out = {}
    with ThreadPoolExecutor(len(CASES)) as threads:  # the plain loops run beside simeval's (CPU, not timing)
        loops = {b: threads.submit(_obvious, b, t, n, dirs[b][0]) for b, t, n, _ in CASES}
        for benchmark, tasks, episodes, workers in CASES:
            with pytest.MonkeyPatch.context() as patch:  # set before the pool starts: its workers inherit it
                patch.setenv("SIMEVAL_LIBERO_TRACE", str(dirs[benchmark][1] / "trace"))
                ours = _simeval(benchmark, tasks, episodes, workers, dirs[benchmark][1])
            out[benchmark] = [ours, dirs[benchmark][0] / "states", dirs[benchmark][1] / "trace"]
        for benchmark, future in loops.items():
            out[benchmark] = (future.result(), *out[benchmark])
    return out


@pytest.mark.parametrize("benchmark", [b for b, _, _, _ in CASES])
def test_same_episodes(runs, benchmark):
    loop, ours, _, _ = runs[benchmark]
    assert sorted(e["name"] for e in loop["episodes"]) == sorted(ours)
    assert len(ours) == sum(len(t) * n for b, t, n, _ in CASES if b == benchmark)


@pytest.mark.parametrize("benchmark", [b for b, _, _, _ in CASES])
def test_states_identical(runs, benchmark):
    """Every flattened simulator state, from set_init_state to the last step, bit for bit."""
    loop, _, obvious_dir, trace_dir = runs[benchmark]
    for episode in loop["episodes"]:
        name = episode["name"]
        theirs = np.load(obvious_dir / f"{name}.npy")
        assert (trace_dir / f"{name}.npy").exists(), f"{name}: simeval's worker left no trace"
        mine = np.load(trace_dir / f"{name}.npy")
        assert theirs.shape == mine.shape, f"{name}: {len(theirs)} states in the obvious loop, {len(mine)} in simeval"
        assert len(theirs) == 1 + 10 + episode["steps"]
        if not np.array_equal(theirs, mine):
            step = int(np.flatnonzero((theirs != mine).any(axis=1))[0])
            pytest.fail(f"{name}: states differ from step {step} (0 = after set_init_state, 1-10 wait steps), "
                        f"max |diff| {np.abs(theirs - mine).max():.3g}")


@pytest.mark.parametrize("benchmark", [b for b, _, _, _ in CASES])
def test_decision_frames_identical(runs, benchmark):
    """The images the policy read at every decision: the same bytes, the same number of decisions."""
    loop, ours, _, _ = runs[benchmark]
    for episode in loop["episodes"]:
        name = episode["name"]
        assert len(episode["agentview_sha1"]) == -(-MAX_STEPS // 5) or episode["success"]
        for cam in ("agentview", "wrist"):
            assert ours[name][cam] == episode[f"{cam}_sha1"], f"{name}: the {cam} frames the policy read differ"


@pytest.mark.parametrize("benchmark", [b for b, _, _, _ in CASES])
def test_outcomes_identical(runs, benchmark):
    loop, ours, _, _ = runs[benchmark]
    for episode in loop["episodes"]:
        name = episode["name"]
        assert (ours[name]["success"], ours[name]["steps"]) == (episode["success"], episode["steps"]), name
