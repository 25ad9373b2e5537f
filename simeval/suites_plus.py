"""How a suite of world ``libero_plus`` picks LIBERO-Plus's variants: its ``tasks``, ``perturbations``
and ``per_category`` keys, read and expanded without LIBERO (``simeval.libero.plus`` is the catalogue).

- ``tasks``: ``all``, or a list of LIBERO benchmark names (every variant of each) and/or variant task
  names (``<benchmark>/<variant name>``); kept in the catalogue's order.
- ``perturbations``: ``all`` (the seven categories) or a list of categories (``camera``, ``noise`` ...),
  each optionally at one level (``robot_init:3``; only robot_init, noise and layout variants have levels).
- ``per_category`` (optional): a sample of that many variants per (benchmark, perturbation entry),
  drawn by ``random.Random("<seed>/<benchmark>/<entry>").sample`` (a string seed is hashed with
  SHA-512, never with Python's salted ``hash``), so one seed gives one sample on every machine; the
  sample is kept in catalogue order; a group with fewer variants is taken whole.

Each chosen variant is one cell: its episodes' variant is its category with its level (``noise:2``)
or the bare category (``camera``), so episode ids and records carry the category.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from simeval.libero import plus

Fail = Callable[[str, str], Exception]  # (key, message) -> the suite's one-line error


def label(variant: plus.PlusVariant) -> str:
    """The variant's cell: ``robot_init:3`` where the name gives a level, else ``camera``."""
    return f"{variant.category}:{variant.level}" if variant.level else variant.category


def leveled() -> tuple[str, ...]:
    """The categories whose variants carry levels (from the catalogue: robot_init, noise, layout)."""
    found = {v.category for v in plus.all_variants() if v.level}
    return tuple(c for c in plus.CATEGORIES if c in found)


def parse_tasks(value: Any, fail: Fail) -> list[str]:
    """``tasks`` as variant task names in catalogue order (see the module docstring)."""
    if value == "all":
        return [v.task for v in plus.all_variants()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail("tasks", f"must be 'all' or a non-empty list of LIBERO benchmarks ({', '.join(plus.BENCHMARKS)}) "
                            f"or variant tasks (<benchmark>/<variant name>)")
    chosen: dict[str, str] = {}  # task -> the entry it came from
    for entry in value:
        if entry in plus.BENCHMARKS:
            tasks = [v.task for v in plus.variants(entry)]
        else:
            try:
                tasks = [plus.get_variant(entry).task]
            except ValueError as err:
                raise fail("tasks", f"unknown {entry[:160]!r}: {err}; give a benchmark "
                                    f"({', '.join(plus.BENCHMARKS)}) or a task of 'simeval list tasks --world "
                                    f"libero_plus'") from None
        twice = next((t for t in tasks if t in chosen), None)
        if twice is not None:
            raise fail("tasks", f"{twice[:160]!r} is given twice (by {chosen[twice][:160]!r} and {entry[:160]!r}); "
                                f"name each variant or benchmark once")
        chosen.update(dict.fromkeys(tasks, entry))
    order = {v.task: i for i, v in enumerate(plus.all_variants())}
    return sorted(chosen, key=order.__getitem__)


def parse_perturbations(value: Any, fail: Fail) -> list[str]:
    """``perturbations`` as entries ``camera`` or ``robot_init:3``, in the order given."""
    valid = f"'all' or a list of categories ({', '.join(plus.CATEGORIES)}), each optionally at one level " \
            f"(e.g. 'robot_init:3'; levels 1-5 for {', '.join(leveled())})"
    if value == "all":
        return list(plus.CATEGORIES)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail("perturbations", f"world libero_plus takes {valid}")
    entries: list[str] = []
    for text in value:
        category, sep, level = text.strip().partition(":")
        if category not in plus.CATEGORIES:
            raise fail("perturbations", f"{text[:60]!r} is not a LIBERO-Plus category; give {valid}")
        if sep:
            if category not in leveled():
                raise fail("perturbations", f"{text[:60]!r}: LIBERO-Plus's {category} variants carry no level; "
                                            f"give {category!r}")
            if not level.strip().isdigit() or not 1 <= int(level) <= 5:
                raise fail("perturbations", f"{text[:60]!r}: the level must be 1-5")
        entry = f"{category}:{int(level)}" if sep else category
        clash = [e for e in entries if _overlap(e, entry)]
        if clash:
            raise fail("perturbations", f"{entry!r} overlaps {clash[0]!r}; name each category, or each of its "
                                        f"levels, once")
        entries.append(entry)
    return entries


def _overlap(a: str, b: str) -> bool:
    """Whether two entries take some variant both: the same category, bare in one or at one level."""
    (ca, _, la), (cb, _, lb) = a.partition(":"), b.partition(":")
    return ca == cb and (not la or not lb or la == lb)


def _entry_of(variant: plus.PlusVariant, entries: list[str]) -> str | None:
    """The perturbation entry a variant falls under (at most one: overlaps are refused)."""
    for entry in entries:
        category, _, level = entry.partition(":")
        if variant.category == category and (not level or variant.level == int(level)):
            return entry
    return None


def select(tasks: list[str], entries: list[str], per_category: int | None, seed: int) -> list[plus.PlusVariant]:
    """The variants a suite runs, in the order of ``tasks``: those of ``tasks`` under ``entries``,
    sampled ``per_category`` per (benchmark, entry) when given (see the module docstring)."""
    groups: dict[tuple[str, str], list[plus.PlusVariant]] = {}
    for task in tasks:
        variant = plus.get_variant(task)
        entry = _entry_of(variant, entries)
        if entry is not None:
            groups.setdefault((variant.benchmark, entry), []).append(variant)
    chosen: set[str] = set()
    for (benchmark, entry), pool in groups.items():
        if per_category is None or per_category >= len(pool):
            chosen.update(v.task for v in pool)
        else:
            rng = random.Random(f"{seed}/{benchmark}/{entry}")
            chosen.update(pool[i].task for i in rng.sample(range(len(pool)), per_category))
    return [plus.get_variant(t) for t in tasks if t in chosen]


def compact(tasks: list[str]) -> list[str]:
    """``tasks`` as a suite file would name them: a benchmark whose every variant is there by its name
    (so run.json and results.json do not list 10,030 names for ``tasks: all``); :func:`parse_tasks`
    reads it back to the same list."""
    present = set(tasks)
    out: list[str] = []
    for benchmark in plus.BENCHMARKS:
        names = [v.task for v in plus.variants(benchmark)]
        whole = all(t in present for t in names)
        out += [benchmark] if whole else [t for t in names if t in present]
    return out
