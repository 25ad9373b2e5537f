"""The adaptation study's tables from its stage files alone: success pooled over training seeds with
Wilson intervals, overall and per dimension; each seed's rate, their mean and spread; paired
comparisons (``simeval.compare``) against full fine-tuning and against LoRA; the rank sweep; and
the seed papers' claims, each tested on the same episodes. No training or evaluation happens here,
so the report can be redrawn at any point of a study that is still running."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIMENSIONS = ("nominal", "camera", "robot_init", "language", "light", "background", "noise", "layout")
REFERENCES = ("full", "lora@small")  # what every method is compared against
MARGIN = 0.05  # "matches": the paired 95% interval's lower end above -5 percentage points
AUXILIARY = "capvector-auxiliary"
ORDER = ("none", "full", "lora@small", "lora_sp@small", "gse@small", "last_k@small", "lora@large", "lora_sp@large",
         "gse@large", "last_k@large", "clp", "capvector", AUXILIARY)  # the tables' rows, in this order


def load_stages(stages: Path) -> list[dict[str, Any]]:
    return [json.loads(f.read_text()) for f in sorted(stages.rglob("*.json"))]


def outcomes(evaluation: dict[str, Any]) -> dict[str, tuple[bool, dict]]:
    """{episode id: (success, a record with the id's variant)}: what ``simeval.compare`` pairs."""
    return {i: (bit == "1", {"id": i, "perturbation": i.split("/")[2]})
            for i, bit in zip(evaluation["ids"], evaluation["success"])}


def _cell(oks: list[bool]) -> dict[str, Any]:
    """simeval's cell (counts, rate, Wilson 95% interval) of these episodes' successes."""
    from simeval.metrics import Cell

    return Cell.of({"success": ok} for ok in oks).to_dict()


def base_total(records: list[dict[str, Any]]) -> int:
    """The base model's parameters (what full fine-tuning trains): shares are of the base, as the
    budgets are (an adapted model's own total also counts its adapter)."""
    full = [r for r in records if r["method"] == "full" and "trainable" in r]
    return full[0]["trainable"] if full else max(r.get("total", 1) for r in records)


def groups(records: list[dict[str, Any]], setting: str) -> dict[str, list[dict[str, Any]]]:
    """A setting's runs by label. CapVector's auxiliary fine-tune is a method of its own, whose
    training cost is its own fine-tune (``auxiliary_seconds``), not the merged model's."""
    out: dict[str, list[dict]] = {}
    for r in records:
        if r["setting"] != setting:
            continue
        out.setdefault(r["label"], []).append(r)
        if "auxiliary" in r:
            aux = r["auxiliary"]
            out.setdefault(AUXILIARY, []).append({**r, "label": AUXILIARY, "eval": aux["eval"],
                                                  "train_seconds": aux["auxiliary_seconds"], "vector_seconds": 0.0})
    return out


def method_row(runs: list[dict[str, Any]], total: int) -> dict[str, Any]:
    from simeval.records import variant_cell

    dims: dict[str, list[bool]] = {}
    for run in runs:
        for i, bit in zip(run["eval"]["ids"], run["eval"]["success"]):
            dims.setdefault(variant_cell(i.split("/")[2])[0], []).append(bit == "1")
    rates = {run["seed"]: run["eval"]["successes"] / run["eval"]["n"] for run in runs}
    return {"seeds": sorted(rates), "seed_rates": {str(s): rates[s] for s in sorted(rates)},
            "mean": statistics.mean(rates.values()),
            "spread": statistics.stdev(rates.values()) if len(rates) > 1 else None,
            "overall": _cell([o for v in dims.values() for o in v]),
            "dimensions": {d: _cell(dims[d]) for d in DIMENSIONS if d in dims},
            "trainable": runs[0].get("trainable", 0),
            "share": runs[0]["trainable"] / total if "trainable" in runs[0] else None,
            "options": runs[0].get("options", {}),
            "train_seconds": statistics.mean(r.get("train_seconds", 0.0) for r in runs),
            "vector_seconds": statistics.mean(r.get("vector_seconds", 0.0) for r in runs),
            "eval_seconds": statistics.mean(r["eval"]["wall_s"] for r in runs)}


def paired(runs: dict[str, list[dict[str, Any]]], a: str, b: str) -> dict[str, Any] | None:
    """``a`` against ``b`` on the same episodes, pooled over the training seeds both have; the
    unadapted base, which has no training seed, pairs with each of the other's. Overall and per dimension."""
    from simeval.compare import compare_outcomes

    seeds = {k: {r["seed"]: r for r in runs[k]} for k in (a, b)}
    trained = b if a == "none" else a if b == "none" else None
    shared = sorted(seeds[trained]) if trained else sorted(set(seeds[a]) & set(seeds[b]))
    if not shared:  # no seed in common yet: nothing to pair
        return None
    pick = lambda k, s: seeds[k].get(s) or next(iter(seeds[k].values()))  # noqa: E731
    comparison = compare_outcomes({k: [outcomes(pick(k, s)["eval"]) for s in shared] for k in (a, b)})["comparisons"][0]
    comparison["seeds"] = shared
    return comparison


def _adjust(comparisons: list[dict[str, Any]]) -> None:
    """Holm over the overall cells of one family (each setting's comparisons; the claims)."""
    from simeval.paired import holm

    for comp, adjusted in zip(comparisons, holm([c["cells"][0]["p_value"] for c in comparisons])):
        comp["overall"] = {**comp["cells"][0], "p_holm": adjusted}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting: every method's row, and its paired comparisons against full fine-tuning and LoRA
    at the small budget, Holm-adjusted over the setting's family. The rank sweep stays out of the
    family: it has its own section and claim."""
    total = base_total(records)
    out: dict[str, Any] = {}
    for setting in ("single", "multi"):
        runs = groups(records, setting)
        if not runs:
            continue
        main = {k: v for k, v in runs.items() if not k.startswith("sweep")}
        order = sorted(main, key=row_key)
        comparisons = [paired(runs, a, ref) for ref in REFERENCES if ref in main for a in order
                       if a != ref and not (a in REFERENCES and REFERENCES.index(a) < REFERENCES.index(ref))]
        comparisons = [c for c in comparisons if c]
        _adjust(comparisons)
        out[setting] = {"methods": {k: method_row(main[k], total) for k in order},
                        "comparisons": comparisons,
                        "sweep": {k: method_row(runs[k], total) for k in sorted(set(runs) - set(main), key=row_key)}}
    return out


@dataclass(frozen=True)
class Claim:
    """One claim of a seed paper, tested as ``a`` against ``b`` on the same episodes.

    ``kind`` "beats": reproduced when ``a`` is better at Holm p < 0.05; "matches": reproduced when
    the paired interval's lower end is above -MARGIN (non-inferiority)."""

    paper: str
    claim: str
    figure: str  # the paper's own figure, as reported
    setting: str
    a: str
    b: str  # a label, or "best peft" (the best other PEFT method at the small budget, picked afterwards)
    kind: str
    size: float | None = None  # the paper's effect, in percentage points, to check against our interval

    def __post_init__(self) -> None:
        if self.kind not in ("beats", "matches"):
            raise ValueError(f"claim {self.claim!r}: kind {self.kind!r}; valid kinds: beats, matches")


CLAIMS = (
    Claim("VLA-GSE", "beats full fine-tuning under shift", "+6.3 pp (81.2% on LIBERO-Plus, zero-shot)",
          "single", "gse@small", "full", "beats", 6.3),
    Claim("VLA-GSE", "beats full fine-tuning under shift, multi-task", "+6.3 pp (LIBERO-Plus)",
          "multi", "gse@small", "full", "beats", 6.3),
    Claim("VLA-GSE", "beats the best other PEFT method at its budget", "+4.4 pp (LIBERO-Plus)",
          "single", "gse@small", "best peft", "beats", 4.4),
    Claim("LoRA-SP", "matches or beats full fine-tuning", "matches or beats FFT (4 real PiPER tasks)",
          "single", "lora_sp@small", "full", "matches"),
    Claim("LoRA-SP", "beats LoRA multi-task", "+23.3 pp (pi0), +31.6 pp (SmolVLA) over LoRA r=128",
          "multi", "lora_sp@small", "lora@small", "beats", 23.3),
    Claim("Fewer layers (CLP)", "prunes layers with little loss against full fine-tuning",
          "pi0 94.6 -> 93.9, SmolVLA 77.15 -> 76.75 (LIBERO); 28-64% less training time",
          "single", "clp", "full", "matches", -0.7),
    Claim("Fewer layers (last k)", "tuning only the last layers suffices", "the seed summary's reading; no figure",
          "single", "last_k@small", "full", "matches"),
    Claim("CapVector", "the merged model reaches the auxiliary-objective model's success",
          "reaches the auxiliary baseline at plain fine-tuning cost", "single", "capvector", AUXILIARY, "matches"),
)


def verdict(kind: str, difference: float, low: float, high: float, p_holm: float) -> str:
    """Reproduced, not reproduced, or not separable at this n (see :class:`Claim`)."""
    if kind == "beats":
        if p_holm < 0.05:
            return "reproduced" if difference > 0 else "not reproduced (the opposite, significantly)"
        return "not separable at this n"
    if low > -MARGIN:
        return f"reproduced (within {100 * MARGIN:.0f} pp)"
    if high < -MARGIN or (p_holm < 0.05 and difference < 0):
        return "not reproduced (significantly worse)"
    return "not separable at this n"


def _best_peft(rows: dict[str, Any], exclude: str) -> str | None:
    peft = [k for k in rows if k.endswith("@small") and k != exclude]
    return max(peft, key=lambda k: rows[k]["overall"]["rate"]) if peft else None


def check_claims(records: list[dict[str, Any]], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every claim whose methods have run, with our paired figure; Holm over the claims' family."""
    rows, comparisons = [], []
    for claim in CLAIMS:
        block = summary.get(claim.setting)
        runs = groups(records, claim.setting)
        b = _best_peft(block["methods"], claim.a) if block and claim.b == "best peft" else claim.b
        if not block or claim.a not in runs or b not in runs:
            rows.append({**claim.__dict__, "b": b, "status": "not run yet"})
            continue
        comparison = paired(runs, claim.a, b)
        if comparison is None:
            rows.append({**claim.__dict__, "b": b, "status": "no training seed in common yet"})
            continue
        comparisons.append(comparison)
        rows.append({**claim.__dict__, "b": b, "comparison": comparison})
    _adjust(comparisons)
    for row in rows:
        if "comparison" in row:
            c = row["comparison"]["overall"]
            row["verdict"] = verdict(row["kind"], c["difference"], *c["ci95"], c["p_holm"])
            row["size_in_ci"] = None if row["size"] is None else c["ci95"][0] <= row["size"] / 100 <= c["ci95"][1]
    rows.append(rank_claim(summary, records))
    cost = capvector_cost(records)
    if cost:
        rows.append(cost)
    return rows


def rank_claim(summary: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """LoRA-SP's robustness to rank: each method's range of success over the sweep's ranks (bank
    sizes), with a paired test between its best and worst rank (picked afterwards; Holm over the two).
    Reproduced when LoRA's rank matters (Holm p < 0.05) and LoRA-SP's does not, with a smaller range."""
    from simeval.paired import holm

    claim = {"paper": "LoRA-SP", "claim": "robust to the rank (bank size) where LoRA is not",
             "figure": "rank-adaptive: no rank to tune", "setting": "single", "kind": "rank"}
    sweep = summary.get("single", {}).get("sweep", {})
    runs = groups(records, "single")
    found: dict[str, dict] = {}
    for method in ("lora", "lora_sp"):
        rows = {k: v for k, v in sweep.items() if k.split()[1] == method}
        if len(rows) < 2:
            return {**claim, "status": "not run yet"}
        best = max(rows, key=lambda k: rows[k]["overall"]["rate"])
        worst = min(rows, key=lambda k: rows[k]["overall"]["rate"])
        cell = paired(runs, best, worst)["cells"][0]  # the sweep runs one seed: always shared
        found[method] = {"ranks": {k.split()[2]: v["overall"]["rate"] for k, v in rows.items()},
                         "range": cell["difference"], "ci95": cell["ci95"], "p_value": cell["p_value"],
                         "best": best, "worst": worst}
    for found_row, adjusted in zip(found.values(), holm([f["p_value"] for f in found.values()])):
        found_row["p_holm"] = adjusted
    lora, sp = found["lora"], found["lora_sp"]
    if lora["p_holm"] < 0.05 and sp["p_holm"] >= 0.05 and sp["range"] < lora["range"]:
        claim["verdict"] = "reproduced"
    elif sp["p_holm"] < 0.05 and sp["range"] >= lora["range"]:
        claim["verdict"] = "not reproduced"
    else:
        claim["verdict"] = "not separable at this n"
    return {**claim, "sweeps": found}


def row_key(label: str) -> tuple[int, str, int]:
    """Where a label's row goes in every table: ORDER's methods first, then any other, then the rank
    sweep by method and by size as a number ("sweep lora rank=4" before "sweep lora rank=16")."""
    if label.startswith("sweep "):
        _, method, knob = label.split()
        return len(ORDER) + 1, method, int(knob.partition("=")[2])
    return (ORDER.index(label), "", 0) if label in ORDER else (len(ORDER), label, 0)


def capvector_cost(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """CapVector's cost claim: the merged model's downstream fine-tune against the plain fine-tune
    its own extraction ran in the same process, with identical settings (the full fine-tuning stages
    may have run in another session, and sessions on this shared machine differ up to 3x in speed);
    summed over the seeds. The extraction (two fine-tunes) is paid once. Reproduced when the merged
    model's fine-tune takes at most 1.25x the plain one's seconds (a shared machine's timing noise)."""
    runs = [r for r in groups(records, "single").get("capvector", []) if r.get("auxiliary")]
    if not runs:
        return None
    total = lambda key: sum(key(r) for r in runs)  # noqa: E731
    merged, plain = total(lambda r: r["train_seconds"]), total(lambda r: r["auxiliary"]["plain_seconds"])
    return {"paper": "CapVector", "claim": "at plain fine-tuning cost", "figure": "the cost of plain SFT",
            "setting": "single", "kind": "cost", "seeds": sorted(r["seed"] for r in runs),
            "seconds": {"capvector": merged, "plain": plain,
                        AUXILIARY: total(lambda r: r["auxiliary"]["auxiliary_seconds"]),
                        "extraction": total(lambda r: r["vector_seconds"])},
            "per_seed": {str(r["seed"]): round(r["train_seconds"] / r["auxiliary"]["plain_seconds"], 2) for r in runs},
            "verdict": "reproduced" if merged <= 1.25 * plain else "not reproduced"}
