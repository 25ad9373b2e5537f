"""LIBERO's benchmark suites as data: tasks, instructions, files and step limits, read without LIBERO.

``envs/libero/catalog.json`` was generated from hf-libero 0.1.4's benchmark module (task order,
language, BDDL and init-state file names, 50 init states per task). simeval's interpreter reads it
to expand suites and name tasks; only the side worker opens the files it names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CATALOG = Path(__file__).resolve().parents[2] / "envs" / "libero" / "catalog.json"
ROBOT = "Panda"  # LIBERO's one robot (robosuite's Panda on its mount)


@dataclass(frozen=True)
class LiberoTask:
    benchmark: str
    index: int  # the task's place in its benchmark's order
    name: str
    language: str
    problem_folder: str
    bddl_file: str
    init_states_file: str
    init_states: int

    def wire(self) -> dict:
        """What the side worker needs to find the task's files."""
        return {"name": self.name, "problem_folder": self.problem_folder, "bddl_file": self.bddl_file,
                "init_states_file": self.init_states_file}


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(CATALOG.read_text())


def benchmarks() -> list[str]:
    return list(_data()["benchmarks"])


def is_benchmark(name: str) -> bool:
    return name in _data()["benchmarks"]


def tasks(benchmark: str) -> list[LiberoTask]:
    entry = _data()["benchmarks"][benchmark]
    return [LiberoTask(benchmark, i, **t) for i, t in enumerate(entry["tasks"])]


@lru_cache(maxsize=None)
def _by_name(benchmark: str) -> dict[str, LiberoTask]:
    return {t.name: t for t in tasks(benchmark)}


def get_task(benchmark: str, name: str) -> LiberoTask:
    try:
        return _by_name(benchmark)[name]
    except KeyError:
        raise ValueError(f"no task {name!r} in LIBERO's {benchmark}") from None


def max_steps(benchmark: str) -> int:
    """openpi's step limit for the benchmark (policy steps, after the wait steps)."""
    return int(_data()["benchmarks"][benchmark]["max_steps"])


def wait_steps() -> int:
    return int(_data()["wait_steps"])
