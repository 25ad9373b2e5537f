"""Writing files when the file system says no: a read-only mount, a full disk, a name too long.

Every command's output goes through :func:`write_text` / :func:`write_bytes` (whole files, written
beside the target and renamed over it, so a full disk leaves the old file or none, never half of
one: a half ``run.json`` or ``simeval-run.json`` would make simeval refuse its own run directory)
or inside :func:`writing` (appends, third-party writers). The CLI's ``main`` turns the
``OSError`` that results into one line naming the path and the reason (:func:`describe`), exit 2.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

# Errors of the storage rather than of the path: a write() that fails with one carries no file name.
STORAGE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Within it, a storage error without a file name (``write()`` on a full disk) names ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno in STORAGE:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from None
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: ``path``'s old content or the new, nothing between.
    A symbolic link is written through (its target replaced, as a plain write would), not replaced."""
    real = Path(os.path.realpath(path))
    tmp = real.with_name(real.name + ".tmp")
    with writing(path):
        try:
            tmp.write_bytes(data)
            os.replace(tmp, real)
        except BaseException as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # ours: written just now
            if isinstance(err, OSError) and err.filename == str(tmp):  # the user asked for path, not path.tmp
                raise OSError(err.errno, err.strerror, str(path)) from None
            raise


def write_text(path: Path, text: str) -> None:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    write_bytes(path, text.encode("utf-8"))


def describe(err: OSError) -> str | None:
    """One line naming the path and the reason; None for an error that names no path (not the file
    system's: left to surface as it is)."""
    if not isinstance(err.filename, (str, bytes, os.PathLike)):
        return None
    path = os.fsdecode(err.filename)
    reason = err.strerror or os.strerror(err.errno or 0)
    if err.errno == errno.ENAMETOOLONG:
        longest = max((len(os.fsencode(part)) for part in Path(path).parts), default=0)
        return f"cannot use {path}: {reason} (its longest name has {longest} bytes; most file systems allow 255, " \
               f"and 4096 for the whole path)"
    verb = "write" if err.errno in STORAGE else "use"
    return f"cannot {verb} {path}: {reason}"
