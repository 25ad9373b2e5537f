"""The worlds a suite's episodes run in, and what the harness needs to know of each without loading it.

- ``simeval``: the project's own MuJoCo worlds (``envs``): its tasks on the Panda and the PiPER,
  with the seven perturbation dimensions.
- ``libero_spatial``, ``libero_object``, ``libero_goal``, ``libero_10``, ``libero_90``: LIBERO's
  own benchmarks, run in LIBERO's side environment (``simeval.libero``): their tasks, LIBERO's
  Panda, the nominal scenes, 50 fixed init states per task, and openpi's protocol (the init state is
  the episode's index; every episode of a task runs under the suite's seed, as openpi seeds each
  task's env once).
- ``libero_plus``: LIBERO-Plus's 10,030 perturbed variants of LIBERO's four suites
  (``simeval.libero.plus``), in the same side environment: a task is ``<benchmark>/<variant name>``,
  its step limit and results family are its benchmark's, its init states its base task's.

Suites, the runner and the CLI ask here; nothing else branches on the world (how a ``libero_plus``
suite picks its variants is ``simeval.suites_plus``). :func:`unrunnable` names the episodes this
machine cannot run, which a run skips.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

from simeval.libero import catalog, plus

if TYPE_CHECKING:
    from simeval.suites import EpisodeSpec

SIMEVAL = "simeval"
LIBERO_PLUS = plus.WORLD
PLUS_INIT_STATES = 50  # a variant with its own init-state file (layout): at most LIBERO's 50, the worker refuses more


def worlds() -> list[str]:
    return [SIMEVAL, *catalog.benchmarks(), LIBERO_PLUS]


def check_world(world: str) -> str:
    if world not in worlds():
        raise ValueError(f"unknown world {world!r}; valid worlds: {', '.join(worlds())}")
    return world


def is_libero(world: str) -> bool:
    """Whether the world runs in LIBERO's side environment (LIBERO's benchmarks and LIBERO-Plus)."""
    return world == LIBERO_PLUS or (world != SIMEVAL and catalog.is_benchmark(world))


def task_names(world: str) -> list[str]:
    if world == SIMEVAL:
        from envs.tasks.library import TASKS

        return [t.name for t in TASKS]
    if world == LIBERO_PLUS:
        return [v.task for v in plus.all_variants()]  # LIBERO-Plus's order, benchmark by benchmark
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
    if world == LIBERO_PLUS:
        return plus.max_steps(plus.get_variant(task).benchmark)
    return catalog.max_steps(world)


def max_episodes(world: str, task: str) -> int | None:
    """The most episodes a cell of ``task`` can have (LIBERO: its init states); None: no limit."""
    if world == SIMEVAL:
        return None
    if world == LIBERO_PLUS:
        return plus_init_states(task)
    return catalog.get_task(world, task).init_states


def plus_init_states(task: str) -> int:
    """A LIBERO-Plus variant's init states: its base task's (LIBERO-Plus loads them for every variant
    but the layouts, whose own files simeval does not know: at most :data:`PLUS_INIT_STATES`)."""
    variant = plus.get_variant(task)
    base = None if variant.category == "layout" else plus_base_task(variant)
    return base.init_states if base is not None else PLUS_INIT_STATES


def plus_base_task(variant: plus.PlusVariant) -> "catalog.LiberoTask | None":
    """The LIBERO task a variant perturbs: the one its name starts with (``<task>_view_...``,
    ``<task>_light_3`` ...); None where none does."""
    return _base_task(variant.benchmark, variant.name)


@lru_cache(maxsize=None)
def _base_task(benchmark: str, name: str) -> "catalog.LiberoTask | None":
    found = [t for t in catalog.tasks(benchmark) if name.startswith(t.name + "_")]
    return max(found, key=lambda t: len(t.name)) if found else None


def family(world: str, task: str) -> str:
    """The family a task's results are grouped in: simeval's task families, or the LIBERO benchmark."""
    if world == SIMEVAL:
        from envs.tasks.library import get_task

        return get_task(task).family
    if world == LIBERO_PLUS:
        return plus.get_variant(task).benchmark
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
    task's index in its benchmark (in ``libero_plus``: in ``simeval list tasks --world libero_plus``, or
    a benchmark's name for all its variants); a one-line ``ValueError`` naming the valid ones otherwise."""
    names = task_names(world)
    known = set(names)
    out = []
    for entry in given:
        if entry in known:
            out.append(entry)
        elif world == LIBERO_PLUS and entry in plus.BENCHMARKS:
            out += [v.task for v in plus.variants(entry)]
        elif world != SIMEVAL and entry.isdigit() and int(entry) < len(names):
            out.append(names[int(entry)])
        else:
            hint = ", ".join(names) if world == SIMEVAL else f"a task name or an index 0..{len(names) - 1}"
            if world == LIBERO_PLUS:
                hint = f"<benchmark>/<variant name>, a benchmark ({', '.join(plus.BENCHMARKS)}) or an index " \
                       f"0..{len(names) - 1}"
            raise ValueError(f"unknown task {entry[:120]}; valid tasks of world {world}: {hint}")
    return out


@dataclass(frozen=True)
class Skip:
    """Episodes a run leaves out because this machine cannot run them: never run, never recorded,
    never counted as failures; the run says so in one line and in results.json's ``skipped``."""

    ids: frozenset[str]
    by_dimension: dict[str, int]  # episodes per dimension, in canonical order
    reason: str

    @property
    def episodes(self) -> int:
        return len(self.ids)

    def line(self, total: int) -> str:
        """``simeval: skipping 60 of 140 episodes (light 20, background 20, layout 20): <reason>``."""
        counts = ", ".join(f"{d} {n}" for d, n in self.by_dimension.items())
        return f"simeval: skipping {self.episodes} of {total} episodes ({counts}): {self.reason}"

    def to_dict(self) -> dict:
        """results.json's ``skipped``."""
        return {"episodes": self.episodes, "by_dimension": dict(self.by_dimension), "reason": self.reason}


def unrunnable(specs: Sequence["EpisodeSpec"]) -> Skip | None:
    """The episodes of ``specs`` this machine cannot run (None when it can run them all): LIBERO-Plus's
    light, background and layout variants while its asset archive is not set up (``plus.assets_problem``)."""
    needing = [s for s in specs if s.world == LIBERO_PLUS and plus.get_variant(s.task).needs_assets]
    reason = plus.assets_problem() if needing else None
    if reason is None:
        return None
    counts = Counter(plus.get_variant(s.task).category for s in needing)
    by_dimension = {c: counts[c] for c in plus.CATEGORIES if counts[c]}
    return Skip(frozenset(s.id for s in needing), by_dimension, " ".join(str(reason).split()))
