"""Human-readable views of a results.json: summary.md and one self-contained report.html.

The HTML page has inline CSS, an inline SVG chart (drawn by matplotlib) and no scripts or external
resources, so it can be mailed or attached to a CI run as one file; videos are linked relative to the
run directory.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import quote

from simeval.files import write_text
from simeval.libero import tables
from simeval.metrics import DIMENSIONS, NOMINAL, format_cell, format_drop, is_success, pct
from simeval.records import cell_key, record_cell, split_cell_key

if TYPE_CHECKING:  # matplotlib is imported only when a chart is drawn
    from matplotlib.figure import Figure

LEVELS = (1, 2, 3, 4, 5)
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#3d9a94", "#59a14f", "#c49a00", "#b07aa1",
           "#ff7f9f", "#9c755f", "#6b6ecf")  # one per canonical dimension, then composed ones


@dataclass(frozen=True)
class ReportConfig:
    """What the HTML page shows: how many videos per (dimension, level) and outcome, and sizes."""

    videos_per_outcome: int = 2
    video_width: int = 224
    max_error_rows: int = 20
    chart_width: int = 980
    chart_height: int = 400


# ---------------------------------------------------------------- shared table data

def _suite_name(results: dict) -> str:
    suite = results.get("suite")
    return str(suite.get("name", "?")) if isinstance(suite, dict) else str(suite or "?")


def is_libero_run(results: dict) -> bool:
    """A run in one of LIBERO's own worlds: nominal scenes only, so no perturbation table."""
    from simeval.worlds import is_libero

    suite = results.get("suite")
    return isinstance(suite, dict) and is_libero(str(suite.get("world", "simeval")))


def _levels(results: dict) -> list[int]:
    found = {split_cell_key(k)[1] for k in results.get("by_level", {})} - {0}
    return sorted(set(LEVELS) | found)


def level_rows(results: dict) -> list[tuple[str, dict, dict[int, dict | None], float | None]]:
    """One row per dimension (nominal first): (name, pooled cell, {level: cell}, drop vs nominal)."""
    by_level = results.get("by_level", {})
    rows = []
    for dim, cell in results.get("by_dimension", {}).items():
        cells = {lvl: (None if dim == NOMINAL else by_level.get(cell_key(dim, lvl))) for lvl in _levels(results)}
        rows.append((dim, cell, cells, None if dim == NOMINAL else cell.get("drop_vs_nominal")))
    return rows


def _errors_line(results: dict) -> str:
    counts = results.get("counts", {})
    errors, episodes = counts.get("errors", 0), counts.get("episodes", 0)
    if not errors:
        return f"Errors: none in {episodes} episodes."
    return (f"Errors: {errors} of {episodes} episodes ({errors / episodes:.1%}) ended in an error "
            f"(policy raised, NaN action or worker died); they count as failures.")


def workers_line(results: dict) -> str | None:
    """A sentence when env worker processes died and were replaced (their episodes re-ran), else None.

    Older results.json files have no ``worker_restarts``: that reads as none."""
    restarts = int((results.get("timing") or {}).get("worker_restarts") or 0)
    if restarts <= 0:
        return None
    if restarts == 1:
        return ("Env workers: 1 worker process died and was replaced; its unfinished episodes re-ran "
                "from scratch.")
    return (f"Env workers: {restarts} worker processes died and were replaced; their unfinished episodes "
            "re-ran from scratch.")


# ---------------------------------------------------------------- summary.md

def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines + [""]


def grounding_line(results: dict) -> str:
    """One sentence on language grounding (tasks that name one object among several)."""
    g = results.get("grounding") or {}
    overall = g.get("overall") or {}
    if not g.get("eligible_episodes"):
        return "Language grounding: no task in this run names one object among several."
    if not overall.get("n"):
        return f"Language grounding: none of the {g['eligible_episodes']} eligible episodes moved an object."
    low, high = overall["ci95"]
    per_task = ", ".join(f"{task} {pct(cell['rate'])}% (n={cell['n']})" for task, cell in g.get("by_task", {}).items())
    return (f"Language grounding: the named object was the first one moved in {pct(overall['rate'])}% "
            f"[{pct(low)}-{pct(high)}] of {overall['n']} episodes that moved an object "
            f"({pct(g['moved_any'])}% of {g['eligible_episodes']} eligible episodes moved one); per task: {per_task}.")


