"""The adaptation study v2 in its ``--quick`` form: stages run, stop, and resume from their files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "adaptation_study_v2.py"


@pytest.mark.study
def test_quick_study_v2_runs_stops_and_resumes(tmp_path):
    common = [sys.executable, str(SCRIPT), "--quick", "--data", str(tmp_path / "data"), "--work",
              str(tmp_path / "work"), "--results", str(tmp_path / "results")]
    first = subprocess.run([*common, "--stages", "9"], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert "9 of 16 stages done; 7 left" in first
    files = sorted((tmp_path / "results" / "stages").rglob("*.json"))
    assert len(files) == 9
    stamp = {f: f.stat().st_mtime_ns for f in files}
    rest = subprocess.run(common, check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    ran = [line for line in rest.splitlines() if "/seed0: " in line]
    assert "16 of 16 stages done; 0 left" in rest and len(ran) == 7  # only the missing ones ran
    assert all(f.stat().st_mtime_ns == t for f, t in stamp.items())  # finished stages are not redone
    listing = subprocess.run([*common, "--list"], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert listing.count("done  ") == 16

    def stage(name: str) -> dict:
        return json.loads((tmp_path / "results" / "stages" / f"{name}.json").read_text())

    for setting in ("single", "multi"):
        base = stage(f"{setting}/none/seed0")
        assert "trainable" not in base and base["eval"]["n"] == len(base["eval"]["ids"]) == len(base["eval"]["success"])
    lora = stage("single/lora-small/seed0")
    assert lora["options"]["rank"] == 3 and 0.0251 * 0.85 <= lora["trainable"] / lora["total"] <= 0.0251 * 1.15
    gse = stage("single/gse-small/seed0")
    assert gse["options"]["experts"] == 2 and gse["train_seconds"] > 0
    capvector = stage("single/capvector/seed0")
    assert capvector["vector_seconds"] > 0 and capvector["auxiliary"]["eval"]["n"] == capvector["eval"]["n"]
    assert capvector["auxiliary"]["auxiliary_seconds"] > 0
    assert stage("multi/capvector/seed0")["vector_seconds"] == 0  # the single-task seed's vector, reused

    subprocess.run([*common, "--summary"], check=True, capture_output=True, cwd=tmp_path)
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    single = summary["single"]
    assert set(single["methods"]) >= {"none", "full", "lora@small", "capvector", "capvector-auxiliary"}
    assert single["methods"]["lora@small"]["overall"]["n"] == lora["eval"]["n"]
    pairs = {(c["a"], c["b"]) for c in single["comparisons"]}
    assert ("gse@small", "full") in pairs and ("gse@small", "lora@small") in pairs and ("full", "lora@small") not in pairs
    assert all("p_holm" in c["cells"][0] for c in single["comparisons"])
    assert "| paired |" in (tmp_path / "results" / "summary.md").read_text()
