"""summary.md rows and a self-contained report.html (no external references, a series per dimension, videos)."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from simeval.metrics import build_results, format_cell
from simeval.report import ReportConfig, svg_chart, write_report_html, write_summary_md

TIMING = {"wall_s": 12.5, "env_steps": 4000, "env_steps_per_s": 320.0, "episodes_per_s": 4.0}
VERSIONS = {"simeval": "0.1.0", "mujoco": "3.3.7", "numpy": "2.1.0", "gymnasium": "1.0.0", "python": "3.11.9"}


def records():
    """nominal 9/10; camera:1 7/10, camera:4 3/10; light:2 5/10; one error; videos on three cells."""
    out = []
    spec = [("nominal", 0, 9), ("camera", 1, 7), ("camera", 4, 3), ("light", 2, 5)]
    for dim, level, wins in spec:
        pert = "nominal" if dim == "nominal" else f"{dim}:{level}"
        for i in range(10):
            task = "PutCubeOnPlate" if i % 2 else "OpenDrawer"
            out.append({"id": f"t/{task}-Piper/{pert}/{i:04d}", "task": task, "robot": "Piper", "family": "goal",
                        "perturbation": pert, "dimension": dim, "level": level, "params": {}, "seed": i,
                        "success": i < wins, "steps": 100, "error": None, "video": None,
                        "instruction": "put the cube <on> the plate", "wall_s": 0.5})
    out[-10]["error"] = "policy raised ValueError"  # on a "successful" light:2 episode: 4/10
    for r in out:
        if r["dimension"] != "light" and r["id"].endswith(("/0000", "/0009")):
            outcome = "success" if r["success"] else "failure"
            r["video"] = f"videos/{r['perturbation'].replace(':', '_')}_{r['task']}_Piper_{r['seed']:04d}_{outcome}.mp4"
    return out


def results(recs):
    return build_results(recs, suite={"name": "smoke"}, policy="expert<b>", timing=TIMING, versions=VERSIONS)


def test_summary_md_rows(tmp_path):
    recs = records()
    res = results(recs)
    text = write_summary_md(res, tmp_path / "summary.md").read_text()
    lines = text.splitlines()
    assert f"**Overall success:** {format_cell(res['overall'])}" in lines
    assert ("| Dimension | All levels | Level 1 | Level 2 | Level 3 | Level 4 | Level 5 | Drop vs nominal "
            "| Spearman ρ (level vs success) |") in lines
    assert f"| nominal | {format_cell(res['by_dimension']['nominal'])} |  |  |  |  |  |  |  |" in lines
    camera = res["by_level"]
    # camera: 7/10 at level 1, 3/10 at level 4; two-valued on both sides, rho is the phi coefficient
    # (3*3 - 7*7) / sqrt(10*10*10*10) = -0.4, t = -0.4*sqrt(18/0.84), two-sided p = 0.0806 (18 df)
    assert (f"| camera | 50% [30-70] (n=20) | {format_cell(camera['camera:1'])} |  |  | "
            f"{format_cell(camera['camera:4'])} |  | +40 pp | -0.40 (p=0.081) |") in lines
    assert "| light | 40% [17-69] (n=10) |  | 40% [17-69] (n=10) |  |  |  | +50 pp | – |" in lines  # one level
    assert any(line.startswith("| PutCubeOnPlate | ") for line in lines)
    assert any(line.startswith("| Piper | ") for line in lines)
    assert any(line.startswith("| OpenDrawer/Piper | ") for line in lines)
    assert "Errors: 1 of 40 episodes (2.5%)" in text


def test_html_is_self_contained(tmp_path):
    recs = records()
    path = write_report_html(results(recs), recs, tmp_path / "report.html", tmp_path)
    page = path.read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "<style>" in page and "expert&lt;b&gt;" in page and "expert<b>" not in page
    assert "the cube &lt;on&gt; the plate" in page


def test_html_chart_has_one_series_per_dimension(tmp_path):
    recs = records()
    page = write_report_html(results(recs), recs, tmp_path / "report.html", tmp_path).read_text()
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page  # the prolog is stripped for inline use
    assert re.findall(r'id="series-([^"]+)"', svg) == ["camera", "light", "nominal"]  # nominal: level 0, shared
    assert "Perturbation level" in svg and "Success rate" in svg and ">100%<" in svg and ">0%<" in svg
    assert ">camera<" in svg and ">light<" in svg and ">nominal (level 0)<" in svg  # the legend
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # valid HTML: no id twice
    only_light = [r for r in recs if r["dimension"] in ("light", "nominal")]
    page = write_report_html(results(only_light), only_light, tmp_path / "r2.html", tmp_path).read_text()
    assert re.findall(r'id="series-([^"]+)"', page) == ["light", "nominal"]


def test_html_chart_is_deterministic_and_cheap_to_import(tmp_path):
    recs = records()
    first = write_report_html(results(recs), recs, tmp_path / "a.html", tmp_path).read_bytes()
    second = write_report_html(results(recs), recs, tmp_path / "b.html", tmp_path).read_bytes()
    assert first == second  # fixed svg.hashsalt, no date: identical results, identical page
    with ThreadPoolExecutor(4) as pool:  # object API, no pyplot state: charts drawn in threads agree too
        charts = list(pool.map(lambda _: svg_chart(results(recs), 980, 400), range(4)))
    assert len(set(charts)) == 1 and charts[0] in first.decode()
    code = "import sys, simeval.report; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_worker_restarts_are_said(tmp_path):
    recs = records()
    line = ("Env workers: 2 worker processes died and were replaced; their unfinished episodes re-ran "
            "from scratch.")
    for restarts, shown in ((2, True), (0, False), (None, False)):  # None: an old results.json without the key
        res = results(recs)
        if restarts is None:
            res["timing"].pop("worker_restarts", None)
        else:
            res["timing"]["worker_restarts"] = restarts
        summary = write_summary_md(res, tmp_path / "summary.md").read_text()
        page = write_report_html(res, recs, tmp_path / "report.html", tmp_path).read_text()
        assert (f"**{line}**" in summary.splitlines()) is shown
        assert (f'<p class="warn">{line}</p>' in page) is shown
        assert ("died and were replaced" in summary + page) is shown
    res = results(recs)
    res["timing"]["worker_restarts"] = 1
    summary = write_summary_md(res, tmp_path / "s.md").read_text()
    assert "1 worker process died and was replaced; its unfinished" in summary


def test_html_links_videos_relative_to_run_dir(tmp_path):
    recs = records()
    with_video = [r for r in recs if r["video"]]
    assert len(with_video) == 6
    page = write_report_html(results(recs), recs, tmp_path / "report.html", tmp_path).read_text()
    sources = re.findall(r'<video controls[^>]*src="([^"]+)"', page)
    assert sorted(sources) == sorted(r["video"] for r in with_video)
    assert page.count("<video") == 6 and "data:video" not in page
    assert 'class="tag success"' in page and 'class="tag failure"' in page
    # a report written elsewhere still points into the run directory
    page = write_report_html(results(recs), recs, tmp_path / "sub" / "report.html", tmp_path).read_text()
    assert all(src.startswith("../videos/") for src in re.findall(r'<video[^>]*src="([^"]+)"', page))


def test_html_video_limit_per_outcome(tmp_path):
    recs = records()
    for r in recs:
        if r["perturbation"] == "nominal":
            r["video"] = f"videos/nominal_{r['seed']}.mp4"
    page = write_report_html(results(recs), recs, tmp_path / "report.html", tmp_path,
                             ReportConfig(videos_per_outcome=1)).read_text()
    nominal = [s for s in re.findall(r'<video[^>]*src="([^"]+)"', page) if "nominal" in s]
    assert nominal == ["videos/nominal_0.mp4", "videos/nominal_9.mp4"]  # one success, one failure


def test_html_timing_versions_and_empty_run(tmp_path):
    recs = records()
    page = write_report_html(results(recs), recs, tmp_path / "report.html", tmp_path).read_text()
    assert "env_steps_per_s" in page and "3.3.7" in page and "policy raised ValueError" in page
    empty = results([])
    assert "no episodes" in write_report_html(empty, [], tmp_path / "empty.html", tmp_path).read_text()
    assert "Errors: none in 0 episodes." in write_summary_md(empty, tmp_path / "empty.md").read_text()


def test_summary_md_spearman_column(tmp_path):
    from simeval.report import format_spearman

    assert format_spearman({"rho": -0.866025, "p_value": 0.057669, "n": 5}) == "-0.87 (p=0.058)"
    assert format_spearman({"rho": -1.0, "p_value": 0.0, "n": 6}) == "-1.00 (p<0.001)"
    assert format_spearman({"rho": None, "p_value": None, "n": 10}) == "–"
    assert format_spearman(None) == "–"  # a results.json written before the field existed
    res = results(records())
    for cell in res["by_dimension"].values():
        cell.pop("spearman", None)
    lines = write_summary_md(res, tmp_path / "summary.md").read_text().splitlines()
    assert any(line.startswith("| camera | ") and line.endswith(" | +40 pp | – |") for line in lines)