def format_spearman(spearman: dict | None) -> str:
    """"-0.87 (p=0.058)": Spearman's rho of level vs success and its p-value; "–" where undefined."""
    if not isinstance(spearman, dict) or spearman.get("rho") is None:
        return "–"
    p = spearman.get("p_value")
    p_text = "" if p is None else " (p<0.001)" if p < 0.001 else f" (p={p:.2g})"
    return f"{spearman['rho']:+.2f}{p_text}"


def _md_cells(table: tables.CellTable) -> list[str]:
    rows = [[title, *(format_cell(cell) for cell in cells)] for title, cells in table.rows]
    return _md_table(table.header, rows, "l" + "r" * (len(table.header) - 1))


PLUS_NOTES = ("Success rate [Wilson 95% CI] (episodes) per LIBERO suite and perturbation category, as LIBERO-Plus "
              "publishes it; Total: every episode of the row; All: every suite; –: no episodes.",
              "Levels 1-5 where the variant says how strong it is (the robot's start pose, the noise severity, "
              "the moved-object layouts); No level: the variants that do not (camera, language, light, "
              "background, added objects).")


def _plus_md(results: dict) -> list[str]:
    """A LIBERO-Plus run: the published table, the difficulty levels, the sample and what was skipped."""
    lines = ["## LIBERO-Plus: suite × category", "", PLUS_NOTES[0], "", *_md_cells(tables.published_table(results)),
             "## By difficulty level", "", PLUS_NOTES[1], "", *_md_cells(tables.level_table(results))]
    return lines + [tables.sample_line(results), "", tables.skipped_line(results), ""]


def write_summary_md(results: dict, path: str | os.PathLike) -> Path:
    """Markdown tables: overall, dimension x level with drop vs nominal and Spearman ρ, per task, per robot, errors
    (a LIBERO-Plus run: its published table and difficulty levels instead, without the 10,030 variants' rows)."""
    plus = tables.is_plus_run(results)
    lines = [f"# {results.get('policy', '?')} on suite {_suite_name(results)}", "",
             f"**Overall success:** {format_cell(results.get('overall'))}", ""]
    if plus:
        lines += [f"**{tables.solvable_line(results)}**", ""]
    if restarted := workers_line(results):
        lines += [f"**{restarted}**", ""]
    if plus:
        lines += _plus_md(results)
    elif is_libero_run(results):
        lines += ["## Per LIBERO suite", "",
                  "As published LIBERO tables report it: success over every episode of the suite, with its Wilson 95% "
                  "interval (episodes).", ""]
        lines += _md_table(["Suite", "Success", "Errors"], [[name, format_cell(cell), cell.get("errors", 0)] for name, cell
                                                            in results.get("by_family", {}).items()], "lrr")
    else:
        levels = _levels(results)
        lines += [grounding_line(results), "",
                  "## Success by perturbation dimension and level", "",
                  "Cells: success rate [Wilson 95% CI] (episodes). Drop: nominal rate minus the dimension's rate. "
                  "Spearman ρ: rank correlation of level with success over the dimension's episodes (negative: "
                  "success falls as the level rises; – where undefined: one level only, or every episode alike).", ""]
        header = ["Dimension", "All levels", *[f"Level {lvl}" for lvl in levels], "Drop vs nominal",
                  "Spearman ρ (level vs success)"]
        rows = [[dim, format_cell(cell), *[format_cell(cells[lvl]) if cells[lvl] else "" for lvl in levels],
                 *(["", ""] if dim == NOMINAL else [format_drop(drop), format_spearman(cell.get("spearman"))])]
                for dim, cell, cells, drop in level_rows(results)]
        lines += _md_table(header, rows, "l" + "r" * (len(header) - 1))
    sections = (("Per task", "by_task", "Task"), ("Per robot", "by_robot", "Robot"),
                ("Per task and robot", "by_task_robot", "Task/Robot"))
    for title, section, first in () if plus else sections[:1] if is_libero_run(results) else sections:  # LIBERO: one robot
        lines += [f"## {title}", ""]
        rows = [[name, format_cell(cell), cell.get("errors", 0)] for name, cell in results.get(section, {}).items()]
        lines += _md_table([first, "Success", "Errors"], rows, "lrr")
    lines += [_errors_line(results), ""]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, "\n".join(lines))
    return out


