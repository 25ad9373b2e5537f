"""Suites: YAML files naming tasks, robots, perturbation variants, episodes per cell and a seed.

A suite expands into a list of :class:`EpisodeSpec`, each with a stable id and a seed derived from
the suite (a hash, not Python's salted ``hash``), so any single episode can be re-run alone.
Built-in suites live in ``simeval/suite_files/*.yaml``; a path to a user's own file works the same.

Suite keys: ``name``, ``description``, ``tasks`` (list or ``all``), ``robots`` (list or ``all``),
``perturbations`` (variants such as ``nominal``, ``camera:3``, ``light:2,camera:1``; ranges
``camera:1-5``; ``*:L`` or ``*:1-5`` for every dimension), ``episodes`` (per task x robot x
variant), ``max_steps`` (optional override of the tasks' step limits), ``seed``, ``image_size``,
``world`` (``simeval``, the default, or a LIBERO benchmark such as ``libero_spatial``: see
``simeval.worlds``; there ``tasks`` are LIBERO's, the robot LIBERO's Panda, the variant ``nominal``
and ``episodes`` the init states taken, the first N of each task's 50), or ``libero_plus``
(LIBERO-Plus's perturbed variants: ``tasks`` are benchmarks or variants, ``perturbations`` categories,
``per_category`` an optional seeded sample per benchmark and category, ``episodes`` the init states
per variant, default 1: see ``simeval.suites_plus``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_EPISODES = 10_000  # per cell
MAX_TOTAL = 1_000_000  # per suite: a bigger one is split, not held in memory as one list
MAX_FILE_BYTES = 1_000_000
KEYS = ("name", "description", "world", "tasks", "robots", "perturbations", "episodes", "max_steps", "seed",
        "image_size", "per_category")


class SuiteError(ValueError):
    """A suite that cannot be used: the message names the file, the line and the key."""


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode of a suite: everything needed to reproduce it."""

    id: str
    task: str
    robot: str
    variant: str
    seed: int
    max_steps: int
    index: int  # the episode's number in its cell (in a LIBERO world: the task's init state)
    world: str = "simeval"  # simeval's worlds, or the LIBERO benchmark the task is from (simeval.libero)


@dataclass
class Suite:
    """A suite as :func:`parse_suite` resolved it (names checked there); in world ``libero_plus``
    ``tasks`` are variant tasks, ``perturbations`` categories and ``per_category`` the sample size."""

    name: str
    tasks: list[str]
    robots: list[str]
    perturbations: list[str]
    episodes: int = 10
    seed: int = 0
    max_steps: int | None = None
    image_size: int = 128
    description: str = ""
    world: str = "simeval"
    per_category: int | None = None  # world libero_plus: variants sampled per (benchmark, category)
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        from simeval.libero import plus
        from simeval.worlds import LIBERO_PLUS, check_world

        check_world(self.world)
        if self.world == LIBERO_PLUS:
            for task in self.tasks:
                plus.get_variant(task)  # a one-line ValueError for a task that is not a variant
        for key in ("episodes", "per_category"):
            value = getattr(self, key)
            if (value is not None or key == "episodes") and (not isinstance(value, int) or isinstance(value, bool)
                                                             or value < 1):
                raise ValueError(f"suite {self.name!r}: {key} must be an integer >= 1, got {value!r}")
        if self.per_category is not None and self.world != LIBERO_PLUS:
            raise ValueError(f"suite {self.name!r}: per_category samples LIBERO-Plus's variants; world "
                             f"{self.world!r} has none (give world: {LIBERO_PLUS})")

    def to_dict(self) -> dict[str, Any]:
        from simeval import suites_plus
        from simeval.worlds import LIBERO_PLUS

        data = asdict(self)
        data.pop("source")
        if data["world"] == "simeval":  # a run.json of simeval's worlds reads as before worlds existed
            data.pop("world")
        if data["per_category"] is None:  # nor of LIBERO's benchmarks, which never sample
            data.pop("per_category")
        if self.world == LIBERO_PLUS:
            data["tasks"] = suites_plus.compact(self.tasks)
        return data

    def episode_specs(self) -> list[EpisodeSpec]:
        """Every episode, in a fixed order: variant, task, robot, index (in world ``libero_plus``:
        the chosen variants in catalogue order, then robot, index)."""
        from simeval import worlds

        if self.world == worlds.LIBERO_PLUS:
            return self._plus_specs()
        specs = []
        for variant in self.perturbations:
            for task in self.tasks:
                limit = self.max_steps or worlds.max_steps(self.world, task)
                for robot in self.robots:
                    for i in range(self.episodes):
                        key = f"{self.name}/{task}-{robot}/{variant}/{i:04d}"
                        seed = worlds.episode_seed(self.world, self.seed, key)
                        specs.append(EpisodeSpec(key, task, robot, variant, seed, limit, i, self.world))
        return specs

    def _plus_specs(self) -> list[EpisodeSpec]:
        from simeval import suites_plus, worlds

        specs = []
        for variant in suites_plus.select(self.tasks, self.perturbations, self.per_category, self.seed):
            limit, cell = self.max_steps or worlds.max_steps(self.world, variant.task), suites_plus.label(variant)
            for robot in self.robots:
                for i in range(self.episodes):
                    key = f"{self.name}/{variant.task}-{robot}/{cell}/{i:04d}"
                    seed = worlds.episode_seed(self.world, self.seed, key)
                    specs.append(EpisodeSpec(key, variant.task, robot, cell, seed, limit, i, self.world))
        return specs


