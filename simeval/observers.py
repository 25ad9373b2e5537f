"""The rollout observers every run has: the records log, the progress bar, and a per-round hook.

The video recorder lives in ``simeval.video`` and ``simeval collect``'s demonstration recorder in
``simeval.collect``; all of them are :class:`simeval.runner.Observer`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from simeval.pools import Pool
from simeval.records import EpisodeRecord, append_record
from simeval.runner import Active, Observer


class RecordLog(Observer):
    """Appends each finished episode to ``episodes.jsonl`` at once (a resumed run starts from it).
    Put it last: the observers before it may fill fields of the record."""

    def __init__(self, path: Path) -> None:
        self.path, self._append = path, append_record(path)

    def finished(self, slot: int, episode: Active, record: EpisodeRecord) -> None:
        self._append(record.to_dict())


# tqdm's default, with the rate always in episodes/s (tqdm would turn a slow one into s/ep)
BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


class Progress(Observer):
    """A tqdm bar on stderr: episodes done of the suite, success so far, episodes/s and the ETA
    (from this session's recent rate; episodes finished by an earlier session count as done)."""

    def __init__(self, total: int, done: int = 0, successes: int = 0, disable: bool | None = None) -> None:
        self.successes, self.done = successes, done
        self.bar = tqdm(total=total, initial=done, unit="ep", desc="episodes", file=sys.stderr, smoothing=0.05,
                        mininterval=0.5, dynamic_ncols=True, disable=disable, bar_format=BAR)
        self._postfix()

    def _postfix(self) -> None:
        share = self.successes / self.done if self.done else 0.0
        self.bar.set_postfix_str(f"success {share:.0%}", refresh=False)

    def finished(self, slot: int, episode: Active, record: EpisodeRecord) -> None:
        self.done, self.successes = self.done + 1, self.successes + int(record.success)
        self._postfix()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class RoundHook(Observer):
    """Calls ``hook(pool, round)`` before each round is sent (tests kill workers or interrupt runs)."""

    def __init__(self, hook: Callable[[Pool, int], None]) -> None:
        self.hook = hook

    def round(self, pool: Pool, index: int) -> None:
        self.hook(pool, index)