# ---------------------------------------------------------------- chart (matplotlib, inline SVG)

def _colors(dims: Sequence[str]) -> dict[str, str]:
    colors, spare = {NOMINAL: "#444444"}, iter(PALETTE[len(DIMENSIONS):] * 10)
    for dim in dims:
        if dim in DIMENSIONS:
            colors[dim] = PALETTE[DIMENSIONS.index(dim)]
        elif dim not in colors:
            colors[dim] = next(spare)
    return colors


def _series_id(dim: str) -> str:
    """An SVG id for a dimension's series (``series-camera``), so tests and styles can find it."""
    return "series-" + re.sub(r"[^A-Za-z0-9_-]+", "-", dim)


def _plot_levels(fig: "Figure", results: dict) -> None:
    """Draw success (0-100%) against level on ``fig``: level 0 is nominal, shared; Wilson 95% CI error bars."""
    from matplotlib.ticker import PercentFormatter

    by_level = results.get("by_level", {})
    nominal = by_level.get(NOMINAL) if (by_level.get(NOMINAL) or {}).get("n") else None
    dims = [d for d in results.get("by_dimension", {}) if d != NOMINAL]
    colors = _colors(dims)
    max_level = max([5, *(split_cell_key(k)[1] for k in by_level)])
    ax = fig.add_subplot()
    series = {}  # id -> the line through a series' points; ids are set after the legend copies its handles
    dodge = min(0.07, 0.5 / max(1, len(dims)))  # side by side, so error bars do not hide each other
    for i, dim in enumerate(dims):
        offset = (i - (len(dims) - 1) / 2) * dodge
        points = [(lvl, by_level[cell_key(dim, lvl)]) for lvl in range(1, max_level + 1)
                  if (by_level.get(cell_key(dim, lvl)) or {}).get("n")]
        if nominal:  # the line starts at the shared nominal point (its marker and CI are drawn once, below)
            first = [(0, nominal["rate"])] + [(lvl + offset, c["rate"]) for lvl, c in points[:1]]
            ax.plot(*zip(*[(x, 100 * y) for x, y in first]), color=colors[dim], linewidth=2, zorder=2)
        if not points:
            continue
        xs = [lvl + offset for lvl, _ in points]
        ys = [100 * c["rate"] for _, c in points]
        err = [[100 * (c["rate"] - c["ci95"][0]) for _, c in points],  # below, above: Wilson is asymmetric
               [100 * (c["ci95"][1] - c["rate"]) for _, c in points]]
        series[_series_id(dim)] = ax.errorbar(xs, ys, yerr=err, color=colors[dim], linewidth=2, marker="o",
                                              markersize=6, markeredgecolor="white", capsize=3, elinewidth=1.2,
                                              ecolor=colors[dim], label=dim, zorder=3)
    if nominal:
        low, high = nominal["ci95"]
        series[_series_id(NOMINAL)] = ax.errorbar(
            [0], [100 * nominal["rate"]], yerr=[[100 * (nominal["rate"] - low)], [100 * (high - nominal["rate"])]],
            color=colors[NOMINAL], marker="o", markersize=7, markeredgecolor="white", capsize=3, linestyle="none",
            label="nominal (level 0)", zorder=4)
    if not dims and not nominal:
        ax.text(0.5, 0.5, "no episodes", transform=ax.transAxes, ha="center", va="center", color="#6e7781")
    ax.set_xticks(range(max_level + 1), ["0\n(nominal)", *map(str, range(1, max_level + 1))])
    ax.set_xlim(-0.5, max_level + 0.5)
    ax.set_ylim(-2, 102)
    ax.set_yticks(range(0, 101, 20))
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.grid(True, axis="y", color="#e6e8eb")
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlabel("Perturbation level")
    ax.set_ylabel("Success rate (Wilson 95% CI)")
    if dims or nominal:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="Dimension")
    for gid, container in series.items():
        container.lines[0].set_gid(gid)  # <g id="series-camera">: the SVG names each series once


_SVG_LOCK = threading.Lock()  # rc_context swaps global rcParams: one chart at a time, so restores never interleave


