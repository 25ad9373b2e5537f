"""``simeval setup libero``: asset verification and resumable extraction on a tiny fake manifest and fake asset
wheels (offline, no venv built), the CLI's one-line errors, and, where the real side env is built, --check."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from simeval.cli import main
from simeval.libero import plus_setup, sideenv
from simeval.libero.sideenv import (TMP_SUFFIX, WHEEL_PREFIX, LiberoSetupError, SideEnv, git_blob_sha1,
                                    install_assets, read_manifest, verify_assets)

FILES = {"serving_region.xml": b"<mujoco/>\n", "scenes/a/a.xml": b"<mujoco model='a'/>\n" * 50,
         "scenes/a/tex.png": bytes(range(256)) * 40, "textures/b.png": b"\x89PNG" + b"\x00" * 3000,
         "stable_hope_objects/c/c.obj": b"v 0 0 0\n" * 300}


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A manifest of FILES and two wheels holding them (plus one file the manifest does not list)."""
    manifest = tmp_path / "manifest.tsv"
    lines = ["# fake LIBERO assets: path\tgit_blob_sha1\tbytes\tused_by_4_suites\tin_git_mirror"]
    lines += [f"{p}\t{git_blob_sha1(d)}\t{len(d)}\t1\t1" for p, d in FILES.items()]
    manifest.write_text("\n".join(lines) + "\n")
    wheels = [tmp_path / "w1.whl", tmp_path / "w2.whl"]
    for i, wheel in enumerate(wheels):
        with zipfile.ZipFile(wheel, "w") as z:
            for j, (p, d) in enumerate(FILES.items()):
                if j % 2 == i:
                    z.writestr(WHEEL_PREFIX + p, d)
            z.writestr(WHEEL_PREFIX + f"extra_{i}.txt", b"not LIBERO's")
    return manifest, wheels


def test_manifest_of_the_repo_reads():
    rows = read_manifest()
    assert len(rows) == 585 and sum(r.size for r in rows) > 400e6
    assert all(len(r.sha1) == 40 for r in rows)


