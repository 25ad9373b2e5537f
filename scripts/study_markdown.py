"""The adaptation study's markdown: the claims table first, then each setting's methods, success
per dimension, paired comparisons, the rank sweep and the wall time of every stage."""

from __future__ import annotations

from typing import Any

from simeval.metrics import format_cell
from study_report import DIMENSIONS, MARGIN, row_key

KNOBS = ("rank", "bank", "experts", "top_k", "layers")
TITLES = {"single": "Single task (PutCubeOnPlate, 600 steps; nominal + every dimension at levels 1-5, 5 episodes "
          "per cell: n = 180 per run)",
          "multi": "Multi-task (all ten tasks, 1,200 steps; nominal + every dimension at levels 1, 3 and 5, "
          "1 episode per task and cell: n = 220 per run)"}


def pct(x: float | None, sign: bool = False) -> str:
    return "—" if x is None else f"{100 * x:{'+' if sign else ''}.1f}"


def difference(value: float, ci95: list[float]) -> str:
    """"+10.6 [+5.0, +16.0]": a paired difference and its 95% interval, in percentage points."""
    return f"{pct(value, True)} [{pct(ci95[0], True)}, {pct(ci95[1], True)}]"


def knob(options: dict[str, Any]) -> str:
    """The method's own budget knob (LoRA's rank, LoRA-SP's bank, GSE's experts, last-k's blocks)."""
    text = ", ".join(f"{k}={v}" for k, v in options.items() if k in KNOBS) or "—"
    return f"{text} of {'+'.join(options['groups'])}" if "layers" in options else text


def claims_table(claims: list[dict[str, Any]]) -> list[str]:
    lines = ["| paper | claim | paper's figure | setting | our comparison | ours: difference [95% CI] | p | "
             "p (Holm) | paper's figure in our CI | verdict |", "|---|---|---|---|---|---:|---:|---:|---|---|"]
    for c in claims:
        head = f"| {c['paper']} | {c['claim']} | {c['figure']} | {c['setting']} |"
        if c.get("status"):
            what = f"{c['a']} vs {c['b']}" if "a" in c else "the rank sweep"
            lines.append(f"{head} {what} | {c['status']} | | | | |")
        elif c["kind"] == "rank":
            figs = "; ".join(f"{m}: " + ", ".join(f"{r} {100 * v:.0f}%" for r, v in s["ranks"].items())
                             for m, s in c["sweeps"].items())
            diffs = "; ".join(f"{m} best-worst {difference(s['range'], s['ci95'])}"
                              for m, s in c["sweeps"].items())
            p_raw, p_holm = (", ".join(f"{s[k]:.2g}" for s in c["sweeps"].values()) for k in ("p_value", "p_holm"))
            lines.append(f"{head} {figs} | {diffs} | {p_raw} | {p_holm} | — | {c['verdict']} |")
        elif c["kind"] == "cost":
            s = c["seconds"]
            ratios = ", ".join(f"{v:.2f}x" for v in c["per_seed"].values())
            lines.append(f"{head} training seconds summed over seeds {','.join(map(str, c['seeds']))}: merged "
                         f"model {s['capvector']:.0f}, plain fine-tune of the same process {s['plain']:.0f}, "
                         f"auxiliary {s['capvector-auxiliary']:.0f} (extraction, once per seed: "
                         f"{s['extraction']:.0f}) | {s['capvector'] / s['plain']:.2f}x of plain (per seed "
                         f"{ratios}) | | | — | {c['verdict']} |")
        else:
            o = c["comparison"]["overall"]
            inside = "—" if c["size_in_ci"] is None else ("yes" if c["size_in_ci"] else "no")
            lines.append(f"{head} {c['a']} {pct(o['rate_a'])}% vs {c['b']} {pct(o['rate_b'])}% (n = {o['n']} pairs, "
                         f"seeds {','.join(map(str, c['comparison']['seeds']))}) | "
                         f"{difference(o['difference'], o['ci95'])} | {o['p_value']:.2g} | "
                         f"{o['p_holm']:.2g} | {inside} | {c['verdict']} |")
    return lines