def svg_chart(results: dict, width: int = 860, height: int = 400) -> str:
    """Success rate (0-100%) against level (0 = nominal, shared), one series per dimension, CI bars.

    A matplotlib figure (object API, svg backend: no display, no pyplot state) as inline SVG for the
    page: no XML prolog, no namespace URLs or metadata, fixed ids and no date, so identical results
    give an identical page; text stays text (``svg.fonttype: none``), so it is small and searchable."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    buffer = io.StringIO()
    style = {"svg.hashsalt": "simeval-report", "svg.fonttype": "none",
             "font.family": ["DejaVu Sans", "sans-serif"], "font.size": 10}
    with _SVG_LOCK, matplotlib.rc_context(style):
        fig = Figure(figsize=(width / 100, height / 100), dpi=100, layout="constrained")
        FigureCanvasSVG(fig)
        _plot_levels(fig, results)
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Type": None, "Format": None, "Creator": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop <?xml ...?> and <!DOCTYPE ...>: an HTML page holds the element itself
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)  # implied for inline SVG in HTML5
    return svg.replace("<svg", '<svg class="chart" role="img" aria-label="Success rate per dimension and level"', 1)


# ---------------------------------------------------------------- HTML page

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2328;
 background:#f6f7f9;margin:0}
main{max-width:1120px;margin:0 auto;padding:28px 32px 48px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:36px 0 10px;padding-bottom:4px;border-bottom:1px solid #e3e6ea}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#59636e;margin:0 0 20px}
.overall{display:flex;gap:28px;align-items:baseline;padding:16px 20px;background:#f0f4fa;border-radius:8px}
.overall .big{font-size:42px;font-weight:700}.overall .ci{color:#59636e}
table{border-collapse:collapse;margin:8px 0 4px;font-variant-numeric:tabular-nums;font-size:14px}
th,td{padding:5px 10px;border-bottom:1px solid #e6e8eb;text-align:right;white-space:nowrap}
th{background:#f3f4f6;font-weight:600}th:first-child,td:first-child{text-align:left}
th.l,td.l{text-align:left;white-space:normal}td.empty{color:#b0b6bd}
td .n{display:block;font-size:12px;color:#59636e;line-height:1.2}
.scroll{overflow-x:auto}.note{color:#59636e;font-size:13px}
.bar{display:inline-block;width:90px;height:9px;background:#e6e8eb;border-radius:5px;vertical-align:middle}
.bar span{display:block;height:100%;background:#4e79a7;border-radius:5px}
.chart{max-width:100%;height:auto}
.warn{padding:8px 14px;background:#fff8e1;border-left:4px solid #d4a72c;border-radius:4px}
.vgrid{display:flex;flex-wrap:wrap;gap:16px}
.vcell{border:1px solid #e3e6ea;border-radius:8px;padding:8px 10px 10px}
.vcell h3{margin:0 0 6px;font-size:14px}.vcell h3 small{font-weight:400;color:#59636e}
.videos{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;padding:6px;border:1px solid #e3e6ea;border-radius:6px;background:#fafbfc}
figure video{display:block;max-width:100%;background:#000}
figcaption{font-size:12px;color:#424a53;margin-top:4px;line-height:1.35}
.tag{display:inline-block;padding:0 6px;border-radius:4px;font-weight:600;font-size:11px;color:#fff}
.tag.success{background:#2da44e}.tag.failure{background:#cf222e}
tr.all td{font-weight:600;border-top:2px solid #c9ced4}
.kv{display:flex;gap:40px;flex-wrap:wrap}code{font-size:13px}
"""


def _td(cell: dict | None) -> str:
    """A table cell tinted from red (0%) to green (100%)."""
    if not cell or not cell.get("n"):
        return '<td class="empty">–</td>'
    text, _, n = format_cell(cell).partition(" (")  # "72% [60-82]" and, on a second line, "(n=50)"
    return (f'<td style="background:hsl({cell["rate"] * 120:.0f},65%,91%)">{html.escape(text)}'
            f'<span class="n"> ({html.escape(n)}</span></td>')


