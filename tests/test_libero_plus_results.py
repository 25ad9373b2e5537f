"""LIBERO-Plus's published table from episode records: results.json's family x dimension cells, the
suite x category table of summary.md and report.html, the difficulty levels, the sample, the skipped
episodes and the success on the variants the expert solves; and results.json files of older runs
(without these keys) still read by check and the report. Records are fabricated (no episode runs):
each one of a real LIBERO-Plus variant, so that a solvability table can name it.
"""

from __future__ import annotations

import json

import pytest

from simeval.check import validate_results
from simeval.cli import main
from simeval.libero import plus, solvability
from simeval.metrics import build_results
from simeval.records import EpisodeRecord, cell_key
from simeval.report import write_report_html, write_summary_md
from simeval.schemas import FileFormatError
from tests.test_readback import tiny_suite, write_run

COMMITTED = solvability.TABLE  # envs/libero/plus_solvability.json (the fixture below hides it from the others)
SUITE = {"name": "plus-smoke", "world": "libero_plus", "per_category": 20, "seed": 7}
# (benchmark, category, level or None, episodes, successes); the last libero_10 layout "success" errs
SPEC = [("libero_spatial", "camera", None, 5, 3), ("libero_spatial", "robot_init", 2, 4, 1),
        ("libero_spatial", "noise", 5, 2, 0), ("libero_10", "camera", None, 2, 2), ("libero_10", "layout", 3, 3, 2)]
SKIPPED = {"episodes": 12, "by_dimension": {"layout": 3, "light": 5, "background": 4},
           "reason": "LIBERO-Plus's asset archive is not set up"}
HEADER = "| Suite | Camera | Robot | Language | Light | Background | Noise | Layout | Total |"
NEEDS_NO_LEVEL_CELLS = pytest.mark.skipif(cell_key("camera", 0) != "camera",
                                          reason="level-0 cells are named 'camera' once records.cell_key says so")


@pytest.fixture(autouse=True)
def no_table(tmp_path, monkeypatch):
    """No solvability table unless a test writes one (the repository's, once measured, must not count here)."""
    monkeypatch.setattr(solvability, "TABLE", tmp_path / "absent" / "plus_solvability.json")


def plus_records() -> list[dict]:
    out = []
    for benchmark, category, level, n, wins in SPEC:
        chosen = [v for v in plus.variants(benchmark) if v.category == category and v.level == level][:n]
        for i, variant in enumerate(chosen):
            out.append(EpisodeRecord(id=f"plus/{variant.task}/0000", task=variant.task, robot="Panda",
                                     family=benchmark, perturbation=variant.name, dimension=category,
                                     level=level or 0, params={}, seed=7, success=i < wins, steps=50,
                                     wall_s=0.1).to_dict())
    out[-2]["error"] = "worker died"  # libero_10 layout: 1 of 3 succeeds
    return out


def plus_results(records: list[dict] | None = None, **suite) -> dict:
    return build_results(plus_records() if records is None else records, suite={**SUITE, **suite},
                         policy="vla", timing={"wall_s": 1.0}, versions={})


def write_table(path, solved: dict[str, bool]):
    variants = {task: {"solved": ok, "reason": None if ok else "timed out"} for task, ok in solved.items()}
    path.write_text(json.dumps({"about": "fabricated for a test", "policy": "scripted-libero",
                                "command": "simeval run ...", "variants": variants}))
    return path


def test_cross_table_counts_and_wilson_intervals():
    res = plus_results()
    cross = res["by_family_dimension"]
    assert list(cross) == ["libero_spatial", "libero_10"]
    assert list(cross["libero_spatial"]) == ["camera", "robot_init", "noise"]  # canonical order, present only
    camera = cross["libero_spatial"]["camera"]
    assert (camera["n"], camera["successes"], camera["errors"], camera["rate"]) == (5, 3, 0, 0.6)
    # Wilson 3/5: center (0.6 + 1.9208/5) / 1.76832 = 0.55655, half 1.96 sqrt(0.048 + 0.038415) / 1.76832 = 0.32584
    assert camera["ci95"] == pytest.approx([0.23072, 0.88239], abs=1e-4)
    layout = cross["libero_10"]["layout"]
    assert (layout["n"], layout["successes"], layout["errors"]) == (3, 1, 1)  # the error counts as a failure
    assert (res["by_family"]["libero_spatial"]["n"], res["by_family"]["libero_spatial"]["successes"]) == (11, 4)
    assert sum(c["n"] for row in cross.values() for c in row.values()) == res["overall"]["n"] == 16
    validate_results(json.loads(json.dumps(res)), "results.json")


