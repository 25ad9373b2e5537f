"""The files simeval reads back: one episode identity for check and compare, one id per record,
results and baselines checked against their schema.

Each numbered test failed before its fix: ``compare`` paired two runs of different seeds (2), a
duplicated line of ``episodes.jsonl`` was counted or kept silently (3), and a baseline of the wrong
shape crashed ``check`` or printed a figure it had coerced (7). Run directories are written here
directly (records, run.json, results.json), so no episode is simulated.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simeval import worlds
from simeval.check import baseline_from_results
from simeval.cli import main
from simeval.metrics import build_results
from simeval.records import EpisodeRecord, variant_cell
from simeval.rundir import claim
from simeval.suites import Suite, parse_suite

TINY = {"name": "tiny", "tasks": ["PushButton", "PutCubeOnPlate"], "robots": ["Panda"],
        "perturbations": ["nominal", "layout:2"], "episodes": 2, "max_steps": 40, "seed": 3, "image_size": 32}


def tiny_suite(**changes) -> Suite:
    return parse_suite({**TINY, **changes})


def write_run(out: Path, suite: Suite, wins: Callable[[int], bool] = lambda i: i % 3 != 0,
              policy: str = "scripted") -> Path:
    """A finished run of ``suite`` as ``simeval run`` leaves it (marker, run.json, episodes.jsonl,
    results.json), with episode ``i`` succeeding when ``wins(i)``; failures carry no error."""
    records = []
    for i, spec in enumerate(suite.episode_specs()):
        dimension, level = variant_cell(spec.variant)
        records.append(EpisodeRecord(id=spec.id, task=spec.task, robot=spec.robot,
                                     family=worlds.family(spec.world, spec.task), perturbation=spec.variant,
                                     dimension=dimension, level=level, params={}, seed=spec.seed,
                                     success=wins(i), steps=10 + i, instruction="pousse le bouton é",
                                     wall_s=0.5).to_dict())
    claim(out)
    (out / "run.json").write_text(json.dumps({"suite": suite.to_dict(), "policy": policy, "episode": None},
                                             indent=1) + "\n")
    (out / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    results = build_results(records, suite=suite.to_dict(), policy=policy, timing={"wall_s": 1.0}, versions={})
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("simeval: error: ") and "\n" not in err, err
    return err


# ------------------------------------------------------------------ 2. one episode identity
def test_compare_refuses_two_seeds_of_one_suite_file(tmp_path, capsys):
    a = write_run(tmp_path / "a", tiny_suite())
    b = write_run(tmp_path / "b", tiny_suite(seed=4), wins=lambda i: True)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 2
    err = one_line_error(capsys)
    assert "not runs of the same episodes" in err and "seed" in err and "3" in err and "4" in err
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("changes, words", [({"seed": 4}, "differs in seed"),
                                            ({"max_steps": 80}, "differs in max_steps"),
                                            ({"image_size": 64}, "differs in image_size")])
def test_check_and_compare_refuse_with_the_same_identity(changes, words, tmp_path, capsys):
    a, b = write_run(tmp_path / "a", tiny_suite()), write_run(tmp_path / "b", tiny_suite(**changes))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 2
    compare_err = one_line_error(capsys)
    assert main(["check", "--run", str(a), "--baseline", str(b)]) == 2
    check_err = one_line_error(capsys)
    assert words in compare_err and words in check_err

    def clause(err: str, names: tuple[str, str]) -> str:  # the reason, the runs' names left out
        reason = err.split("same episodes: ", 1)[1].split(";")[0]
        return reason.replace(names[0], "A").replace(names[1], "B")

    assert clause(compare_err, (str(a), str(b))) == clause(check_err, ("the run", "the baseline"))


def test_records_of_other_seeds_are_not_paired_without_a_run_json(tmp_path, capsys):
    """No run.json to compare: the records' own seeds still tell the episodes apart."""
    a, b = write_run(tmp_path / "a", tiny_suite()), write_run(tmp_path / "b", tiny_suite(seed=4))
    for run in (a, b):
        (run / "run.json").unlink()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 2
    err = one_line_error(capsys)
    assert "has seed" in err and str(a) in err and str(b) in err and "8 episode id(s)" in err


