"""The adaptation study end to end in its tiny ``--quick`` form: every method adapts the shipped
reference to the PiPER and is evaluated; the tables, JSON and plot are written, and ``--plot-only``
redraws the plot from the JSON alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "adaptation_study.py"


def _cell(successes: int, n: int) -> dict:
    from simeval.metrics import wilson_interval

    low, high = wilson_interval(successes, n)
    return {"n": n, "successes": successes, "errors": 0, "rate": successes / n, "ci95": [low, high]}


def test_plot_only_redraws_from_json(tmp_path):
    """--plot-only needs nothing but the JSON (no reference, data or training): a PNG of two panels."""
    dims = {"nominal": _cell(9, 10), "camera": _cell(0, 10), "light": _cell(10, 10)}  # others: missing cells
    rows = [{"method": m, "dimensions": dims, "overall": _cell(19, 30)} for m in ("none (zero-shot base)", "lora")]
    results = tmp_path / "study"
    (tmp_path / "study.json").write_text(json.dumps({"settings": {"single-task (A)": rows, "multi-task (B)": rows}}))
    out = subprocess.run([sys.executable, str(SCRIPT), "--plot-only", "--results", str(results)], check=True,
                         cwd=tmp_path, capture_output=True, text=True).stdout
    assert "study.png" in out and not (tmp_path / "study.md").exists()  # nothing but the plot was redone
    with Image.open(tmp_path / "study.png") as image:
        width, height = image.size
        colors = image.convert("RGB").getcolors(1 << 20)
    assert width > 1000 and height > 600  # two stacked panels
    assert len(colors) > 50  # bars, error bars, text: not a blank canvas


@pytest.mark.study
@pytest.mark.skipif(not (ROOT / "results" / "reference" / "config.json").is_file(), reason="no shipped reference")
def test_quick_study(tmp_path):
    results = tmp_path / "study"
    command = [sys.executable, str(SCRIPT), "--quick", "--data", str(tmp_path / "data"),
               "--work", str(tmp_path / "work"), "--results", str(results), "--methods", "lora,lora_sp,gse,last_k"]
    subprocess.run(command, check=True, cwd=tmp_path)
    data = json.loads((tmp_path / "study_quick.json").read_text())
    for rows in data["settings"].values():
        assert [r["method"] for r in rows] == ["none (zero-shot base)", "lora", "lora_sp", "gse", "last_k"]
        assert all(r["overall"]["n"] > 0 and r["eval_seconds"] > 0 for r in rows)
        assert rows[0]["trainable"] == 0 and all(0 < r["pct_of_full"] < 50 for r in rows[1:])
        assert all(r["train_seconds"] > 0 for r in rows[1:])  # every method really adapted
    assert set(data["stage_seconds"]) == {"load base", "collect", "adapt", "evaluate", "plot"}
    table = (tmp_path / "study_quick.md").read_text()
    assert table.count("| lora_sp |") == 2
    demos = (tmp_path / "data" / "episodes.jsonl").read_text().splitlines()
    assert {json.loads(line)["task"] for line in demos} == {"PutCubeOnPlate", "PushButton"}  # only the tasks used
    png = tmp_path / "study_quick.png"
    assert png.stat().st_size > 5000
    png.unlink()
    subprocess.run([sys.executable, str(SCRIPT), "--plot-only", "--results", str(tmp_path / "study_quick")],
                   check=True, cwd=tmp_path)
    assert png.stat().st_size > 5000