def _level_table(results: dict) -> str:
    levels = _levels(results)
    head = "".join(f"<th>Level {lvl}</th>" for lvl in levels)
    rows = [f"<tr><th>Dimension</th><th>All levels</th>{head}<th>Drop vs nominal</th></tr>"]
    for dim, cell, cells, drop in level_rows(results):
        tds = "".join('<td class="empty"></td>' if dim == NOMINAL else _td(cells[lvl]) for lvl in levels)
        rows.append(f"<tr><td>{html.escape(dim)}</td>{_td(cell)}{tds}"
                    f"<td>{'' if dim == NOMINAL else html.escape(format_drop(drop))}</td></tr>")
    return '<div class="scroll"><table>' + "".join(rows) + "</table></div>"


def _cell_table(table: tables.CellTable) -> str:
    """A :class:`tables.CellTable` as HTML; its last row (All) set apart."""
    e = html.escape
    head = "".join(f"<th>{e(title)}</th>" for title in table.header)
    rows = [f'<tr{" class=all" if i == len(table.rows) - 1 and title == "All" else ""}><td>{e(title)}</td>'
            f'{"".join(_td(cell) for cell in cells)}</tr>' for i, (title, cells) in enumerate(table.rows)]
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def _plus_html(results: dict) -> list[str]:
    """The summary's LIBERO-Plus tables and sentences, for the page."""
    e = html.escape
    return ["<h2>LIBERO-Plus: suite × category</h2>", f'<p class="note">{e(PLUS_NOTES[0])}</p>',
            _cell_table(tables.published_table(results)),
            "<h3>By difficulty level</h3>", f'<p class="note">{e(PLUS_NOTES[1])}</p>',
            _cell_table(tables.level_table(results)),
            f"<p>{e(tables.sample_line(results))}</p>",
            f'<p{" class=warn" if tables.skipped_episodes(results) else ""}>'
            f"{e(tables.skipped_line(results))}</p>"]


def _group_table(results: dict, section: str, first: str) -> str:
    rows = [f"<tr><th>{html.escape(first)}</th><th>Success</th><th></th><th>Successes</th><th>Errors</th></tr>"]
    for name, cell in results.get(section, {}).items():
        width = 0 if cell.get("rate") is None else cell["rate"] * 100
        rows.append(f"<tr><td>{html.escape(name)}</td>{_td(cell)}"
                    f'<td><span class="bar"><span style="width:{width:.0f}%"></span></span></td>'
                    f"<td>{cell['successes']}/{cell['n']}</td><td>{cell.get('errors', 0)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return value if isinstance(value, str) else json.dumps(value)


def _kv_table(title: str, values: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_value(v))}</td></tr>"
                   for k, v in (values or {}).items())
    return f"<div><h3>{html.escape(title)}</h3><table>{rows}</table></div>"