SUITE_DIR = Path(__file__).with_name("suite_files")


def builtin_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SUITE_DIR.glob("*.yaml"))}


def load_suite(name_or_path: str) -> Suite:
    """A built-in suite by name, or a suite file by path; ``SuiteError`` otherwise."""
    builtins = builtin_suites()
    path = builtins.get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise SuiteError(f"unknown suite {name_or_path!r}: not a built-in ({', '.join(sorted(builtins))}) "
                         f"and no such file")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SuiteError(f"{path}: {path.stat().st_size:,} bytes, larger than a suite file can be "
                             f"({MAX_FILE_BYTES:,}); is it a suite?")
        text = path.read_text()
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as err:
        raise SuiteError(f"{path}: cannot read the suite file ({err})") from None
    except RecursionError:
        raise SuiteError(f"{path}: nested too deeply to be a suite file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SuiteError(f"{where}: malformed YAML ({getattr(err, 'problem', None) or err})") from None
    return parse_suite(data, path, _key_lines(node))


def _key_lines(node) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def parse_suite(data: Any, path: Path | str = "<suite>", lines: dict[str, int] | None = None) -> Suite:
    """Validate a suite mapping; every error names the file, the line and the key."""
    from simeval import suites_plus, worlds

    lines = lines or {}

    def fail(key: str, message: str) -> SuiteError:
        line = f":{lines[key]}" if key in lines else ""
        return SuiteError(f"{path}{line}: key {key!r}: {message}")

    if not isinstance(data, dict):
        raise SuiteError(f"{path}: a suite must be a mapping of keys ({', '.join(KEYS)})")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise fail(unknown[0], f"unknown key; valid keys: {', '.join(KEYS)}")
    for key in ("name", "tasks", "robots", "perturbations"):
        if key not in data:
            raise SuiteError(f"{path}: missing key {key!r}")

    def names(key: str, valid: list[str]) -> list[str]:
        value = data[key]
        if value == "all":
            return list(valid)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise fail(key, "must be 'all' or a non-empty list of names")
        bad = [v for v in value if v not in valid]
        if bad:
            raise fail(key, f"unknown {', '.join(bad)[:200]}; valid: {', '.join(valid)}")
        twice = _duplicates(value)
        if twice:
            raise fail(key, f"{', '.join(twice)} listed more than once; name each once")
        return list(value)

    world = data.get("world", worlds.SIMEVAL)
    if not isinstance(world, str) or world not in worlds.worlds():
        raise fail("world", f"unknown world {_short(world)}; valid worlds: {', '.join(worlds.worlds())}")
    plus_world = world == worlds.LIBERO_PLUS
    tasks = suites_plus.parse_tasks(data["tasks"], fail) if plus_world else names("tasks", worlds.task_names(world))
    robots = names("robots", worlds.robots(world))
    variants = (suites_plus.parse_perturbations if plus_world else _variants)(data["perturbations"], fail)
    ints = {}
    for key, default, low, high in (("episodes", 1 if plus_world else 10, 1, MAX_EPISODES), ("seed", 0, 0, 2**31 - 1),
                                    ("image_size", 128, 16, 1024)):
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise fail(key, f"must be an integer within {low}..{high}, got {_short(value)}")
        ints[key] = value
    per_category = data.get("per_category")
    if per_category is not None and not plus_world:
        raise fail("per_category", f"samples LIBERO-Plus's variants, so it applies to world {worlds.LIBERO_PLUS} only "
                                   f"(this suite's world is {world})")
    if per_category is not None and (not isinstance(per_category, int) or isinstance(per_category, bool)
                                     or not 1 <= per_category <= MAX_EPISODES):
        raise fail("per_category", f"must be an integer within 1..{MAX_EPISODES} (variants per benchmark and "
                                   f"category) or null for every variant, got {_short(per_category)}")
    cells = len(variants) * len(tasks)
    if plus_world:
        chosen = suites_plus.select(tasks, variants, per_category, ints["seed"])
        if not chosen:
            raise fail("perturbations", f"none of the suite's tasks is a variant of {', '.join(variants)[:200]}")
        cells, tasks_run, whose = len(chosen), [v.task for v in chosen], "LIBERO-Plus's variants"
    elif world != worlds.SIMEVAL:
        if variants != ["nominal"]:
            raise fail("perturbations", f"world {world} runs LIBERO's nominal scenes only: give [nominal]")
        tasks_run, whose = tasks, "LIBERO's tasks"
    if world != worlds.SIMEVAL:
        most = min(worlds.max_episodes(world, t) for t in tasks_run)
        if ints["episodes"] > most:
            raise fail("episodes", f"{ints['episodes']} episodes per task, but {whose} have {most} init states")
    max_steps = data.get("max_steps")
    if max_steps is not None and (not isinstance(max_steps, int) or isinstance(max_steps, bool)
                                  or not 1 <= max_steps <= 100_000):
        raise fail("max_steps", f"must be an integer within 1..100000 or null, got {_short(max_steps)}")
    total = cells * len(robots) * ints["episodes"]
    if total > MAX_TOTAL:
        raise fail("episodes", f"the suite has {total:,} episodes, more than the {MAX_TOTAL:,} one run takes; "
                               f"split it into several suites")
    name = data["name"]
    if not isinstance(name, str) or not name or "/" in name or len(name) > 100 or not name.isprintable():
        # it names the run directory and every episode id: a newline or NUL there breaks both
        raise fail("name", f"must be a non-empty string of at most 100 printable characters (no newline, tab "
                           f"or other control character), without '/'; got {_short(name)}")
    description = data.get("description", "")
    if not isinstance(description, (str, type(None))):
        raise fail("description", f"must be a string, got {type(description).__name__}")
    return Suite(name=name, tasks=tasks, robots=robots, perturbations=variants, max_steps=max_steps,
                 description=description or "", world=world, per_category=per_category, source=str(path), **ints)


def _variants(raw: Any, fail) -> list[str]:
    """``perturbations`` of simeval's worlds (and LIBERO's): variants, ranges expanded, each once."""
    from envs.perturbations import DIMENSIONS, parse_variant

    if not isinstance(raw, list) or not raw:
        raise fail("perturbations", "must be a non-empty list of variants such as 'nominal' or 'camera:3'")
    expanded: list[tuple[str, str]] = []  # (variant, the entry it came from)
    for entry in raw:
        if not isinstance(entry, (str, int)) or isinstance(entry, bool) or len(str(entry)) > 200:
            raise fail("perturbations", f"entry {str(entry)[:60]!r} is not a variant such as 'nominal', 'camera:3' or "
                                        f"'light:2,camera:1'")
        try:
            expanded += [(str(parse_variant(text)), str(entry)) for text in _expand(str(entry), DIMENSIONS)]
        except ValueError as err:
            raise fail("perturbations", str(err)) from None
    variants = [v for v, _ in expanded]
    twice = _duplicates(variants)
    if twice:
        sources = [f"{v} (from {', '.join(repr(e) for w, e in expanded if w == v)})" for v in twice]
        raise fail("perturbations", f"variant {'; '.join(sources)} given more than once; name each once")
    return variants


def _duplicates(values: list[str]) -> list[str]:
    """The values that occur more than once, each named once, in first-seen order."""
    seen: dict[str, int] = {}
    for value in values:
        seen[value] = seen.get(value, 0) + 1
    return [v for v, count in seen.items() if count > 1]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expand(entry: str, dimensions: tuple[str, ...]) -> list[str]:
    """``*:1-5`` -> every dimension at every level; ``camera:1-3`` -> three variants."""
    from envs.perturbations.variant import MAX_LEVEL

    if "," in entry or ":" not in entry:
        return [entry]
    name, _, level = entry.partition(":")
    names = list(dimensions) if name.strip() == "*" else [name.strip()]
    if "-" in level.strip()[1:]:
        low, _, high = level.strip().partition("-")
        if not (low.isdigit() and high.isdigit()) or int(low) > int(high):
            raise ValueError(f"malformed level range {level.strip()!r} in {entry!r}; write e.g. 'camera:1-5'")
        if int(high) > MAX_LEVEL:
            raise ValueError(f"level range {level.strip()!r} in {entry!r} goes past the highest level {MAX_LEVEL}")
        levels = range(int(low), int(high) + 1)
    else:
        levels = [level.strip()]
    return [f"{n}:{lvl}" for n in names for lvl in levels]
