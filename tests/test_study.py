"""The adaptation study end to end in its tiny ``--quick`` form: every method adapts the shipped
reference to the PiPER and is evaluated; the tables, JSON and plot are written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "results" / "reference" / "config.json").is_file(), reason="no shipped reference")
def test_quick_study(tmp_path):
    results = tmp_path / "study"
    command = [sys.executable, str(ROOT / "scripts" / "adaptation_study.py"), "--quick", "--data", str(tmp_path / "data"),
               "--work", str(tmp_path / "work"), "--results", str(results), "--methods", "lora,lora_sp,gse,last_k"]
    subprocess.run(command, check=True, cwd=tmp_path)
    data = json.loads((tmp_path / "study_quick.json").read_text())
    for rows in data["settings"].values():
        assert [r["method"] for r in rows] == ["none (zero-shot base)", "lora", "lora_sp", "gse", "last_k"]
        assert all(r["overall"]["n"] > 0 and r["eval_seconds"] > 0 for r in rows)
        assert rows[0]["trainable"] == 0 and all(0 < r["pct_of_full"] < 50 for r in rows[1:])
    table = (tmp_path / "study_quick.md").read_text()
    assert table.count("| lora_sp |") == 2
    assert (tmp_path / "study_quick.png").stat().st_size > 5000