def _video_section(results: dict, records: Sequence[dict], report_dir: Path, run_dir: Path,
                   config: ReportConfig) -> str:
    """Per (dimension, level): up to N successful and N failed episodes' videos, linked, not embedded."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        if record.get("video"):
            groups.setdefault(cell_key(*record_cell(record)), []).append(record)
    known = results.get("by_level", {})
    order = [k for k in known if k in groups] + [k for k in groups if k not in known]
    if not order:
        return '<p class="note">No videos were recorded in this run.</p>'
    suite = results.get("suite")
    if isinstance(suite, dict):  # each cell's preferred examples first, so that cells show varied tasks
        from simeval.video import example_ranker

        rank = example_ranker(suite)
        for group in groups.values():
            group.sort(key=rank)
    out = ['<div class="vgrid">']
    for key in order:
        wins = [r for r in groups[key] if is_success(r)][: config.videos_per_outcome]
        losses = [r for r in groups[key] if not is_success(r)][: config.videos_per_outcome]
        dim, level = split_cell_key(key)
        out.append(f'<div class="vcell"><h3>{html.escape(dim)} <small>level {level}</small></h3><div class="videos">')
        for record in wins + losses:
            outcome = "success" if is_success(record) else "failure"
            rel = os.path.relpath(run_dir / str(record["video"]), report_dir)
            src = quote(Path(rel).as_posix(), safe="/.-_~")
            caption = (f'<span class="tag {outcome}">{outcome}</span> {html.escape(str(record.get("task")))}/'
                       f'{html.escape(str(record.get("robot")))}<br>seed {html.escape(str(record.get("seed")))}'
                       f'<br>&ldquo;{html.escape(str(record.get("instruction", "")))}&rdquo;')
            if record.get("error"):
                caption += f"<br>error: {html.escape(str(record['error']))}"
            out.append(f'<figure style="width:{config.video_width}px"><video controls preload="metadata" '
                       f'src="{src}" width="{config.video_width}"></video><figcaption>{caption}</figcaption></figure>')
        out.append("</div></div>")
    return "".join(out) + "</div>"


def _errors_section(results: dict, records: Sequence[dict], config: ReportConfig) -> str:
    failed = [r for r in records if r.get("error")]
    text = f"<p>{html.escape(_errors_line(results))}</p>"
    if not failed:
        return text
    rows = "".join(f"<tr><td><code>{html.escape(str(r.get('id')))}</code></td>"
                   f"<td class='l'>{html.escape(str(r['error']))}</td></tr>" for r in failed[: config.max_error_rows])
    more = len(failed) - config.max_error_rows
    return (text + f"<div class=\"scroll\"><table><tr><th>Episode</th><th class='l'>Error</th></tr>{rows}</table></div>"
            + (f'<p class="note">… and {more} more in episodes.jsonl.</p>' if more > 0 else ""))


def write_report_html(results: dict, records: Sequence[dict], path: str | os.PathLike,
                      run_dir: str | os.PathLike, config: ReportConfig = ReportConfig()) -> Path:
    """One self-contained page: overall figure, chart, tables, example videos, timing and versions."""
    out = Path(path)
    e = html.escape
    policy, suite = str(results.get("policy", "?")), _suite_name(results)
    overall = results.get("overall") or {}
    counts = results.get("counts", {})
    if overall.get("n"):
        low, high = overall["ci95"]
        big = (f'<span class="big">{pct(overall["rate"])}%</span><span class="ci">95% CI {pct(low)}% – {pct(high)}%'
               f' · {overall["successes"]}/{overall["n"]} episodes succeeded · {counts.get("errors", 0)} errors</span>')
    else:
        big = '<span class="big">–</span><span class="ci">no episodes</span>'
    restarted = workers_line(results)
    plus = tables.is_plus_run(results)  # LIBERO-Plus: its published table, no rows per variant
    libero = is_libero_run(results) and not plus  # LIBERO's nominal scenes, one robot: no perturbation or robot tables
    body = [f"<h1>{e(policy)}</h1>",
            f'<p class="sub">simeval report · suite <b>{e(suite)}</b> · {counts.get("episodes", 0)} episodes</p>',
            f'<div class="overall">{big}</div>',
            *([f"<p><b>{e(tables.solvable_line(results))}</b></p>"] if plus else []),
            *([f'<p class="warn">{e(restarted)}</p>'] if restarted else []),
            *([] if libero or plus else [f'<p class="note">{e(grounding_line(results))}</p>']),
            *(_plus_html(results) if plus else
              ["<h2>Per LIBERO suite</h2>", _group_table(results, "by_family", "Suite")] if libero else
              ["<h2>Success by perturbation</h2>",
               '<p class="note">Level 0 is the nominal (unperturbed) suite, shared by every dimension; '
               "bars show Wilson 95% confidence intervals.</p>",
               svg_chart(results, config.chart_width, config.chart_height),
               '<h3>Dimension × level</h3><p class="note">Success rate [Wilson 95% CI] (episodes). '
               "Drop vs nominal: nominal rate minus the dimension's rate, in percentage points.</p>",
               _level_table(results)]),
            *([] if plus else ["<h2>Per task</h2>", _group_table(results, "by_task", "Task")]),
            *([] if libero or plus else ["<h2>Per robot</h2>", _group_table(results, "by_robot", "Robot"),
                                 "<h2>Per task and robot</h2>", _group_table(results, "by_task_robot", "Task / robot")]),
            "<h2>Errors</h2>", _errors_section(results, records, config),
            "<h2>Run</h2>",
            '<div class="kv">' + "".join(_kv_table(title, results[key]) for title, key in
                                         (("Timing", "timing"), ("Versions", "versions"), ("Run", "run"))
                                         if results.get(key)) + "</div>",
            "<h2>Example videos</h2>",
            _video_section(results, records, out.resolve().parent, Path(run_dir).resolve(), config)]
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>simeval · {e(policy)} · {e(suite)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, page)
    return out
