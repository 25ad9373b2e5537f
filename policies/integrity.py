"""Checkpoint files, read defensively: size-capped reads, JSON objects, SHA-256-verified weights.

Every checkpoint kind (VLA, adapter, capability vector, pruned model) records the SHA-256 of each
weight file in its JSON config when it is saved. Loading reads a file's bytes once, checks them
against the recorded hash and hands exactly those bytes to the parser, so a modified or corrupted
file is a one-line ``ValueError`` naming it, not silently different actions. A config without the
hash is refused too: an unrecorded file is not trusted.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

MAX_JSON_BYTES = 16 << 20  # configs and tokenizers are a few kB; this is generous, not a format limit
MAX_WEIGHTS_BYTES = 4 << 30  # the reference VLA is ~7 MB
HEX64 = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a huge field must not become a huge message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(err: BaseException) -> str:
    """The first line of an error's message (parsers' messages can span lines), shortened."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 1000 else text[:997] + "..."


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; one line naming ``path`` otherwise."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError(f"{path}: missing {what}") from None
    except (OSError, ValueError) as err:  # name too long, embedded NUL, permissions ...
        raise ValueError(f"{path}: cannot read {what} ({first_line(err)})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: {what} is not a regular file")
    if info.st_size > limit:
        raise ValueError(f"{path}: {what} is {info.st_size} bytes, more than the {limit} bytes allowed")
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise ValueError(f"{path}: cannot read {what} ({first_line(err)})") from None
    if len(data) > limit:  # grew since stat
        raise ValueError(f"{path}: {what} is more than the {limit} bytes allowed")
    return data


def read_text(path: Path, what: str, limit: int = MAX_JSON_BYTES) -> str:
    try:
        return read_bytes(path, what, limit).decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: {what} is not UTF-8 text ({first_line(err)})") from None


def read_json(path: Path, what: str = "checkpoint config") -> dict[str, Any]:
    """A JSON object from ``path``; one line naming the file if it is anything else."""
    text = read_text(path, what)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, huge integers, deep nesting
        raise ValueError(f"{path}: unreadable JSON ({first_line(err)})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {json_type(value)}")
    return value


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages about what a file holds."""
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def record(directory: Path, names: list[str]) -> dict[str, str]:
    """``{name: sha256}`` of files in ``directory``, for a config written at save time."""
    return {name: sha256((directory / name).read_bytes()) for name in sorted(names)}


def verified_bytes(path: Path, expected: Any, config: Path, field: str, what: str = "weights file") -> bytes:
    """The bytes of ``path`` if they hash to ``expected`` (the value of ``field`` in ``config``)."""
    if not isinstance(expected, str) or not HEX64.fullmatch(expected):
        raise ValueError(f"{config}: field {field} missing or not a SHA-256 hex string "
                         f"(saved before integrity checks, or edited): {path.name} cannot be verified")
    data = read_bytes(path, what, MAX_WEIGHTS_BYTES)
    if sha256(data) != expected:
        raise ValueError(f"{path}: SHA-256 does not match {config.name} {field} (modified or corrupted)")
    return data


@dataclass(frozen=True)
class Manifest:
    """The files of a checkpoint directory with their recorded hashes (``hashes`` as found in JSON)."""

    directory: Path
    hashes: Any
    config: Path  # the JSON file the hashes were read from, for messages
    field: str  # their field in it, e.g. "simeval.sha256"

    def check(self) -> None:
        """Fail early (before any expensive work) on a missing or malformed hash field."""
        if not isinstance(self.hashes, dict) or not self.hashes:
            raise ValueError(f"{self.config}: field {self.field} missing or not an object of file name -> "
                             f"SHA-256 (saved before integrity checks, or edited): its files cannot be verified")

    def read(self, name: Any, what: str = "weights file") -> bytes:
        """The verified bytes of file ``name`` of the directory (a plain file name recorded in the field)."""
        self.check()
        if not isinstance(name, str) or name not in self.hashes or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"{self.config}: field {self.field} records no file {short(name, 300)}: "
                             f"it is not a verified part of this checkpoint")
        return verified_bytes(self.directory / name, self.hashes[name], self.config, f"{self.field}[{name!r}]", what)


def parse(path: Path, what: str, parser: Callable[[], T]) -> T:
    """``parser()``, with any parser failure (Rust panics included) as one line naming ``path``."""
    try:
        return parser()
    except BaseException as err:  # noqa: BLE001 (pyo3's PanicException is a BaseException)
        if not isinstance(err, Exception) and type(err).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        raise ValueError(f"{path}: not a readable {what} ({first_line(err)})") from None


def load_safetensors(data: bytes, path: Path) -> dict[str, Any]:
    """Tensors from verified safetensors bytes; one line naming ``path`` if they do not parse."""
    from safetensors.torch import load

    return parse(path, "safetensors file", lambda: load(data))
