"""The files simeval reads back, as JSON Schemas, and the one strict way to parse and check them.

``episodes.jsonl`` (one :data:`RECORD` a line), ``results.json`` and baselines (:data:`RESULTS`),
``run.json`` (:data:`RUN_META`) and ``simeval-run.json`` (:data:`MARKER`) are checked on reading,
so that a damaged or hand-edited file ends in one line naming the file, the key path and what was
expected (:class:`FileFormatError`, exit code 2), never in a traceback or a silently wrong figure:
``"counts": 5`` or ``"n": "8"`` are refused, not coerced. Parsing is strict too (:func:`parse_json`):
no ``NaN``/``Infinity``, no number that overflows to infinity, no key twice in one object (JSON
would keep the last copy silently), no nesting past Python's limits.

The layout the schemas encode is written out for people in ``simeval.metrics.SCHEMA``; a test keeps
the two in step by validating what ``build_results`` writes.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable

MAX_COUNT = 10**9  # more episodes than any run holds: a bigger count is damage, not data
MAX_ID = 1000  # characters of an episode id

_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
_RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
_TEXT = {"type": "string"}
_MAYBE_TEXT = {"type": ["string", "null"]}
_CELL = {"type": "object", "required": ["n", "successes"],
         "properties": {"n": _COUNT, "successes": _COUNT, "errors": _COUNT, "rate": _RATE,
                        "ci95": {"type": "array", "minItems": 2, "maxItems": 2, "items": _RATE},
                        "drop_vs_nominal": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
                        "spearman": {"type": "object",
                                     "properties": {"rho": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
                                                    "p_value": _RATE, "n": _COUNT}}}}
_CELLS = {"type": "object", "additionalProperties": _CELL}
_GROUNDING = {"type": "object", "required": ["n", "named_first"],
              "properties": {"n": _COUNT, "named_first": _COUNT, "rate": _RATE,
                             "ci95": {"type": "array", "minItems": 2, "maxItems": 2, "items": _RATE}}}

SUITE = {"type": "object", "required": ["name"],  # a suite as ``Suite.to_dict`` writes it
         "properties": {"name": _TEXT, "description": _TEXT, "world": _TEXT,
                        "tasks": {"type": "array", "items": _TEXT}, "robots": {"type": "array", "items": _TEXT},
                        "perturbations": {"type": "array", "items": _TEXT},
                        "episodes": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                        "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                        "max_steps": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_COUNT},
                        "image_size": {"type": "integer", "minimum": 1, "maximum": 100_000},
                        "per_category": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT}}}

RECORD = {"type": "object", "required": ["id", "success", "steps"],  # simeval.records.EpisodeRecord
          "properties": {"id": {"type": "string", "minLength": 1, "maxLength": MAX_ID},
                         "task": _TEXT, "robot": _TEXT, "family": _TEXT, "perturbation": _TEXT,
                         "dimension": {"type": "string", "minLength": 1},
                         "level": {"type": "integer", "minimum": 0, "maximum": 5},
                         "params": {"type": "object"}, "seed": {"type": "integer", "minimum": 0, "maximum": 2**63},
                         "success": {"type": "boolean"}, "steps": _COUNT, "error": _MAYBE_TEXT,
                         "video": _MAYBE_TEXT, "instruction": _TEXT, "wall_s": {"type": "number", "minimum": 0},
                         "named_object": _MAYBE_TEXT, "first_moved": _MAYBE_TEXT,
                         "grounded": {"type": ["boolean", "null"]}, "demo": _MAYBE_TEXT}}

RESULTS = {"type": "object", "required": ["overall"],  # results.json and baselines (simeval.metrics.SCHEMA)
           "properties": {"schema": {"type": "string", "pattern": "^simeval\\.results/"},
                          "baseline_of": _TEXT, "suite": {**SUITE, "type": ["object", "string"]},
                          "policy": _MAYBE_TEXT, "overall": _CELL, "by_dimension": _CELLS, "by_level": _CELLS,
                          "by_task": _CELLS, "by_family": _CELLS, "by_robot": _CELLS, "by_task_robot": _CELLS,
                          "by_family_dimension": {"type": "object", "additionalProperties": _CELLS},
                          "solvable": {"type": ["object", "null"], "required": ["known", "solvable", "unknown", "cell"],
                                       "properties": {"known": _COUNT, "solvable": _COUNT, "unknown": _COUNT,
                                                      "cell": _CELL}},
                          "grounding": {"type": "object",
                                        "properties": {"overall": _GROUNDING,
                                                       "by_task": {"type": "object", "additionalProperties": _GROUNDING},
                                                       "eligible_episodes": _COUNT, "moved_any": _RATE}},
                          "counts": {"type": "object",
                                     "properties": {"episodes": _COUNT, "successes": _COUNT, "errors": _COUNT,
                                                    "by_dimension": {"type": "object", "additionalProperties": _COUNT}}},
                          "skipped": {"type": ["object", "null"],  # episodes left out (metrics.SCHEMA)
                                      "required": ["episodes", "by_dimension", "reason"],
                                      "properties": {"episodes": _COUNT, "reason": _TEXT,
                                                     "by_dimension": {"type": "object", "additionalProperties": _COUNT}}},
                          "timing": {"type": "object"}, "versions": {"type": "object"}, "run": {"type": "object"}}}

RUN_META = {"type": "object", "required": ["suite", "policy"],  # run.json (simeval.harness.prepare_dir)
            "properties": {"suite": SUITE, "policy": _TEXT, "episode": _MAYBE_TEXT,
                           "policy_options": {"type": "object"}}}

MARKER = {"type": "object", "required": ["format"],  # simeval-run.json (simeval.rundir.claim)
          "properties": {"format": _TEXT, "note": _TEXT, "files": {"type": "array", "items": _TEXT}}}


class FileFormatError(ValueError):
    """A file simeval reads back is not what simeval writes: one line naming the file, exit code 2."""


class NotJSON(FileFormatError):
    """Text that does not parse as JSON at all (a write cut short reads so)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when a key appears twice (json would keep the last copy silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"key {twice[:60]!r} appears twice in one object")
    return obj


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large")
    return value