def test_check_refuses_a_baseline_run_whose_records_are_other_episodes(tmp_path, capsys):
    """The summaries agree (same suite) but the baseline's records are of other seeds: no pairing."""
    a, b = write_run(tmp_path / "a", tiny_suite()), write_run(tmp_path / "b", tiny_suite())
    other = {json.loads(line)["id"]: json.loads(line) for line in
             (write_run(tmp_path / "c", tiny_suite(seed=9)) / "episodes.jsonl").read_text().splitlines()}
    lines = [json.loads(line) for line in (b / "episodes.jsonl").read_text().splitlines()]
    (b / "episodes.jsonl").write_text("".join(json.dumps({**r, "seed": other[r["id"]]["seed"]}) + "\n"
                                              for r in lines))
    assert main(["check", "--run", str(a), "--baseline", str(b)]) == 2
    assert "has seed" in one_line_error(capsys)
    assert main(["check", "--run", str(a), "--baseline", str(b), "--allow-different-suite"]) == 0
    out = capsys.readouterr().out
    assert "unpaired check" in out and "one-sided Fisher" in out and "McNemar" not in out


def test_runs_of_the_same_episodes_still_pair(tmp_path, capsys):
    a = write_run(tmp_path / "a", tiny_suite())
    b = write_run(tmp_path / "b", tiny_suite(episodes=1, perturbations=["nominal"]), wins=lambda i: True,
                  policy="random")
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    result = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert result["comparisons"][0]["pairs"] == 2  # the two nominal episodes both have


# ------------------------------------------------------------------ 3. one record per episode id
def _duplicate_last(run: Path) -> tuple[int, int]:
    """Append a copy of the first record (success flipped): the lines of both copies."""
    lines = (run / "episodes.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    (run / "episodes.jsonl").write_text("\n".join(lines + [json.dumps({**first, "success": not first["success"]})])
                                        + "\n")
    return 1, len(lines) + 1


@pytest.mark.parametrize("reader", ["resume", "compare", "check"])
def test_a_duplicated_episode_id_is_an_error_in_every_reader(reader, tmp_path, capsys):
    suite_file = tmp_path / "tiny.yaml"
    suite_file.write_text(json.dumps(TINY))
    a, b = write_run(tmp_path / "a", tiny_suite()), write_run(tmp_path / "b", tiny_suite())
    first, second = _duplicate_last(a)
    before = (a / "episodes.jsonl").read_bytes(), (a / "results.json").read_bytes()
    argv = {"resume": ["run", "--policy", "scripted", "--suite", str(suite_file), "--out", str(a), "--resume",
                       "--workers", "1", "--video", "none"],
            "compare": ["compare", str(a), str(b), "--out", str(tmp_path / "cmp")],
            "check": ["check", "--run", str(a), "--baseline", str(b)]}[reader]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert f"{a / 'episodes.jsonl'}" in err and f"lines {first} and {second}" in err and "twice" in err
    assert ((a / "episodes.jsonl").read_bytes(), (a / "results.json").read_bytes()) == before


def test_resume_of_a_complete_run_reads_each_episode_once(tmp_path, capsys):
    suite_file = tmp_path / "tiny.yaml"
    suite_file.write_text(json.dumps(TINY))
    a = write_run(tmp_path / "a", tiny_suite())
    assert main(["run", "--policy", "scripted", "--suite", str(suite_file), "--out", str(a), "--resume",
                 "--workers", "1", "--video", "none"]) == 0
    results = json.loads((a / "results.json").read_text())
    assert results["overall"]["n"] == results["counts"]["episodes"] == 8
    assert "8 episodes" not in capsys.readouterr().err


# ------------------------------------------------------------------ 7. results and baselines have a schema
def _baseline(tmp_path: Path) -> tuple[Path, dict]:
    run = write_run(tmp_path / "run", tiny_suite())
    return run, baseline_from_results(json.loads((run / "results.json").read_text()))


