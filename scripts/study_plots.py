"""The adaptation study's figures, drawn with matplotlib's object API on the Agg canvas (no display):
success per method and dimension, the paired differences, and the rank sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from study_markdown import TITLES
from study_report import DIMENSIONS


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_success(summary: dict[str, Any], path: Path) -> Path:
    """Per setting: each method's pooled success with its Wilson 95% interval and every seed's rate
    as a dot (left), and pooled success per dimension as a heat map (right)."""
    import numpy as np

    fig = _figure(15, sum(1.6 + 0.33 * len(b["methods"]) for b in summary.values()) + 0.6)
    subfigs = fig.subfigures(len(summary), 1, squeeze=False,
                             height_ratios=[len(b["methods"]) + 3 for b in summary.values()])[:, 0]
    for sub, (setting, block) in zip(subfigs, summary.items()):
        sub.suptitle(TITLES[setting], fontsize=10, x=0.01, ha="left")
        ax, heat = sub.subplots(1, 2, width_ratios=(1, 1.5))
        labels = list(block["methods"])[::-1]
        rows = [block["methods"][k] for k in labels]
        y = np.arange(len(labels))
        rates = np.array([100 * r["overall"]["rate"] for r in rows])
        low = rates - [100 * r["overall"]["ci95"][0] for r in rows]
        high = np.array([100 * r["overall"]["ci95"][1] for r in rows]) - rates
        ax.barh(y, rates, color="#9ecae1", height=0.7, xerr=[low, high], ecolor="#333333", capsize=2,
                label="pooled over seeds, 95% CI")
        for k, r in enumerate(rows):
            seeds = [100 * v for v in r["seed_rates"].values()]
            ax.scatter(seeds, [k] * len(seeds), color="#08306b", s=12, zorder=3,
                       label="one training seed" if k == 0 else None)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_xlabel("success rate (%)")
        ax.set_title("overall success, pooled over training seeds", fontsize=9, loc="left")
        ax.grid(True, axis="x", color="#e6e6e6")
        ax.set_axisbelow(True)
        ax.legend(loc="lower right", fontsize=7)
        columns = [*DIMENSIONS, "overall"]
        values = np.array([[100 * (r["overall"] if c == "overall" else r["dimensions"].get(c, {"rate": np.nan}))["rate"]
                            for c in columns] for r in rows], dtype=float)
        image = heat.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto", origin="lower")
        for (i, j), v in np.ndenumerate(values):
            heat.text(j, i, "n/a" if np.isnan(v) else f"{v:.0f}", ha="center", va="center", fontsize=7,
                      color="white" if v < 60 else "black")
        heat.set_xticks(range(len(columns)), columns, fontsize=8, rotation=20)
        heat.set_yticks(y, labels, fontsize=8)
        heat.set_xlabel("perturbation dimension (levels pooled)")
        heat.set_title("pooled success per dimension (%)", fontsize=9, loc="left")
        sub.colorbar(image, ax=heat, label="success rate (%)", shrink=0.9)
    fig.suptitle("Adaptation study: the Panda-pretrained reference adapted to the PiPER", fontsize=12)
    fig.savefig(path, format="png")
    return path


def plot_paired(summary: dict[str, Any], path: Path) -> Path | None:
    """Per setting and reference: each method minus the reference, on the same episodes, with its
    paired 95% interval; red where Holm p < 0.05."""
    panels = [(s, ref, [c for c in b["comparisons"] if c["b"] == ref])
              for s, b in summary.items() for ref in ("full", "lora@small")]
    panels = [p for p in panels if p[2]]
    if not panels:  # nothing to compare yet
        return None
    fig = _figure(9, sum(1.0 + 0.3 * len(p[2]) for p in panels) + 0.5)
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[len(p[2]) + 2 for p in panels])[:, 0]
    for ax, (setting, ref, comps) in zip(axes, panels):
        y = list(range(len(comps)))[::-1]
        diffs = [100 * c["overall"]["difference"] for c in comps]
        errors = [[d - 100 * c["overall"]["ci95"][0] for d, c in zip(diffs, comps)],
                  [100 * c["overall"]["ci95"][1] - d for d, c in zip(diffs, comps)]]
        ax.errorbar(diffs, y, xerr=errors, fmt="none", ecolor="0.5", capsize=3)
        ax.scatter(diffs, y, c=["tab:red" if c["overall"]["p_holm"] < 0.05 else "tab:blue" for c in comps], zorder=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [c["a"] for c in comps], fontsize=8)
        ax.set_xlim(-60, 60)
        ax.set_xlabel(f"success difference, method - {ref} (percentage points)")
        ax.set_title(f"{setting}: against {ref}, paired over seeds (red: Holm p < 0.05)", fontsize=9, loc="left")
        ax.grid(True, axis="x", color="#e6e6e6")
    fig.suptitle("Paired differences on the same episodes, 95% intervals (Newcombe)", fontsize=11)
    fig.savefig(path, format="png")
    return path


def plot_rank(summary: dict[str, Any], path: Path) -> Path | None:
    """The rank sweep: success against LoRA's rank and LoRA-SP's bank size, Wilson 95% intervals."""
    sweep = summary.get("single", {}).get("sweep", {})
    if not sweep:
        return None
    fig = _figure(6.5, 4)
    ax = fig.add_subplot()
    for method, name in (("lora", "LoRA (rank)"), ("lora_sp", "LoRA-SP (bank size)")):
        rows = sorted(((int(k.split("=")[1]), v["overall"]) for k, v in sweep.items() if k.split()[1] == method))
        if not rows:
            continue
        x = [r for r, _ in rows]
        rates = [100 * c["rate"] for _, c in rows]
        errors = [[v - 100 * c["ci95"][0] for v, (_, c) in zip(rates, rows)],
                  [100 * c["ci95"][1] - v for v, (_, c) in zip(rates, rows)]]
        ax.errorbar(x, rates, yerr=errors, marker="o", capsize=3, label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks([4, 16, 64], ["4", "16", "64"])
    ax.set_ylim(0, 100)
    ax.set_xlabel("rank (LoRA) or bank size (LoRA-SP), log scale")
    ax.set_ylabel("success rate (%)")
    ax.set_title("Rank sweep, single task, seed 0 (n = 180 each, Wilson 95% CI)", fontsize=10)
    ax.grid(True, color="#e6e6e6")
    ax.legend()
    fig.savefig(path, format="png")
    return path
