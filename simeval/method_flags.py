"""``simeval finetune``'s method options as flags, generated from the method configs so that the
flags, their types and the errors that list them cannot drift from the code; and the argparse types
every flag of the CLI shares (a boolean that is only true or false, a float within its range)."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def boolean(text: str) -> bool:
    """A boolean option's value: true or false, nothing else (``maybe`` is an error, not false)."""
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value == "true"


def bounded_float(low: float = -math.inf, high: float = math.inf, low_open: bool = False,
                  high_open: bool = False) -> Callable[[str], float]:
    """A float flag's type: a finite number within [low, high] (``low_open``/``high_open``: excluded),
    so that ``inf``, ``nan`` or ``1e300`` is one line naming the flag, not an OverflowError later."""
    shown = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
        if not math.isfinite(value) or not inside:
            where = "a finite number" if math.isinf(low) and math.isinf(high) else f"a finite number in {shown}"
            raise argparse.ArgumentTypeError(f"expected {where}, got {text!r}")
        return value

    parse.__name__ = "float"  # argparse names the type in its own messages
    return parse


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# What a method option means; its flag, type, default and methods come from the method configs.
METHOD_HELP = {
    "rank": "LoRA rank r; GSE total rank over all experts",
    "alpha": "LoRA / LoRA-SP scale alpha; CapVector merge coefficient",
    "rslora": "LoRA: alpha / sqrt(r) scaling",
    "dropout": "LoRA input dropout",
    "bank": "LoRA-SP: size N of the shared vector bank",
    "eta": "LoRA-SP: energy threshold in (0, 1]; GSE: expert scale",
    "experts": "GSE: experts E (shared + routed)",
    "top_k": "GSE: routed experts per token",
    "layers": "last_k: layers trained per group",
    "tau": "clp: CKA threshold that groups layers into blocks",
    "fraction": "clp: largest fraction of a group's depth pruned",
    "vector": "CapVector: capability vector file (default: extracted from --data first)",
    "lam": "CapVector: orthogonality weight lambda",
    "targets": "regex on module names to adapt (default: attention and MLP projections)",
    "groups": "module groups to adapt (comma-separated)",
    "trainable": "extra parameter-name regexes that also train (comma-separated)",
    "router_dropout": "LoRA-SP: dropout on the router's input",
    "scores": "LoRA-SP: router scores softplus, relu or linear",
    "k_rule": "LoRA-SP: energy rule paper or released",
    "spec_weight": "LoRA-SP: weight of the spectral loss",
    "balance_weight": "LoRA-SP / GSE: weight of the load-balance loss",
    "z_weight": "LoRA-SP: weight of the router z-loss",
    "track_rank": "LoRA-SP: record the effective ranks while training",
    "shared": "GSE: shared experts (always active)",
    "rho": "GSE: rho of the routing",
    "adjust": "GSE: c in W_res = W - c sum_i s_i B_i A_i",
    "milora": "GSE: initialise experts from the smallest singular components",
    "grad_balance": "GSE: gradient-scale balancing, s_i = s_base mean_j tr(S_j) / tr(S_i)",
    "s_base": "GSE: s_base of gradient-scale balancing",
}
# a method's float options (scales, weights, thresholds) are finite and within +-1e6 here; their exact
# ranges are the method config's, which validates itself
PARSERS = {int: int, float: bounded_float(-1e6, 1e6), bool: boolean, str: str, tuple: _comma_list}


def method_flags() -> dict[str, dict]:
    """Every method option as a CLI flag: {name: {"type", "methods"}}, read from the method configs,
    so that the flags and the errors that list them cannot drift from the code."""
    from policies.adapters.registry import PACKAGES, get_method

    flags: dict[str, dict] = {}
    for method in PACKAGES:
        for name, (kind, _) in get_method(method).options().items():
            entry = flags.setdefault(name, {"type": kind, "methods": []})
            if entry["type"] is not kind:
                raise TypeError(f"method option {name} has type {kind.__name__} in {method} but "
                                f"{entry['type'].__name__} elsewhere")
            entry["methods"].append(method)
    return flags


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_method_flags(parser: argparse.ArgumentParser) -> None:
    from policies.adapters.registry import PACKAGES

    group = parser.add_argument_group("method options (given only when set; each method takes its own)")
    for name, entry in method_flags().items():
        kind = entry["type"]
        shown = "true/false" if kind is bool else ("comma-separated" if kind is tuple else kind.__name__)
        methods = "all methods" if len(entry["methods"]) == len(PACKAGES) else ", ".join(entry["methods"])
        text = f"{METHOD_HELP.get(name, name)} [{shown}; {methods}]".replace("%", "%%")
        group.add_argument(flag_of(name), dest=f"opt_{name}", metavar=name.upper(), type=PARSERS[kind], default=None,
                           help=text)


