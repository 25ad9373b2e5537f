"""The records stage: one reading of variants and cells, no import cycle through policies.loader.

Every (dimension, level) cell comes from ``simeval.records`` (``variant_cell``/``record_cell``, built on
``envs.perturbations.variant.parse_variant``) and is named by ``records.cell_key``; metrics, reports
and checks do not parse variant strings or build cell names themselves, and importing them does not
import MuJoCo. Checkpoint loaders are "module:function" entry points that ``policies.loader`` resolves
when a checkpoint of that type is loaded, so no policy package imports the loader back.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from simeval.records import cell_key, record_cell, split_cell_key, variant_cell

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ policies.loader: no cycle

def _imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    else:
        package = package.removesuffix(".__init__")
    names = set()
    source = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # from policies import loader
    return names


POLICY_MODULES = sorted(p for pkg in ("vla", "adapters") for p in (ROOT / "policies" / pkg).rglob("*.py"))


def test_policy_packages_exist():
    assert any(p.name == "__init__.py" for p in POLICY_MODULES) and len(POLICY_MODULES) > 5


@pytest.mark.parametrize("path", POLICY_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_policy_module_imports_the_loader(path):
    imported = _imported_modules(path)
    assert "policies.loader" not in imported, f"{path} imports policies.loader: the cycle is back"


def test_relative_imports_are_resolved_by_the_check():
    # the check above must see 'from ..loader import x' too, not only absolute imports
    probe = ROOT / "policies" / "vla" / "_probe.py"  # not read: the source is given
    source = "from ..loader import load_policy\nfrom .. import loader\n"
    assert {"policies.loader", "policies.loader.load_policy"} <= _imported_modules(probe, source)
    assert "policies.loader" not in _imported_modules(probe, "from .policy import load_vla_policy\n")


def test_every_entry_point_resolves_to_a_callable():
    from policies import loader

    assert set(loader.CHECKPOINT_ENTRY_POINTS) == {"simeval_vla", "simeval_adapted"}
    for policy_type, entry in loader.CHECKPOINT_ENTRY_POINTS.items():
        module, sep, name = entry.partition(":")
        assert sep and module.startswith("policies.") and name.isidentifier(), entry
        function = loader.resolve_loader(policy_type)
        assert callable(function) and function.__name__ == name and function.__module__ == module
        assert list(inspect.signature(function).parameters)[0] in ("path", "directory")


def test_entry_point_types_are_the_checkpoint_types():
    from policies import loader
    from policies.adapters.io import POLICY_TYPE as ADAPTED
    from policies.vla.checkpoint import POLICY_TYPE as VLA

    assert {VLA, ADAPTED} == set(loader.CHECKPOINT_ENTRY_POINTS)


def test_loader_imports_no_torch_until_a_checkpoint_is_loaded(tmp_path):
    (tmp_path / "config.json").write_text('{"policy_type": "nope"}')
    code = ("import sys; from policies.loader import load_policy, CHECKPOINT_ENTRY_POINTS\n"
            "load_policy('scripted')\n"
            "try:\n    load_policy(sys.argv[1])\nexcept ValueError as err:\n    print(err)\n"
            "print('torch' in sys.modules, 'policies.vla' in sys.modules, 'policies.adapters' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.splitlines()
    assert out[-1] == "False False False"
    assert "unknown policy_type 'nope'; known checkpoint types: simeval_vla, simeval_adapted" in out[0]
    assert len(out) == 2  # the message is one line


# ------------------------------------------------------------------ one variant parser, one cell name

def test_cells_of_variants():
    assert variant_cell("nominal") == variant_cell("") == variant_cell("camera:0") == ("nominal", 0)
    assert variant_cell("camera:3") == ("camera", 3)
    assert variant_cell("light:3,camera:2") == ("camera+light", 3)  # canonical order, highest level
    with pytest.raises(ValueError, match="unknown perturbation dimension"):
        variant_cell("gravity:2")


def test_cell_names_round_trip():
    for cell in (("nominal", 0), ("camera", 3), ("camera+light", 2), ("robot_init", 5), ("camera", 0)):
        assert split_cell_key(cell_key(*cell)) == cell
    assert cell_key("camera", 3) == "camera:3" and cell_key("nominal", 0) == "nominal"
    assert cell_key("camera", 0) == "camera"  # a LIBERO-Plus variant without a level: its dimension, not nominal
    for bad in ("gravity", "camera:x", ""):
        with pytest.raises(ValueError, match="not a cell name"):
            split_cell_key(bad)


def test_record_cell_prefers_fields_and_falls_back_to_perturbation():
    assert record_cell({"dimension": "light", "level": 2, "perturbation": "camera:5"}) == ("light", 2)
    assert record_cell({"perturbation": "layout:4,noise:1"}) == ("noise+layout", 4)  # an older run's record
    assert record_cell({"perturbation": "none"}) == record_cell({}) == ("nominal", 0)
    with pytest.raises(ValueError, match=r"^episode record 'x/1': unknown perturbation dimension 'gravity'") as err:
        record_cell({"id": "x/1", "perturbation": "gravity:2"})
    assert "\n" not in str(err.value)


def test_metrics_report_check_and_records_import_no_mujoco():
    code = ("import sys\nimport simeval.records, simeval.metrics, simeval.report, simeval.check\n"
            "from simeval.metrics import summarize\n"
            "recs = [{'id': f'e{i}', 'task': 'T', 'robot': 'R', 'perturbation': f'camera:{1 + i % 2}',\n"
            "         'dimension': 'camera', 'level': 1 + i % 2, 'success': i % 2 == 0, 'steps': 1}\n"
            "        for i in range(6)]\n"
            "m = summarize(recs)\n"
            "print(m['by_dimension']['camera']['spearman']['rho'], 'mujoco' in sys.modules, 'envs' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out == "-1.0 False False\n"


def test_no_module_parses_variants_or_builds_cell_names_by_hand():
    # the patterns of a hand-rolled parser or cell name (the ones removed from metrics and report)
    for name in ("metrics.py", "report.py", "check.py"):
        text = (ROOT / "simeval" / name).read_text(encoding="utf-8")
        for pattern in ('.split(",")', 'f"{dim}:{', "f\"{dimension}:{", 'partition(":")', 'rpartition(":")'):
            assert pattern not in text, f"simeval/{name} has {pattern!r}: use simeval.records"
