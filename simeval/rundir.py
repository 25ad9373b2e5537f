"""Run directories that simeval owns, and the one way it ever removes anything: ``--force``.

A directory becomes simeval's when simeval creates it (or finds it empty) and writes its marker,
``simeval-run.json``, which names the files a run writes. ``--force`` clears only a directory that
holds that marker, and only the files the marker and the run's own records list (``videos/*.mp4``,
``demos/*.npz``), each checked to lie inside the directory. Anything else is left in place, and a
directory without the marker (someone's work, ``.``, a home directory) is refused with one line.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from simeval import schemas
from simeval.files import write_text
from simeval.records import RecordError, read_records
from simeval.schemas import RUN_META, FileFormatError, read_json

MARKER = "simeval-run.json"
MARKER_FORMAT = "simeval.run-directory/1"
RUN_FILES = ("run.json", "episodes.jsonl", "results.json", "summary.md", "report.html", "dataset.json")
RUN_FILES += tuple(f"{name}.tmp" for name in (MARKER, *RUN_FILES))  # simeval.files.write_text's, if cut short
LISTED = re.compile(r"(videos/[A-Za-z0-9_.+-]+\.mp4|demos/[A-Za-z0-9_.+-]+\.npz)")  # what records may name


class RunDirError(ValueError):
    """A run directory simeval may not use or clear: reported as one line, exit code 2."""


def check_out_path(out: Path, flag: str = "--out") -> None:
    """``out`` can be a directory: it is one, or it and its missing parents can be created."""
    if "\0" in str(out):
        raise RunDirError(f"{flag} {str(out)!r} holds a NUL byte, which no path can; give a directory")
    for path in (out, *out.parents):
        if path.exists() or path.is_symlink():
            if not path.exists():  # a link to nothing: simeval writes through no link it did not make
                what = "is" if path == out else f"lies under {path}, which is"
                raise RunDirError(f"{flag} {out} {what} a symbolic link to {path.readlink()}, which does not exist; "
                                  f"give a directory (new, empty or a simeval run)")
            if not path.is_dir():
                what = "names an existing file" if path == out else f"lies under {path}, which is a file"
                raise RunDirError(f"{flag} {out} {what}; give a directory (new, empty or a simeval run)")
            return


def is_run_dir(out: Path) -> bool:
    """Whether ``out`` holds simeval's marker."""
    try:
        marker = read_json(out / MARKER)
    except FileFormatError:
        return False
    return schemas.first_error(marker, schemas.MARKER) is None and marker["format"] == MARKER_FORMAT


def claim(out: Path) -> None:
    """Create ``out`` if needed and mark it as simeval's."""
    out.mkdir(parents=True, exist_ok=True)
    marker = {"format": MARKER_FORMAT, "note": "written by simeval; --force removes only the files listed here "
                                               "and the videos/demos its episodes.jsonl names", "files": RUN_FILES}
    write_text(out / MARKER, json.dumps(marker, indent=1) + "\n")


def _inside(out: Path, relative: str) -> Path | None:
    """``out/relative`` when it is a file (or link) whose parent directory really lies in ``out``."""
    path = out / relative
    try:
        parent, root = path.parent.resolve(strict=True), out.resolve(strict=True)
    except OSError:
        return None
    if parent != root and root not in parent.parents:
        return None
    return path if path.is_symlink() or path.is_file() else None


def listed_files(out: Path) -> list[str]:
    """The files of the run in ``out`` that simeval wrote: the marker's names and what its records name."""
    names = list(RUN_FILES)
    try:
        records = read_records(out / "episodes.jsonl", warn=lambda _: None)
    except RecordError:
        records = []  # a damaged log still lists nothing outside the patterns below
    for record in records:
        for key in ("video", "demo"):
            value = record.get(key)
            if isinstance(value, str) and LISTED.fullmatch(value) and ".." not in value:
                names.append(value)
    return names


def clear_run(out: Path, flag: str = "--out") -> list[str]:
    """Remove the run in ``out`` that simeval wrote (``--force``); the names of what was left in place."""
    if not out.exists():
        return []
    check_out_path(out, flag)
    if not is_run_dir(out):
        if not any(out.iterdir()):
            return []
        raise RunDirError(f"{flag} {out} is not a simeval run directory (no {MARKER}); --force removes only "
                          f"simeval's own runs, so choose another {flag} or empty it yourself")
    for name in listed_files(out):
        path = _inside(out, name)
        if path is not None:
            path.unlink()
    for folder in ("videos", "demos"):
        if (out / folder).is_dir() and not (out / folder).is_symlink() and not any((out / folder).iterdir()):
            (out / folder).rmdir()
    (out / MARKER).unlink()
    kept = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    if kept:
        shown = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
        print(f"simeval: warning: {flag} {out}: kept {len(kept)} file(s) simeval did not write: {shown}",
              file=sys.stderr)
    return kept


def read_meta(out: Path) -> dict | None:
    """The run's ``run.json`` (what was asked), or None when there is none; one line if it is damaged."""
    path = out / "run.json"
    if not path.is_file():
        return None
    try:
        return schemas.check(read_json(path), RUN_META, str(path))
    except FileFormatError as err:
        raise RunDirError(f"unreadable run description: {err}; it was not written by simeval") from None

