"""Episode videos (mp4 through imageio's bundled ffmpeg), written by a background thread.

The runner hands over finished episodes' frames and goes on stepping; the thread upsamples each
frame 2x (so the overlaid text reads), writes the instruction and the outcome on it and encodes.
Which episodes become videos is decided by :class:`VideoPolicy`: by default one success and one
failure per (dimension, level), ``all`` keeps every episode, ``none`` none.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from simeval.text import draw_text, wrap

MODES = ("examples", "all", "none")
FPS = 20


class VideoPolicy:
    """Decides, as episodes finish, which ones are kept as videos."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown --video mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.mode = mode
        self._taken: set[tuple[str, bool]] = set()

    @property
    def records_frames(self) -> bool:
        return self.mode != "none"

    def seen(self, cell: str, success: bool) -> None:
        """Note an example that already exists (from a resumed run)."""
        self._taken.add((cell, success))

    def wants(self, cell: str, success: bool) -> bool:
        if self.mode == "all":
            return True
        if self.mode == "none" or (cell, success) in self._taken:
            return False
        self._taken.add((cell, success))
        return True


def annotate(frames: list[np.ndarray], instruction: str, success: bool) -> list[np.ndarray]:
    """Frames upsampled 2x with the instruction on top and the outcome at the bottom."""
    out = []
    verdict = "SUCCESS" if success else "FAILURE"
    colour = (120, 255, 120) if success else (255, 120, 120)
    for k, frame in enumerate(frames):
        big = np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)
        for i, line in enumerate(wrap(instruction, 40)[:4]):
            draw_text(big, line, (4, 4 + 12 * i))
        if k == len(frames) - 1:
            draw_text(big, verdict, (4, big.shape[0] - 16), color=colour)
        else:
            draw_text(big, f"step {k}", (4, big.shape[0] - 16))
        out.append(big)
    return out


def write_video(path: Path, frames: list[np.ndarray], instruction: str, success: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, annotate(frames, instruction, success), fps=FPS, macro_block_size=1)


class VideoWriter:
    """A background thread that encodes queued videos; ``close()`` waits for the queue to drain."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def submit(self, path: Path, frames: list[np.ndarray], instruction: str, success: bool) -> None:
        self._queue.put((path, frames, instruction, success))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                write_video(*item)
            except Exception as err:  # a failed video must not stop the run
                self.errors.append(f"{item[0]}: {err}")

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