@pytest.mark.parametrize("damage, path, expected", [
    (lambda b: b.update(counts=5), "counts", "expected object, got 5"),
    (lambda b: b["counts"].update(episodes="8"), "counts.episodes", 'expected integer, got "8"'),
    (lambda b: b["overall"].update(n=8.0), "overall.n", "expected integer, got 8.0"),
    (lambda b: b["overall"].update(successes=True), "overall.successes", "expected integer, got true"),
    (lambda b: b["by_level"].update({"layout:2": [4, 2]}), "by_level[layout:2]", "expected object, got a list"),
    (lambda b: b.pop("overall"), "the top level", "missing key 'overall'"),
    (lambda b: b["suite"].update(seed="3"), "suite.seed", 'expected integer, got "3"'),
    (lambda b: b["overall"].update(successes=9), "overall", "successes 9 exceed n 8"),
    (lambda b: b["counts"].update(episodes=9), "counts.episodes", "but overall.n is 8"),
    (lambda b: b.update(schema="other/1"), "schema", "expected a string matching"),
])
def test_a_baseline_of_the_wrong_shape_is_one_line_naming_file_key_and_expectation(damage, path, expected,
                                                                                     tmp_path, capsys):
    run, baseline = _baseline(tmp_path)
    damage(baseline)
    file = tmp_path / "baseline.json"
    file.write_text(json.dumps(baseline))
    assert main(["check", "--run", str(run), "--baseline", str(file)]) == 2
    err = one_line_error(capsys)
    assert f"--baseline {file}: {path}: " in err and expected in err, err
    assert "the run has 8 episodes, the baseline 8" not in err


@pytest.mark.parametrize("text, words", [
    ('{"overall": {"n": NaN, "successes": 1}}', "NaN is not a number JSON allows"),
    ('{"overall": {"n": 1e999, "successes": 1}}', "too large"),
    ('{"overall": {"n": 8, "n": 4, "successes": 1}}', "key 'n' appears twice"),
    ('{"overall": ' * 100_000, "nested too deeply"),
    ('{"overall": {"n": 100000000000000000000, "successes": 1}}', "overall.n: expected 0..1000000000"),
])
def test_a_results_file_that_is_not_strict_json_is_refused(text, words, tmp_path, capsys):
    run = write_run(tmp_path / "run", tiny_suite())
    (run / "results.json").write_text(text)
    assert main(["check", "--run", str(run), "--baseline", str(tmp_path / "x.json")]) == 2
    err = one_line_error(capsys)
    assert f"--run {run / 'results.json'}: " in err and words in err, err


def test_every_results_file_simeval_writes_fits_the_schema(tmp_path):
    from simeval.check import validate_results

    for path in sorted(Path(__file__).resolve().parents[1].glob("results/**/*results.json")) + \
            sorted(Path(__file__).resolve().parents[1].glob("results/baselines/*.json")):
        validate_results(json.loads(path.read_text()), str(path))
    validate_results(json.loads((write_run(tmp_path / "r", tiny_suite()) / "results.json").read_text()), "r")


# ------------------------------------------------------------------ the validator reads JSON Schema as the standard does
_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(-2, 2, allow_nan=False)
                     | st.text(max_size=4) | st.sampled_from(["simeval.results/1", "tiny", "x" * 1001]),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                         st.sampled_from(["n", "successes", "errors", "rate", "ci95", "overall", "counts", "episodes",
                                          "suite", "name", "seed", "id", "success", "steps", "level", "by_level",
                                          "camera:3", "format", "policy", "schema"]), inner, max_size=5),
                     max_leaves=15)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(value=_json, which=st.sampled_from(["RECORD", "RESULTS", "RUN_META", "MARKER"]))
def test_the_validator_agrees_with_the_jsonschema_package(value, which):
    """simeval's small validator (fast enough for a log of 100,000 records) accepts exactly what
    the reference implementation accepts, with "integer" meaning an int (not 8.0, not true)."""
    from simeval import schemas

    schema, reference = getattr(schemas, which), _reference(which)
    for sample in (value, {"overall": {"n": 2, "successes": 1}, "suite": value}, {"id": "x", "success": True,
                                                                                  "steps": 1, "level": value}):
        assert (schemas.first_error(sample, schema) is None) == reference.is_valid(sample), (which, sample)


@functools.cache
def _reference(which: str):
    jsonschema = pytest.importorskip("jsonschema")
    from simeval import schemas

    base = jsonschema.Draft202012Validator
    strict = jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)))
    return strict(getattr(schemas, which))
