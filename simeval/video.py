"""Episode videos (mp4 through imageio's bundled ffmpeg), written by a background thread.

The runner hands over finished episodes' frames and goes on stepping; the thread upsamples each
frame 2x (so the overlaid text reads), writes the instruction and the outcome on it and encodes.
Which episodes record frames and become videos is decided by :class:`VideoPolicy`: by default a
success and a failure per (dimension, level), chosen so that tasks and robots vary across cells;
``all`` keeps every episode, ``none`` none. :class:`VideoRecorder` is the rollout's observer.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Callable

import imageio.v2 as imageio
import numpy as np

from simeval.records import EpisodeRecord
from simeval.runner import Active, Observer
from simeval.text import draw_text, wrap

MODES = ("examples", "all", "none")
FPS = 20


def example_ranker(suite: dict) -> Callable[[dict], tuple[int, int]]:
    """How much a (dimension, level) cell prefers an episode as its example: lower is better.

    Cell k of the suite prefers the k-th (task, robot) pair, then the next ones in turn, so that the
    examples of different cells show different tasks and robots; the episode index breaks ties. Pairs
    are taken in the order the harness starts them (``simeval.harness.start_order``: by task and
    robot, then index), so a cell's later pairs rank worse than the earlier ones except its preferred
    one, and only the cell's first pair and its preferred pair render frames until they have shown
    both outcomes. A pure function of the suite and the record: the same examples whatever order
    episodes finish in. The suite's lookups are built once here, not per record."""
    from simeval.records import variant_cell

    pairs = {pair: i for i, pair in enumerate(sorted((t, r) for t in suite.get("tasks", [])
                                                     for r in suite.get("robots", [])))}
    cells = {cell: i for i, cell in enumerate(dict.fromkeys(variant_cell(v) for v in suite.get("perturbations", [])))}
    by_variant = {v: cells[variant_cell(v)] for v in suite.get("perturbations", [])}

    def rank(record: dict) -> tuple[int, int]:
        tail = str(record.get("id", "")).rpartition("/")[2]
        index = int(tail) if tail.isdigit() else int(record.get("seed", 0))
        pair = pairs.get((record.get("task"), record.get("robot")))
        cell = by_variant.get(str(record.get("perturbation", "nominal")))
        if pair is None or cell is None:
            return len(pairs), index
        return (pair - cell) % len(pairs), index

    return rank


def example_rank(suite: dict, record: dict) -> tuple[int, int]:
    """:func:`example_ranker` for one record."""
    return example_ranker(suite)(record)


class VideoPolicy:
    """Decides which episodes record frames (as they start) and become videos (as they end).

    In ``examples`` mode each (cell, outcome) keeps its best-ranked episode (:func:`example_ranker`).
    An episode records frames only when it could still become one: when its cell has, for some
    outcome, no finished example yet or only worse-ranked ones. The best-ranked episode of each
    (cell, outcome) therefore always records, whatever order episodes finish in, so the examples do
    not depend on the number of workers; the others render nothing but their observations. When it
    ends, an episode becomes a video if it beats the example kept so far (whose video stays on disk;
    the report shows the best-ranked ones). ``all`` records and keeps every episode, ``none`` none."""

    def __init__(self, mode: str, suite: dict | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown --video mode {mode!r}; valid modes: {', '.join(MODES)}")
        self.mode, self.rank = mode, example_ranker(suite or {})
        self._best: dict[tuple[str, bool], tuple[int, int]] = {}

    @property
    def records_frames(self) -> bool:
        return self.mode != "none"

    def cell_of(self, record: dict) -> str:
        """The (dimension, level) cell key of a record or an episode about to start."""
        from simeval.records import cell_key, variant_cell

        return cell_key(*variant_cell(str(record.get("perturbation", "nominal"))))

    def seen(self, record: dict) -> None:
        """Note an example that already exists (from a resumed run)."""
        key, rank = (self.cell_of(record), bool(record.get("success"))), self.rank(record)
        self._best[key] = min(rank, self._best.get(key, rank))

    def records(self, episode: dict) -> bool:
        """Whether an episode about to start (id, task, robot, perturbation) records its frames."""
        if self.mode != "examples":
            return self.mode == "all"
        cell, rank = self.cell_of(episode), self.rank(episode)
        return any((cell, outcome) not in self._best or rank < self._best[(cell, outcome)] for outcome in (True, False))

    def wants(self, record: dict) -> bool:
        """Whether a finished episode (that recorded its frames) becomes a video."""
        if self.mode != "examples":
            return self.mode == "all"
        key, rank = (self.cell_of(record), bool(record.get("success"))), self.rank(record)
        if key in self._best and self._best[key] <= rank:
            return False
        self._best[key] = rank
        return True


class VideoRecorder(Observer):
    """The rollout observer that records frames where :class:`VideoPolicy` says and writes videos
    (``videos/<cell>_<task>_<robot>_<index>_<outcome>.mp4`` under ``out_dir``)."""

    def __init__(self, policy: VideoPolicy, out_dir: Path, every_episode: bool = False) -> None:
        self.policy, self.out_dir, self.every_episode = policy, out_dir, every_episode
        self.writer = VideoWriter() if policy.records_frames else None

    def started(self, slot: int, episode: Active) -> None:
        spec = episode.spec
        like = {"id": spec.id, "task": spec.task, "robot": spec.robot, "perturbation": spec.variant, "seed": spec.seed}
        if self.writer is not None and (self.every_episode or self.policy.records(like)):
            episode.frames = []

    def finished(self, slot: int, episode: Active, record: EpisodeRecord) -> None:
        if self.writer is None or not episode.frames:
            return
        as_dict = record.to_dict()
        if not self.policy.wants(as_dict):
            return
        cell = self.policy.cell_of(as_dict)
        name = f"{cell.replace(':', '_').replace('+', '-')}_{record.task}_{record.robot}_" \
               f"{episode.spec.index:04d}_{'success' if record.success else 'failure'}.mp4"
        record.video = f"videos/{name}"
        self.writer.submit(self.out_dir / record.video, episode.frames, record.instruction, record.success)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
