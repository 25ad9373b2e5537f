"""Matched trainable-parameter budgets on the reference model (the adaptation study's settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.adapters.budget import KNOBS, match_budget, trainable_parameters
from policies.vla.checkpoint import load_checkpoint

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(REFERENCE).model


@pytest.mark.parametrize("method", ["lora", "lora_sp", "gse"])
@pytest.mark.parametrize("target", [0.0251, 0.15])
def test_the_peft_methods_reach_both_budgets_within_15_percent(model, method, target):
    budget = match_budget(model, method, target)
    assert budget.within(0.15), (budget.options, budget.share)
    assert budget.trainable == trainable_parameters(model, method, budget.options)  # the method's own count
    assert budget.total == sum(p.numel() for p in model.parameters())
    knob = KNOBS[method][0]
    bigger = dict(budget.options) | {knob: budget.options[knob] + (budget.options.get("experts", 1) if method == "gse"
                                                                 else 1)}
    assert trainable_parameters(model, method, bigger) > budget.trainable  # the knob sizes the method


def test_a_budget_a_method_cannot_reach_is_reported_not_passed(model):
    """One last block of the smallest group is already about 10% of this model: 2.51% is out of reach."""
    budget = match_budget(model, "last_k", 0.0251)
    assert not budget.within(0.15) and budget.share > 0.05
    assert budget.options["layers"] == 1


def test_bad_budget_requests_are_one_line_errors(model):
    with pytest.raises(ValueError, match="no budget knob for 'clp'"):
        match_budget(model, "clp", 0.03)
    with pytest.raises(ValueError, match="target share 1.5"):
        match_budget(model, "lora", 1.5)