def test_simevals_own_worlds_get_the_cross_table_too():
    recs = [{"id": f"e{i}", "task": "PushButton", "robot": "Panda", "family": fam, "dimension": dim, "level": lvl,
             "success": i % 2 == 0, "steps": 5}
            for i, (fam, dim, lvl) in enumerate([("goal", "nominal", 0), ("goal", "camera", 2), ("goal", "camera", 4),
                                                  ("push", "nominal", 0), ("push", "light", 1)])]
    res = build_results(recs, suite={"name": "s"}, policy="p", timing={}, versions={})
    assert {f: {d: (c["n"], c["successes"]) for d, c in row.items()} for f, row in res["by_family_dimension"].items()} \
        == {"goal": {"nominal": (1, 1), "camera": (2, 1)}, "push": {"nominal": (1, 0), "light": (1, 1)}}
    assert res["solvable"] is None  # not a LIBERO-Plus run


def test_summary_md_shows_the_published_table_first(tmp_path):
    res = plus_results()
    res["skipped"] = SKIPPED  # what the suite's expansion reports (not of the records)
    text = write_summary_md(res, tmp_path / "summary.md").read_text()
    lines = text.splitlines()
    first_table = next(i for i, line in enumerate(lines) if line.startswith("| "))
    assert lines[first_table] == HEADER
    assert lines[first_table + 1] == "|:---|---:|---:|---:|---:|---:|---:|---:|---:|"
    # hand-worked Wilson intervals: 3/5 [23-88], 1/4 [4.6-70] -> 5, 0/2 [0-66], 4/11 [15-65]
    assert lines[first_table + 2] == ("| LIBERO-Spatial | 60% [23-88] (n=5) | 25% [5-70] (n=4) | – | – | – "
                                      "| 0% [0-66] (n=2) | – | 36% [15-65] (n=11) |")
    assert lines[first_table + 3].startswith("| LIBERO-Long | 100% [34-100] (n=2) | – |")
    assert lines[first_table + 4].startswith("| All | 71% [36-92] (n=7) | 25% [5-70] (n=4) | – |")
    assert lines[first_table + 4].endswith(f"| {_fc(res['overall'])} |")
    assert "| Category | Level 1 | Level 2 | Level 3 | Level 4 | Level 5 | No level | All |" in lines
    assert "| Robot | – | 25% [5-70] (n=4) | – | – | – | – | 25% [5-70] (n=4) |" in lines
    assert "| Noise | – | – | – | – | 0% [0-66] (n=2) | – | 0% [0-66] (n=2) |" in lines
    assert "Sample: 20 variants per suite and category, seeded (seed 7)." in lines
    assert ("12 episodes skipped (light 5, background 4, layout 3): LIBERO-Plus's asset archive is not set up; "
            "they are not counted.") in lines
    assert "## Per task" not in text and "| Dimension |" not in text  # no 10,030 variant rows, no simeval table


def _fc(cell):
    from simeval.metrics import format_cell
    return format_cell(cell)


@NEEDS_NO_LEVEL_CELLS
def test_difficulty_table_reads_level_0_cells_as_no_level(tmp_path):
    res = plus_results()
    assert "nominal" not in res["by_level"] and res["by_level"]["camera"]["n"] == 7
    lines = write_summary_md(res, tmp_path / "summary.md").read_text().splitlines()
    assert "| Camera | – | – | – | – | – | 71% [36-92] (n=7) | 71% [36-92] (n=7) |" in lines


def test_full_set_and_nothing_skipped(tmp_path):
    res = plus_results(per_category=None)
    lines = write_summary_md(res, tmp_path / "summary.md").read_text().splitlines()
    assert "Sample: the full set, every LIBERO-Plus variant of each suite run." in lines
    assert "Skipped: none; every episode of the sample ran." in lines


def test_solvable_counts_from_a_table(tmp_path, monkeypatch):
    recs = plus_records()
    spatial_camera = [r["task"] for r in recs if r["family"] == "libero_spatial" and r["dimension"] == "camera"]
    # listed: the 5 spatial camera variants (3 policy successes, on the first three) and the 4 robot ones
    robot = [r["task"] for r in recs if r["dimension"] == "robot_init"]
    solved = {**{t: i != 0 for i, t in enumerate(spatial_camera)}, **{t: True for t in robot}}
    monkeypatch.setattr(solvability, "TABLE", write_table(tmp_path / "table.json", solved))
    res = plus_results(recs)
    sol = res["solvable"]
    assert (sol["known"], sol["solvable"], sol["unknown"]) == (9, 8, 7)
    # solvable: camera episodes 1-4 (successes 1, 2) and robot 0-3 (success 0): 3 of 8
    assert (sol["cell"]["n"], sol["cell"]["successes"]) == (8, 3)
    validate_results(json.loads(json.dumps(res)), "results.json")
    text = write_summary_md(res, tmp_path / "summary.md").read_text()
    assert (f"**Success on the variants the expert solves: {_fc(sol['cell'])}, against {_fc(res['overall'])} "
            "over all episodes (of the 9 episodes whose variant the solvability table lists, 8 are of variants the "
            "privileged expert solves; 7 episodes' variants are not listed).**") in text.splitlines()
    page = write_report_html(res, recs, tmp_path / "report.html", tmp_path).read_text()
    assert f"Success on the variants the expert solves: {_fc(sol['cell'])}" in page


