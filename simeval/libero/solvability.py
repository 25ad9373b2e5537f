"""Which LIBERO-Plus variants the privileged expert solves, and a policy's success on those alone.

Some of LIBERO-Plus's 10,030 variants may be unsolvable as built (an object pushed out of reach, a
camera that hides the goal). A variant the privileged scripted expert cannot solve says little about a
policy, so results.json reports, beside the raw rate, the policy's success over the variants the expert
solved (``solvable``, see :data:`simeval.metrics.SCHEMA`). The expert's outcome per variant is data in
the repository, measured once by the command the file names::

    envs/libero/plus_solvability.json = {"about": str, "policy": "scripted-libero", "command": str,
        "variants": {"<benchmark>/<variant name>": {"solved": bool, "reason": str | null}}}

No file: no table (``load_table`` returns None, results.json says ``"solvable": null``). A file that is
not this layout, or names a variant LIBERO-Plus does not have, is one line naming the file
(:class:`simeval.schemas.FileFormatError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from simeval.libero import plus
from simeval.schemas import FileFormatError, check, read_json

TABLE = Path(__file__).resolve().parents[2] / "envs" / "libero" / "plus_solvability.json"

SCHEMA = {"type": "object", "required": ["about", "policy", "command", "variants"],
          "properties": {"about": {"type": "string"}, "policy": {"type": "string"}, "command": {"type": "string"},
                         "variants": {"type": "object",
                                      "additionalProperties": {"type": "object", "required": ["solved"],
                                                               "properties": {"solved": {"type": "boolean"},
                                                                              "reason": {"type": ["string", "null"]}}}}}}


@dataclass(frozen=True)
class SolvabilityTable:
    """The expert's outcome per variant (task name ``<benchmark>/<variant name>`` -> solved)."""

    policy: str
    command: str
    solved: dict[str, bool]
    reasons: dict[str, str | None]


def load_table(path: Path | None = None) -> SolvabilityTable | None:
    """The table at ``path`` (default :data:`TABLE`, read at call time), or None when there is no file."""
    path = Path(path or TABLE)
    if not path.is_file():
        return None
    data = check(read_json(path), SCHEMA, str(path))
    known = plus.all_variants()
    tasks = {v.task for v in known}
    stray = next((name for name in data["variants"] if name not in tasks), None)
    if stray is not None:
        raise FileFormatError(f"{path}: variants: {stray[:160]!r} is no LIBERO-Plus variant; keys are "
                              f"<benchmark>/<variant name>, benchmarks {', '.join(plus.BENCHMARKS)}")
    variants = data["variants"]
    return SolvabilityTable(policy=data["policy"], command=data["command"],
                            solved={name: entry["solved"] for name, entry in variants.items()},
                            reasons={name: entry.get("reason") for name, entry in variants.items()})


def summary(records: Sequence[dict], table: SolvabilityTable) -> dict[str, Any]:
    """results.json's ``solvable``: episodes of listed variants, of solved ones, of unlisted ones, and the
    policy's success cell over the solved ones (an episode's variant is its ``task``)."""
    from simeval.metrics import Cell  # here: metrics imports this module lazily, the other way round

    known = [r for r in records if str(r.get("task")) in table.solved]
    solved = [r for r in known if table.solved[str(r["task"])]]
    return {"known": len(known), "solvable": len(solved), "unknown": len(records) - len(known),
            "cell": Cell.of(solved).to_dict()}