def methods_table(rows: dict[str, Any]) -> list[str]:
    lines = ["| method | knob | trainable | % of base | train s | eval s | seeds | pooled success % [95% CI] | "
             "per seed % | mean ± sd |", "|---|---|---:|---:|---:|---:|---|---:|---|---:|"]
    for label, r in rows.items():
        extra = f" (+{r['vector_seconds']:.0f} extraction)" if r["vector_seconds"] else ""
        spread = "" if r["spread"] is None else f" ± {100 * r['spread']:.1f}"
        lines.append(f"| {label} | {knob(r['options'])} | {r['trainable']:,} | {pct(r['share'])} | "
                     f"{r['train_seconds']:.0f}{extra} | {r['eval_seconds']:.0f} | {','.join(map(str, r['seeds']))} | "
                     f"{format_cell(r['overall'])} | "
                     f"{', '.join(pct(v) for v in r['seed_rates'].values())} | {pct(r['mean'])}{spread} |")
    return lines


def dimensions_table(rows: dict[str, Any]) -> list[str]:
    lines = ["| method | " + " | ".join(DIMENSIONS) + " | overall |", "|---|" + "---:|" * (len(DIMENSIONS) + 1)]
    for label, r in rows.items():
        lines.append(f"| {label} | " + " | ".join(format_cell(r["dimensions"].get(d)) for d in DIMENSIONS)
                     + f" | {format_cell(r['overall'])} |")
    return lines


def comparisons_table(comparisons: list[dict[str, Any]]) -> list[str]:
    lines = ["| comparison | seeds | pairs | difference, pp [95% CI] | only a / only b | p | p (Holm) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for comp in comparisons:
        o = comp["overall"]
        lines.append(f"| {comp['a']} - {comp['b']} | {','.join(map(str, comp['seeds']))} | {o['n']} | "
                     f"{difference(o['difference'], o['ci95'])} | "
                     f"{o['only_a']} / {o['only_b']} | {o['p_value']:.3g} | {o['p_holm']:.3g} |")
    return lines


def stage_times(records: list[dict[str, Any]], setting: str) -> list[str]:
    """Wall seconds of every stage (adaptation, evaluation and, for CapVector, extraction and the
    auxiliary model's evaluation), one row per method and one column per seed."""
    runs: dict[str, dict[int, float]] = {}
    notes: dict[tuple[str, int], str] = {}
    for r in records:
        if r["setting"] == setting:
            runs.setdefault(r["label"], {})[r["seed"]] = r["stage_seconds"]
            if r.get("stage_note"):  # a stage whose time is not the whole stage's, and why
                notes[(r["label"], r["seed"])] = r["stage_note"]
    seeds = sorted({s for v in runs.values() for s in v})
    lines = ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---:|" * len(seeds)]
    for label in sorted(runs, key=row_key):
        times = runs[label]
        lines.append(f"| {label} | " + " | ".join(f"{times[s]:.0f}{'*' if (label, s) in notes else ''}"
                                                    if s in times else "—" for s in seeds) + " |")
    total = sum(t for v in runs.values() for t in v.values())
    lines += ["", f"{sum(len(v) for v in runs.values())} stages, {total / 3600:.2f} h in all."]
    return lines + [f"\\* {label} seed {seed}: {note}." for (label, seed), note in notes.items()]


def markdown(summary: dict[str, Any], claims: list[dict[str, Any]], records: list[dict[str, Any]]) -> str:
    lines = ["# Adaptation study: the Panda-pretrained reference adapted to the PiPER", "",
             "Success on the PiPER perturb suite, in %. Pooled: every episode of every training seed, with a Wilson "
             "95% interval. Paired: the same episodes under both methods, pooled over the seeds both have, with "
             "Newcombe's paired 95% interval and an exact McNemar test; Holm-adjusted over each table's family. "
             f"A \"matches\" claim is reproduced when the interval's lower end is above -{100 * MARGIN:.0f} pp; a "
             "\"beats\" claim when Holm p < 0.05. The papers' figures come from other models and benchmarks: our "
             "interval containing one is a coincidence of scale, not a replication of it.", "",
             "## The seed papers' claims", "", *claims_table(claims), ""]
    for setting, block in summary.items():
        lines += [f"## {TITLES[setting]}", "", "### Methods", "", *methods_table(block["methods"]), "",
                  "### Success per dimension, pooled over seeds", "", *dimensions_table(block["methods"]), "",
                  "### Paired comparisons against full fine-tuning and LoRA at the small budget", "",
                  *comparisons_table(block["comparisons"]), ""]
        if block["sweep"]:
            lines += ["### Rank sweep (one seed)", "", *methods_table(block["sweep"]), ""]
        lines += ["### Wall seconds of every stage", "", *stage_times(records, setting), ""]
    return "\n".join(lines)
