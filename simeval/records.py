"""Episode records on disk: ``episodes.jsonl``, one JSON object per finished episode.

Records are appended one line at a time as episodes end, so a process killed mid-write leaves at
most one torn line, and only at the end of the file: that line is dropped with a warning. Any
other line that is not a record (:data:`simeval.schemas.RECORD`), and a second record of one
episode id, is damage simeval did not cause, and is an error naming the file and the line(s), so that
a resumed run, a check, a comparison or a report never builds on a log it cannot trust.

It is also the one place that turns variants into (dimension, level) cells and names them
(:func:`variant_cell`, :func:`record_cell`, :func:`cell_key`, :func:`split_cell_key`), for the
runner, the metrics and the reports alike. Importing it does not import MuJoCo: the variant parser
(``envs.perturbations``, whose package imports MuJoCo) is imported on the first variant parsed, and
records written by simeval carry their cell, so metrics and reports of them never parse one.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from simeval.files import write_text, writing
from simeval.schemas import RECORD, FileFormatError, NotJSON, first_error, key_path, parse_json


class RecordError(FileFormatError):
    """``episodes.jsonl`` holds a line that is not an episode record: one line, exit code 2."""


def variant_cell(variant: str) -> tuple[str, int]:
    """(dimension, level) of a variant: ``nominal``/0, the single dimension, or ``a+b`` and the max level;
    a bare dimension (``camera``: a LIBERO-Plus variant whose name gives no level) is that dimension at 0."""
    from envs.perturbations import DIMENSIONS, parse_variant  # here, not at the top: see the module docstring

    if variant in DIMENSIONS:
        return variant, 0
    levels = parse_variant(variant).levels
    if not levels:
        return "nominal", 0
    return "+".join(d for d, _ in levels), max(lvl for _, lvl in levels)


def cell_key(dimension: str, level: int) -> str:
    """The name of a (dimension, level) cell: ``nominal``, ``camera:3``, or a dimension without a level
    (``camera``, from a LIBERO-Plus variant that gives none)."""
    if level:
        return f"{dimension}:{level}"
    return dimension or "nominal"


def split_cell_key(key: str) -> tuple[str, int]:
    """The (dimension, level) a :func:`cell_key` names: ``camera:3`` -> ("camera", 3), ``nominal`` -> ("nominal", 0),
    ``camera`` -> ("camera", 0)."""
    dimension, sep, level = key.rpartition(":")
    if not sep:
        if key != "nominal" and not _is_dimension(key):
            raise ValueError(f"not a cell name: {key!r}; expected 'nominal', 'dimension:level' or a dimension "
                             f"such as 'camera'")
        return key, 0
    try:
        return dimension, int(level)
    except ValueError:
        raise ValueError(f"not a cell name: {key!r}; its level {level!r} is not an integer") from None


def _is_dimension(name: str) -> bool:
    """A dimension, or dimensions composed with ``+`` (``camera+light``)."""
    from simeval.metrics import DIMENSIONS  # the canonical list without MuJoCo (metrics imports this module)

    return bool(name) and all(part in DIMENSIONS for part in name.split("+"))


def record_cell(record: dict) -> tuple[str, int]:
    """(dimension, level) of a record: its own fields, or, in records of older runs that lack them,
    the :func:`variant_cell` of its ``perturbation`` (a one-line ``ValueError`` naming the record if that
    is not a variant)."""
    if "dimension" in record and "level" in record:
        return str(record["dimension"]), int(record["level"])
    try:
        return variant_cell(record.get("perturbation") or "nominal")
    except ValueError as err:
        raise ValueError(f"episode record {_short_id(record)}: {err}") from None


def _short_id(record: dict) -> str:
    """A record's ``id`` for messages (``?`` when it has none)."""
    return repr(record.get("id", "?"))[:120]


@dataclass
class EpisodeRecord:
    """One finished episode, as one line of ``episodes.jsonl`` (field order is the file's)."""

    id: str
    task: str
    robot: str
    family: str
    perturbation: str
    dimension: str
    level: int
    params: dict[str, Any]
    seed: int
    success: bool
    steps: int
    error: str | None = None
    video: str | None = None
    instruction: str = ""
    wall_s: float = 0.0
    named_object: str | None = None
    first_moved: str | None = None
    grounded: bool | None = None
    demo: str | None = None  # ``simeval collect`` only: the episode's demonstration file

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the record (``demo`` only where there is one)."""
        out = asdict(self)
        if out["demo"] is None:
            del out["demo"]
        return out


def _check(record: object, where: str) -> dict:
    """``record`` when it is an episode record (:data:`simeval.schemas.RECORD`), else a :class:`RecordError`."""
    found = first_error(record, RECORD)
    if found is not None:
        raise RecordError(f"{where}: {key_path(found[0])}: {found[1]}")
    return record  # type: ignore[return-value]


def read_records(path: Path, warn: Callable[[str], None] | None = None) -> list[dict]:
    """Every record in ``path`` (none if it does not exist); a torn last line is dropped with a warning.

    Each line must be a record (:data:`simeval.schemas.RECORD`) and each id must appear once: a
    second copy of an episode would count it twice (or, kept silently, hide the first), so it is an
    error naming both lines, for every reader (``--resume``, ``check``, ``compare``, the report)."""
    if not path.is_file():
        return []
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RecordError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        whole = data.rfind(b"\n") + 1  # a torn last line may end inside a character
        if data.endswith(b"\n") or err.start < whole:
            line = data.count(b"\n", 0, err.start) + 1
            raise RecordError(f"{path}:{line}: not UTF-8 text (byte {err.start}); it was not written by simeval") from None
        text = data[:whole].decode("utf-8") + "\ufffd"  # that line: torn, dropped below
    lines = text.split("\n")
    torn_tail = not text.endswith("\n") and bool(lines[-1].strip())
    records, lines_of = [], {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = _check(parse_json(line, where), where)
        except FileFormatError as err:
            if torn_tail and number == len(lines) and isinstance(err, NotJSON):
                (warn or _warn)(f"{path}: dropped a torn last line {number} (a write cut short by an interrupted run)")
                break
            message = str(err).removeprefix(f"{where}: ")
            raise RecordError(f"{where}: corrupt episode record ({message}); fix or remove that line") from None
        first = lines_of.setdefault(record["id"], number)
        if first != number:
            raise RecordError(f"{path}: episode {_short_id(record)} is recorded twice, at lines {first} and {number}; "
                              f"remove one of them")
        records.append(record)
    return records


def write_records(path: Path, records: list[dict]) -> None:
    """Rewrite ``path`` with ``records``, atomically (a crash leaves the old file or the new one)."""
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def append_record(path: Path) -> Callable[[dict], None]:
    """A sink that appends each record to a JSONL file as one write, flushed at once. A write the
    file system refuses part-way (a full disk) is cut back to the last whole record before the error
    goes on, so the log ends on a record boundary and ``--resume`` runs that episode again."""
    def sink(record: dict) -> None:
        line = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        with writing(path):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # unbuffered: nothing of the
            try:  # line is left in a buffer to be written after the cut
                end = os.lseek(fd, 0, os.SEEK_END)
                try:
                    while line:
                        line = line[os.write(fd, line):]
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, end)
                    raise
            finally:
                os.close(fd)

    return sink


def _warn(message: str) -> None:
    print(f"simeval: warning: {message}", file=sys.stderr)
