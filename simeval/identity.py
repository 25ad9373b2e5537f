"""Whether runs are runs of the same episodes: the one answer ``simeval check`` and ``simeval compare`` give.

An episode is its id (suite, task, robot, variant and number), its seed, and the suite fields that
change what happens in it but not its id (:data:`EPISODE_KEYS`: the suite's seed, step limit, image
size and world). Two runs of one suite file with different ``--seed`` share every id and not one
episode, so they are paired nowhere: :func:`episode_mismatch` says what differs, in one line.

Which episodes a run holds (the suite's tasks, robots, variants, episodes per cell) is a further
condition of ``check``'s unpaired test only (``simeval.check.suite_mismatch``): ``compare`` pairs the
episodes runs share, whatever else each holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

EPISODE_KEYS = ("seed", "max_steps", "image_size", "world")  # suite fields that make an episode
DEFAULTS = {"world": "simeval", "per_category": None}  # what Suite.to_dict leaves out: simeval's own world, no sample
RECORD_KEYS = ("seed", "task", "robot", "perturbation")  # what a record says of its episode


@dataclass(frozen=True)
class Episodes:
    """What one run says of its episodes: its name in messages, its suite (None when unknown) and
    its episode records (none when only a summary is at hand)."""

    name: str
    suite: dict[str, Any] | None = None
    records: Sequence[dict] = ()


def suite_of(value: Any) -> dict[str, Any]:
    """A results file's ``suite`` as a dict: older files name the suite only (or nothing)."""
    suite = value if isinstance(value, dict) else {"name": value}
    return {**DEFAULTS, **suite}


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def episode_mismatch(runs: Sequence[Episodes]) -> str | None:
    """Why ``runs`` do not hold the same episodes under the same ids (None when they do).

    The suites must agree in name and :data:`EPISODE_KEYS` (where both say), and every id the runs
    share must have the same :data:`RECORD_KEYS` in each (where both records say)."""
    known = [(run, suite_of(run.suite)) for run in runs if run.suite is not None]
    for run, suite in known[1:]:
        first, base = known[0]
        if suite.get("name") != base.get("name"):
            return f"{first.name} is of suite {_quote(base.get('name'))}, {run.name} of suite {_quote(suite.get('name'))}"
        differ = [k for k in EPISODE_KEYS if k in suite and k in base and suite[k] != base[k]]
        if differ:
            key = differ[0]
            return (f"suite {_quote(base.get('name'))} differs in {', '.join(differ)} ({key}: {first.name} "
                    f"{_quote(base[key])}, {run.name} {_quote(suite[key])}), so its episodes differ")
    seen: dict[str, tuple[Episodes, dict]] = {}
    found: list[tuple[str, str, Episodes, dict, Episodes, dict]] = []
    for run in runs:
        for record in run.records:
            first, other = seen.setdefault(record["id"], (run, record))
            differ = [k for k in RECORD_KEYS if k in record and k in other and record[k] != other[k]]
            if differ:
                found.append((record["id"], differ[0], first, other, run, record))
    if not found:
        return None
    episode, key, first, a, run, b = found[0]
    return (f"episode {_quote(episode)} has {key} {_quote(a[key])} in {first.name} and {_quote(b[key])} in "
            f"{run.name} ({len({f[0] for f in found})} episode id(s) differ so), so these are different episodes")