def test_install_then_verify(tmp_path, fake):
    manifest, wheels = fake
    dest = tmp_path / "assets"
    assert install_assets(dest, wheels, manifest, progress=False) == len(FILES)
    verify_assets(dest, manifest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == sorted(FILES)


def _one_line_error(dest: Path, manifest: Path, quick: bool = False) -> str:
    with pytest.raises(LiberoSetupError) as err:
        verify_assets(dest, manifest, quick=quick)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_corrupt_file_is_named(tmp_path, fake):
    manifest, wheels = fake
    dest = tmp_path / "assets"
    install_assets(dest, wheels, manifest, progress=False)
    data = bytearray(FILES["scenes/a/tex.png"])
    data[7] ^= 1  # same size: only the hash can tell
    (dest / "scenes/a/tex.png").write_bytes(bytes(data))
    verify_assets(dest, manifest, quick=True)
    msg = _one_line_error(dest, manifest)
    assert "scenes/a/tex.png" in msg and git_blob_sha1(FILES["scenes/a/tex.png"]) in msg
    assert git_blob_sha1(bytes(data)) in msg and "other" not in msg


def test_missing_files_are_named_and_counted(tmp_path, fake):
    manifest, wheels = fake
    dest = tmp_path / "assets"
    install_assets(dest, wheels, manifest, progress=False)
    (dest / "serving_region.xml").unlink()
    (dest / "textures/b.png").unlink()
    msg = _one_line_error(dest, manifest, quick=True)
    assert "serving_region.xml: missing" in msg and "(and 1 other file bad)" in msg


def test_interrupted_extraction_is_completed_without_rewriting_good_files(tmp_path, fake):
    manifest, wheels = fake
    dest = tmp_path / "assets"
    install_assets(dest, wheels, manifest, progress=False)
    old = time.time() - 3600
    for p in FILES:
        os.utime(dest / p, (old, old))
    # what a kill leaves: a temp file half written, and (say, from an older tool) a truncated target
    (dest / "scenes/a/a.xml").write_bytes(FILES["scenes/a/a.xml"][:100])
    (dest / "textures/b.png").unlink()
    (dest / ("textures/b.png" + TMP_SUFFIX)).write_bytes(FILES["textures/b.png"][:10])
    assert install_assets(dest, wheels, manifest, progress=False) == 2
    verify_assets(dest, manifest)
    assert not list(dest.rglob("*" + TMP_SUFFIX))
    for p in FILES:
        rewritten = p in ("scenes/a/a.xml", "textures/b.png")
        assert (os.stat(dest / p).st_mtime > old + 60) == rewritten, p


def test_corrupt_wheel_member_is_refused(tmp_path, fake):
    manifest, wheels = fake
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as z:
        for p, d in FILES.items():
            z.writestr(WHEEL_PREFIX + p, d if p != "serving_region.xml" else b"<mujoco>\n")
    with pytest.raises(LiberoSetupError, match="bad.whl: serving_region.xml is corrupt"):
        install_assets(tmp_path / "assets", [bad], manifest, progress=False)
    assert not (tmp_path / "assets/serving_region.xml").exists()


def test_link_keeps_the_users_folder(tmp_path, fake):
    manifest, wheels = fake
    user = tmp_path / "LIBERO_assets"
    install_assets(user, wheels, manifest, progress=False)
    before = {p: p.stat().st_mtime_ns for p in user.rglob("*")}
    dest = tmp_path / "site/libero/libero/assets"
    install_assets(dest, wheels, manifest, progress=False)  # our copy, replaced by the link
    sideenv.link_assets(dest, sideenv.check_assets_dir(user, manifest))
    assert dest.is_symlink() and dest.resolve() == user.resolve()
    verify_assets(dest, manifest)
    install_assets(dest, wheels, manifest, progress=False)  # back to a copy: only the link goes
    assert not dest.is_symlink() and {p: p.stat().st_mtime_ns for p in user.rglob("*")} == before


def test_environ(tmp_path, monkeypatch):
    env = SideEnv.at(tmp_path)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/with/robosuite-1.5.2")
    e = env.environ()
    assert e["LIBERO_CONFIG_PATH"] == str(tmp_path / "config") and "PYTHONPATH" not in e
    assert e["MUJOCO_GL"] == e["PYOPENGL_PLATFORM"] == "egl" and e["PATH"].startswith(str(env.python.parent))
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert env.environ()["MUJOCO_GL"] == "osmesa" == env.environ()["PYOPENGL_PLATFORM"]


def test_complete_set_up_returns_at_once(tmp_path, fake):
    """A stamp matching the requirements and manifest, and every asset at its size: nothing is built."""
    manifest, wheels = fake
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("hf-libero==0.1.4\n")
    env = SideEnv.at(tmp_path / "home")
    env.python.parent.mkdir(parents=True)
    env.python.touch()
    install_assets(env.assets, wheels, manifest, progress=False)
    sideenv.write_config(env)
    (env.site_packages / "liberoplus" / "liberoplus").mkdir(parents=True)  # LIBERO-Plus's config and assets link
    plus_setup.write_config(env)
    stamp = {"requirements_sha256": sideenv._sha256(requirements), "manifest_sha256": sideenv._sha256(manifest)}
    (env.home / sideenv.STAMP).write_text(json.dumps(stamp))
    said: list[str] = []
    start = time.perf_counter()
    got = sideenv.ensure_side_env(env.home, announce=said.append, requirements=requirements, manifest=manifest)
    assert got == env and not said and time.perf_counter() - start < 0.5
    assert "libero/libero/bddl_files" in (env.config_dir / "config.yaml").read_text()


@pytest.mark.parametrize("kind", ["nonexistent", "file", "incomplete"])
def test_cli_bad_assets_dir_is_one_line_exit_2(tmp_path, capsys, kind):
    bad = tmp_path / "not_assets"
    if kind == "file":
        bad.write_text("x")
    elif kind == "incomplete":
        (bad / "scenes").mkdir(parents=True)
    home = tmp_path / "home"
    assert main(["setup", "libero", "--home", str(home), "--assets", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("simeval: error: ") and str(bad) in err
    if kind == "incomplete":
        assert "missing" in err and "(and 584 other files bad)" in err
    else:
        assert "not a directory" in err
    assert not (home / "venv").exists()  # nothing was built


def test_cli_check_without_set_up(tmp_path, capsys):
    assert main(["setup", "libero", "--home", str(tmp_path / "none"), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "simeval setup libero" in err


@pytest.mark.skipif(not (sideenv.default_home() / sideenv.STAMP).exists(),
                    reason="LIBERO's side environment is not built here (simeval setup libero)")
def test_check_real_side_env(capsys):
    assert main(["setup", "libero", "--check"]) == 0
    out = capsys.readouterr().out
    assert "585 assets verified" in out and "on disk" in out


def test_missing_magickwand_is_one_line_naming_the_package(tmp_path, capsys, monkeypatch):
    """LIBERO-Plus's image noise loads ImageMagick's MagickWand: without it the set-up stops before building
    anything, with one line naming the Debian package to install."""
    monkeypatch.delenv("MAGICK_HOME", raising=False)
    monkeypatch.setattr(plus_setup.ctypes.util, "find_library", lambda name: None)
    home = tmp_path / "home"
    assert main(["setup", "libero", "--home", str(home)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "apt-get install -y libmagickwand-6.q16-6" in err
    assert not (home / "venv").exists()