def parse_json(text: str | bytes, where: str) -> Any:
    """``text`` as JSON, strictly: a one-line :class:`FileFormatError` naming ``where`` otherwise."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_object)
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{where}: not UTF-8 text (byte {err.start}), so not a file simeval wrote") from None
    except json.JSONDecodeError as err:
        raise NotJSON(f"{where}: not valid JSON (line {err.lineno} column {err.colno}: {err.msg})") from None
    except RecursionError:
        raise FileFormatError(f"{where}: not a file simeval wrote (JSON nested too deeply)") from None
    except ValueError as err:  # NaN, Infinity, 1e999, an integer of thousands of digits, a key twice
        raise FileFormatError(f"{where}: not valid JSON ({str(err).splitlines()[0][:120]})") from None


def read_json(path: Path, where: str | None = None) -> Any:
    """The JSON in ``path`` (see :func:`parse_json`); a file that cannot be read is one line too."""
    where = where or str(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise FileFormatError(f"{where}: cannot read it ({err.strerror or err})") from None
    return parse_json(data, where)


def key_path(parts: Iterable[str | int]) -> str:
    """``counts.episodes``, ``by_level[camera:3].n``: where in a file a value is."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) or not str(part).isidentifier() else f".{part}"
    return text.lstrip(".") or "the top level"


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# JSON Schema's types, with "integer" meaning 8 but not 8.0 or true: counts are never coerced
TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "null": lambda v: v is None}


def first_error(value: Any, schema: dict, path: tuple = ()) -> tuple[tuple, str] | None:
    """The first place ``value`` breaks ``schema`` (key path, what was expected), or None.

    The JSON Schema keywords the schemas above use (type, required, properties,
    additionalProperties, items, minimum/maximum, min/maxLength, min/maxItems, pattern), read as
    the standard reads them (a test checks this against the ``jsonschema`` package); hand-written
    because that package takes some 150 us per record, too slow for a log of 100,000 episodes."""
    kinds = schema.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else kinds
        if not any(TYPES[name](value) for name in names):
            return path, f"expected {' or '.join(names)}, got {_short(value)}"
    if isinstance(value, dict):
        missing = [key for key in schema.get("required", ()) if key not in value]
        if missing:
            return path, f"missing key {', '.join(repr(k) for k in missing)}"
        properties, other = schema.get("properties", {}), schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, other)
            found = first_error(item, sub, (*path, key)) if isinstance(sub, dict) else None
            if found:
                return found
        return None
    if isinstance(value, list):
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
            return path, f"expected {schema.get('minItems', 0)}..{schema.get('maxItems', 'any')} items, got {len(value)}"
        for index, item in enumerate(value):
            found = first_error(item, schema["items"], (*path, index)) if "items" in schema else None
            if found:
                return found
        return None
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return path, f"expected {schema.get('minLength', 0)}..{schema.get('maxLength', 'any')} characters, got {len(value)}"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return path, f"expected a string matching {schema['pattern']}, got {_short(value)}"
        return None
    if TYPES["number"](value) and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        return path, f"expected {schema.get('minimum', '')}..{schema.get('maximum', '')}, got {_short(value)}"
    return None


def check(data: Any, schema: dict, where: str) -> Any:
    """``data`` when it fits ``schema``; else a one-line :class:`FileFormatError`: file, key path, expected."""
    found = first_error(data, schema)
    if found is not None:
        raise FileFormatError(f"{where}: {key_path(found[0])}: {found[1]}")
    return data
