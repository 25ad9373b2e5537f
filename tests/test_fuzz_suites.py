"""Fuzzing the suite parser: truncated, bit-flipped, wrong-typed and oversized suite files.

Every input ends in a valid suite or in the one-line error with exit code 2, never in a traceback,
and never writes anything. Inputs go through ``simeval run --episode <none>``: the whole path of
a real run up to choosing episodes, which stops before any directory is touched.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simeval.cli import main
from simeval.suites import KEYS, SUITE_DIR, SuiteError, load_suite

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
VALID = [p.read_bytes() for p in sorted(SUITE_DIR.glob("*.yaml"))]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["all", "nominal", "camera:3", "*:1-5", "camera:1-999999999",
                                                           "light:2,camera:1", "PushButton", "Panda", "Piper"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
suites = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), values, max_size=10)


def _outcome(path: Path, tmp_path: Path, capsys) -> str:
    """Run the CLI on the suite file; assert the one-line contract and that nothing was written."""
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["run", "--policy", "scripted", "--suite", str(path), "--episode", "no/such/episode",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert err.startswith("simeval: error: ") and "\n" not in err and len(err) < 1100, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return err


def _check(data: bytes, tmp_path: Path, capsys) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    err = _outcome(path, tmp_path, capsys)
    if "no episode 'no/such/episode'" in err:  # a valid suite: it must also expand
        assert load_suite(str(path)).episode_specs()
    else:
        with pytest.raises(SuiteError):
            load_suite(str(path))


@FUZZ
@given(data=suites)
def test_wrong_typed_suites(data, tmp_path, capsys):
    _check(yaml.safe_dump(data, allow_unicode=True).encode(), tmp_path, capsys)


@FUZZ
@given(base=st.sampled_from(VALID), cut=st.floats(0, 1))
def test_truncated_suites(base, cut, tmp_path, capsys):
    _check(base[: int(len(base) * cut)], tmp_path, capsys)


@FUZZ
@given(base=st.sampled_from(VALID), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1,
                                                    max_size=4))
def test_bit_flipped_suites(base, flips, tmp_path, capsys):
    data = bytearray(base)
    for where, bit in flips:
        data[min(int(where * len(data)), len(data) - 1)] ^= 1 << bit
    _check(bytes(data), tmp_path, capsys)


@pytest.mark.parametrize("text", [
    "name: big\ntasks: all\nrobots: all\nperturbations: ['*:1-5']\nepisodes: 10000\n",  # 7 million episodes
    "name: big\ntasks: all\nrobots: all\nperturbations: [nominal]\nepisodes: 99999999999999999999\n",
    "name: big\ntasks: all\nrobots: all\nperturbations: ['camera:1-99999999999']\n",
    "name: big\ntasks: all\nrobots: all\nperturbations: [nominal]\nimage_size: 100000\n",
    "name: big\ntasks: all\nrobots: all\nperturbations: [nominal]\nmax_steps: 1000000000\n",
    "name: " + "x" * 100_000 + "\ntasks: all\nrobots: all\nperturbations: [nominal]\n",
    "name: big\ntasks: all\nrobots: all\nperturbations: [" + ", ".join(["nominal"] * 5000) + "]\n",
    "[" * 50_000 + "]" * 50_000,  # nested past the parser's recursion limit
    "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: &d [*c, *c]\ne: &e [*d, *d]\nf: &f [*e, *e]\n"
    "name: bomb\ntasks: all\nrobots: all\nperturbations: [*f, *f]\n",  # aliases that expand
    "name: x\ntasks: all\nrobots: all\nperturbations: [nominal]\n" + "#" * 2_000_000,  # a file too large
    "name: x\ntasks: all\nrobots: all\nperturbations: [\"nominal\\nlight:2\"]\n",  # a newline in a value
])
def test_oversized_suites(text, tmp_path, capsys):
    _check(text.encode(), tmp_path, capsys)


def test_random_bytes(tmp_path, capsys):
    rng = random.Random(0)
    for _ in range(40):
        _check(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))), tmp_path, capsys)