def test_no_table_reads_as_not_known(tmp_path):
    res = plus_results()
    assert res["solvable"] is None
    assert "Success on the variants the expert solves: not known" in write_summary_md(res, tmp_path / "s.md").read_text()


def test_a_damaged_table_is_one_line(tmp_path):
    bad = tmp_path / "table.json"
    bad.write_text(json.dumps({"about": "", "policy": "p", "command": "c", "variants": {"x": {"solved": "yes"}}}))
    with pytest.raises(FileFormatError, match=r"table\.json: variants\.x\.solved: expected boolean"):
        solvability.load_table(bad)
    write_table(bad, {"libero_spatial/no_such_variant": True})
    with pytest.raises(FileFormatError, match="'libero_spatial/no_such_variant' is no LIBERO-Plus variant"):
        solvability.load_table(bad)


@pytest.mark.skipif(not COMMITTED.is_file(), reason="the measured table is not committed yet")
def test_the_committed_table_loads():
    table = solvability.load_table(COMMITTED)  # the repository's file, as every LIBERO-Plus run reads it
    assert table is not None and table.policy == "scripted-libero" and table.solved
    assert set(table.solved) <= {v.task for v in plus.all_variants()}


def test_html_shows_the_same_tables(tmp_path):
    res = plus_results()
    res["skipped"] = SKIPPED
    page = write_report_html(res, plus_records(), tmp_path / "report.html", tmp_path).read_text()
    heads = "".join(f"<th>{t}</th>" for t in HEADER.strip("| ").split(" | "))
    assert f"<tr>{heads}</tr>" in page
    assert "<td>LIBERO-Spatial</td>" in page and "<tr class=all><td>All</td>" in page
    assert "<th>No level</th>" in page and "<td>Robot</td>" in page
    assert "Sample: 20 variants per suite and category, seeded (seed 7)." in page
    assert "12 episodes skipped (light 5, background 4, layout 3): LIBERO-Plus&#x27;s asset archive" in page
    assert "<h2>Per task</h2>" not in page


def test_damaged_new_keys_are_refused(tmp_path):
    res = json.loads(json.dumps(plus_results()))
    res["by_family_dimension"]["libero_10"]["camera"]["successes"] = 9
    with pytest.raises(FileFormatError, match=r"by_family_dimension\.libero_10\.camera: successes 9 exceed n 2"):
        validate_results(res, "results.json")
    res = json.loads(json.dumps(plus_results()))
    res["solvable"] = {"known": 2, "solvable": 3, "unknown": 0, "cell": res["overall"]}
    with pytest.raises(FileFormatError, match="solvable: 3 solvable of 2 known"):
        validate_results(res, "results.json")
    res["solvable"] = {"known": 2, "solvable": 1, "unknown": 0, "cell": {**res["overall"], "n": 1, "successes": 1}}
    with pytest.raises(FileFormatError, match="2 known [+] 0 unknown episodes, but overall.n is 16"):
        validate_results(res, "results.json")


def test_old_plus_results_without_the_new_keys_still_report(tmp_path):
    old = {k: v for k, v in plus_results().items() if k not in ("by_family_dimension", "solvable")}
    validate_results(old, "results.json")
    row = "| LIBERO-Spatial | – | – | – | – | – | – | – | 36% [15-65] (n=11) |"  # Total from by_family
    assert row in write_summary_md(old, tmp_path / "summary.md").read_text().splitlines()
    page = write_report_html(old, plus_records(), tmp_path / "report.html", tmp_path).read_text()
    assert "<td>LIBERO-Long</td>" in page and "not known (no solvability table" in page


def test_old_results_without_the_new_keys_still_check(tmp_path, capsys):
    run = write_run(tmp_path / "a", tiny_suite())
    results = json.loads((run / "results.json").read_text())
    assert "by_family_dimension" in results and results["solvable"] is None
    for key in ("by_family_dimension", "solvable"):
        del results[key]
    (run / "results.json").write_text(json.dumps(results))
    assert main(["check", "--run", str(run), "--baseline", str(run / "results.json")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS")
    write_summary_md(results, tmp_path / "summary.md")  # simeval's own table, no new key needed
    assert "| Dimension | All levels |" in (tmp_path / "summary.md").read_text()
