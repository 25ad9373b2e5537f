"""The rollout engine reproduces the recorded per-episode outcomes exactly (success, steps, error).

The fixtures were written by ``tests/fixtures/record_outcomes.py`` on the per-step engine, before
any change to how the pool renders or steps; an engine that renders fewer frames or runs chunks
inside the workers must give the very same episodes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "fixtures"
ROOT = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("record_outcomes", HERE / "record_outcomes.py")
record_outcomes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record_outcomes)
CASES, outcomes = record_outcomes.CASES, record_outcomes.outcomes


@pytest.mark.parametrize("name", sorted(CASES))
def test_outcomes_match_the_recorded_fixture(name, monkeypatch):
    policy, suite, _ = CASES[name]
    if policy != "scripted" and not (ROOT / policy / "config.json").is_file():
        pytest.skip("no shipped reference")
    monkeypatch.chdir(ROOT)
    expected = json.loads((HERE / name).read_text())
    assert outcomes(policy, suite) == expected
