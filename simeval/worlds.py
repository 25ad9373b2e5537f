"""The worlds a suite's episodes run in, and what the harness needs to know of each without loading it.

- ``simeval``: the project's own MuJoCo worlds (``envs``): its tasks on the Panda and the PiPER,
  with the seven perturbation dimensions.
- ``libero_spatial``, ``libero_object``, ``libero_goal``, ``libero_10``, ``libero_90``: LIBERO's
  own benchmarks, run in LIBERO's side environment (``simeval.libero``): their tasks, LIBERO's
  Panda, the nominal scenes, 50 fixed init states per task, and openpi's protocol (the init state is
  the episode's index; every episode of a task runs under the suite's seed, as openpi seeds each
  task's env once).

Suites, the runner and the CLI ask here; nothing else branches on the world.
"""

from __future__ import annotations

import hashlib

from simeval.libero import catalog

SIMEVAL = "simeval"


def worlds() -> list[str]:
    return [SIMEVAL, *catalog.benchmarks()]


def check_world(world: str) -> str:
    if world not in worlds():
        raise ValueError(f"unknown world {world!r}; valid worlds: {', '.join(worlds())}")
    return world


def is_libero(world: str) -> bool:
    return world != SIMEVAL and catalog.is_benchmark(world)


def task_names(world: str) -> list[str]:
    if world == SIMEVAL:
        from envs.tasks.library import TASKS

        return [t.name for t in TASKS]
    return [t.name for t in catalog.tasks(world)]


def robots(world: str) -> list[str]:
    if world == SIMEVAL:
        from envs.robots import ROBOTS

        return list(ROBOTS)
    return [catalog.ROBOT]


def max_steps(world: str, task: str) -> int:
    if world == SIMEVAL:
        from envs.tasks.library import get_task

        return get_task(task).max_steps
    return catalog.max_steps(world)


def max_episodes(world: str, task: str) -> int | None:
    """The most episodes a cell of ``task`` can have (LIBERO: its init states); None: no limit."""
    return None if world == SIMEVAL else catalog.get_task(world, task).init_states


def family(world: str, task: str) -> str:
    """The family a task's results are grouped in: simeval's task families, or the LIBERO benchmark."""
    if world == SIMEVAL:
        from envs.tasks.library import get_task

        return get_task(task).family
    return world


def named_object(world: str, task: str) -> str | None:
    """The one object among several that the instruction names (simeval's grounding rate), if any."""
    if world == SIMEVAL:
        from envs.tasks.library import get_task

        return get_task(task).named_object
    return None


def episode_seed(world: str, suite_seed: int, episode_id: str) -> int:
    """A stable 31-bit seed per episode id (identical on every machine); in a LIBERO world the suite's
    seed itself, as openpi seeds each task's env once and its init states fix the rest."""
    if world != SIMEVAL:
        return suite_seed
    digest = hashlib.sha256(f"{suite_seed}/{episode_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def resolve_tasks(world: str, given: list[str]) -> list[str]:
    """``--tasks`` entries as task names: a name, or (in a LIBERO world, whose names are long) the
    task's index in its benchmark; a one-line ``ValueError`` naming the valid ones otherwise."""
    names = task_names(world)
    out = []
    for entry in given:
        if entry in names:
            out.append(entry)
        elif world != SIMEVAL and entry.isdigit() and int(entry) < len(names):
            out.append(names[int(entry)])
        else:
            hint = f"a task name or an index 0..{len(names) - 1}" if world != SIMEVAL else ", ".join(names)
            raise ValueError(f"unknown task {entry[:120]}; valid tasks of world {world}: {hint}")
    return out
