"""What a user points simeval at is never deleted or silently trusted; bad input gets one line, exit 2.

Each test here failed before its fix: ``--force`` on someone's directory, a torn ``episodes.jsonl``,
``--out`` naming a file, ``check`` across suites, non-boolean booleans, method flags that drift
from the configs, duplicate variants, and a replaced worker nobody was told about.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from simeval.cli import _build_parser, flag_of, main, method_flags
from simeval.harness import RunRequest, execute
from simeval.observers import RoundHook
from simeval.rundir import MARKER
from simeval.suites import SuiteError, load_suite, parse_suite

SUITE = """\
name: tiny
tasks: [PushButton, PutCubeOnPlate]
robots: [Panda]
perturbations: [nominal, "layout:2"]
episodes: 1
max_steps: 40
seed: 3
image_size: 32
"""


@pytest.fixture
def suite_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SUITE)
    return path


def _run_cli(suite_file: Path, out: Path, *extra: str) -> int:
    return main(["run", "--policy", "scripted", "--suite", str(suite_file), "--out", str(out), "--workers", "1",
                 "--video", "none", *extra])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("simeval: error: ") and err.count("\n") == 0, err
    return err


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ 1. --force removes only simeval's own run
def test_force_refuses_a_directory_simeval_did_not_write(suite_file, tmp_path, capsys):
    work = tmp_path / "mywork"
    work.mkdir()
    (work / "thesis.txt").write_text("x")
    assert _run_cli(suite_file, work, "--force") == 2
    err = _one_line_error(capsys)
    assert "not a simeval run directory" in err and "pass --force" not in err
    assert (work / "thesis.txt").read_text() == "x"
    assert _run_cli(suite_file, work) == 2  # and without --force the message does not suggest it
    assert "--force removes only" in _one_line_error(capsys)


def test_force_refuses_the_working_directory(suite_file, tmp_path, monkeypatch, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    before = _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert _run_cli(suite_file, Path("."), "--force") == 2
    _one_line_error(capsys)
    assert _tree(tmp_path) == before


def test_force_removes_only_the_files_the_run_lists(suite_file, tmp_path, capsys):
    out, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.mp4").write_text("keep")
    assert main(["run", "--policy", "scripted", "--suite", str(suite_file), "--out", str(out), "--workers", "1"]) == 0
    assert (out / MARKER).is_file() and list((out / "videos").glob("*.mp4"))
    (out / "notes.txt").write_text("the user's")
    # a damaged log that names files outside the run, and a videos/ link that leads out of it
    with (out / "episodes.jsonl").open("a") as f:
        for name in ("../outside/precious.mp4", "/etc/passwd", "videos/../../outside/precious.mp4"):
            f.write(json.dumps({"id": name, "success": False, "steps": 1, "video": name}) + "\n")
    os.symlink(outside, out / "videos" / "link")
    capsys.readouterr()
    assert _run_cli(suite_file, out, "--force") == 0
    assert "kept" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "the user's"
    assert (outside / "precious.mp4").read_text() == "keep"
    assert not list((out / "videos").glob("*.mp4"))  # the old run's videos went; --video none made none


def test_a_run_directory_without_the_marker_is_not_cleared(suite_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run_cli(suite_file, out) == 0
    (out / MARKER).unlink()  # e.g. a run from before simeval marked its directories
    before = _tree(out)
    capsys.readouterr()
    assert _run_cli(suite_file, out, "--force") == 2
    _one_line_error(capsys)
    assert _tree(out) == before


# ------------------------------------------------------------------ 2. a torn last line of episodes.jsonl
def _interrupted(suite_file: Path, out: Path) -> list[str]:
    assert _run_cli(suite_file, out) == 0
    lines = (out / "episodes.jsonl").read_text().splitlines()
    return lines


def test_resume_drops_a_torn_last_line_with_a_warning(suite_file, tmp_path, capsys):
    out = tmp_path / "run"
    lines = _interrupted(suite_file, out)
    # killed mid-write: the first two records whole, the third cut off without its newline
    (out / "episodes.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])
    capsys.readouterr()
    assert _run_cli(suite_file, out, "--resume") == 0
    err = capsys.readouterr().err
    assert "torn last line" in err and str(out / "episodes.jsonl") in err
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == len({r["id"] for r in records}) == len(lines)


@pytest.mark.parametrize("damage", ["middle", "last-with-newline", "not-a-record"])
def test_any_other_corrupt_line_is_an_error_naming_file_and_line(damage, suite_file, tmp_path, capsys):
    out = tmp_path / "run"
    lines = _interrupted(suite_file, out)
    if damage == "middle":
        lines[1] = lines[1][:30]
    elif damage == "last-with-newline":
        lines[-1] = lines[-1][:30]
    else:
        lines[1] = json.dumps(["not", "a", "record"])
    (out / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    before = _tree(out)
    capsys.readouterr()
    assert _run_cli(suite_file, out, "--resume") == 2
    err = _one_line_error(capsys)
    number = len(lines) if damage == "last-with-newline" else 2
    assert f"{out / 'episodes.jsonl'}:{number}" in err
    assert _tree(out) == before  # nothing rewritten


# ------------------------------------------------------------------ 3. --out naming a file
@pytest.mark.parametrize("force", [False, True])
def test_out_naming_an_existing_file(force, suite_file, tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("data")
    assert _run_cli(suite_file, target, *(["--force"] if force else [])) == 2
    assert "names an existing file" in _one_line_error(capsys)
    assert _run_cli(suite_file, target / "sub") == 2
    assert "which is a file" in _one_line_error(capsys)
    assert target.read_text() == "data"


# ------------------------------------------------------------------ 6. check across suites
def _results(suite_file: Path, out: Path, text: str | None = None) -> Path:
    if text is not None:
        suite_file.write_text(text)
    assert _run_cli(suite_file, out) == 0
    return out


def test_check_refuses_another_suite_or_episode_set(suite_file, tmp_path, capsys):
    base = _results(suite_file, tmp_path / "base")
    baseline = tmp_path / "baseline.json"
    assert main(["check", "--run", str(base), "--baseline", str(baseline), "--update"]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(SUITE.replace("name: tiny", "name: other"))
    renamed = _results(other, tmp_path / "renamed")
    more = _results(suite_file, tmp_path / "more", SUITE.replace('"layout:2"', '"layout:2", "light:1"'))
    capsys.readouterr()
    for run, words in ((renamed, "suite 'other'"), (more, "differs in perturbations")):
        assert main(["check", "--run", str(run), "--baseline", str(baseline)]) == 2
        err = _one_line_error(capsys)
        assert words in err and "--allow-different-suite" in err
    assert main(["check", "--run", str(more), "--baseline", str(baseline), "--allow-different-suite"]) == 0
    out = capsys.readouterr().out
    assert "comparing only the" in out and "by_level[layout:2]" in out.splitlines()[0]
    assert "by_level[light:1]" not in out.splitlines()[0]


def test_check_update_never_overwrites_a_file_that_is_not_a_baseline(suite_file, tmp_path, capsys):
    run = _results(suite_file, tmp_path / "run")
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"my": "data"}')
    capsys.readouterr()
    assert main(["check", "--run", str(run), "--baseline", str(foreign), "--update"]) == 2
    _one_line_error(capsys)
    assert foreign.read_text() == '{"my": "data"}'


# ------------------------------------------------------------------ 7, 8. method flags
@pytest.mark.parametrize("value", ["maybe", "yes", "1", ""])
def test_boolean_options_take_only_true_or_false(value, tmp_path, capsys):
    argv = ["finetune", "--policy", "results/reference", "--method", "lora", "--data", str(tmp_path),
            "--out", str(tmp_path / "o"), "--rslora", value]
    assert main(argv) == 2
    assert "--rslora" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_method_flags_come_from_the_method_configs():
    from policies.adapters.registry import PACKAGES, get_method

    parser = _build_parser(with_methods=True)
    finetune = parser._subparsers._group_actions[0].choices["finetune"]
    flags = {option for action in finetune._actions for option in action.option_strings}
    for method in PACKAGES:
        for name in get_method(method).options():
            assert flag_of(name) in flags, (method, name)
    assert set(method_flags()) == {n for m in PACKAGES for n in get_method(m).options()}


def test_a_foreign_method_option_lists_only_flags_that_exist(tmp_path, capsys):
    parser = _build_parser(with_methods=True)
    finetune = parser._subparsers._group_actions[0].choices["finetune"]
    flags = {option for action in finetune._actions for option in action.option_strings}
    argv = ["finetune", "--policy", "results/reference", "--method", "lora", "--data", str(tmp_path),
            "--out", str(tmp_path / "o"), "--bank", "4"]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    listed = err.split("its options: ")[1].split(", ")
    assert "--trainable" in listed and "--bank" not in listed
    assert all(flag in flags for flag in listed), listed


# ------------------------------------------------------------------ 9. duplicates in a suite
@pytest.mark.parametrize("perturbations, named", [
    ("[nominal, nominal]", "nominal"),
    ('["camera:1-3", "camera:2"]', "camera:2"),
    ('["light:2,camera:1", "camera:1,light:2"]', "camera:1,light:2"),
])
def test_duplicate_variants_are_refused_and_named(perturbations, named, tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(f"name: d\ntasks: all\nrobots: all\nperturbations: {perturbations}\n")
    with pytest.raises(SuiteError, match="more than once") as err:
        load_suite(str(path))
    assert named in str(err.value) and f"{path}:4" in str(err.value)


def test_duplicate_tasks_or_robots_are_refused():
    with pytest.raises(SuiteError, match="Panda listed more than once"):
        parse_suite({"name": "d", "tasks": "all", "robots": ["Panda", "Panda"], "perturbations": ["nominal"]})


# ------------------------------------------------------------------ 10. a replaced worker is mentioned
def test_a_replaced_worker_is_said_on_stderr_and_counted(suite_file, tmp_path, capsys):
    def kill(pool, rounds):
        if rounds == 10:
            os.kill(pool.pid(0), signal.SIGKILL)

    request = RunRequest(suite=load_suite(str(suite_file)), policy="scripted", out=tmp_path / "run", workers=2,
                         video="none")
    results = execute(request, observers=[RoundHook(kill)])
    err = capsys.readouterr().err
    assert "env worker 0 died and was replaced (1 replaced so far)" in err
    assert results["timing"]["worker_restarts"] == 1
    assert "replaced" in (tmp_path / "run" / "summary.md").read_text()
    assert "replaced" in (tmp_path / "run" / "report.html").read_text()


# ------------------------------------------------------------------ help
def test_run_help_explains_perturbations_and_video_modes(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for words in ("light:3", "camera:1-5", "*:2", "light:3,camera:2", "examples", "all", "none"):
        assert words in out


def test_plain_simeval_prints_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("run", "check", "collect", "train", "finetune", "list"))


# ------------------------------------------------------------------ pictures never replace a foreign file
@pytest.mark.parametrize("command", ["render-tasks", "gallery"])
def test_a_picture_never_replaces_a_file_that_is_not_a_png(command, tmp_path, capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    assert main([command, "--out", str(notes)]) == 2
    assert "not a PNG" in _one_line_error(capsys)
    assert main([command, "--out", str(tmp_path / "notes.txt")]) == 2
    _one_line_error(capsys)
    assert notes.read_text() == "not a picture" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.png"]


# ------------------------------------------------------------------ example videos vary across cells
def _perturb_records(outcome) -> tuple[dict, list[dict]]:
    suite = load_suite("perturb").to_dict()
    records = [{"id": s.id, "task": s.task, "robot": s.robot, "perturbation": s.variant, "seed": s.seed,
                "success": outcome(s)} for s in load_suite("perturb").episode_specs()]
    return suite, records


def _examples(suite: dict, records: list[dict]) -> dict[tuple[str, bool], dict]:
    from simeval.video import VideoPolicy, example_rank

    policy, kept = VideoPolicy("examples", suite), []
    for record in records:
        if policy.wants(record):
            kept.append(record)
    best: dict[tuple[str, bool], dict] = {}
    for record in kept:
        key = (record["perturbation"], record["success"])
        if key not in best or example_rank(suite, record) < example_rank(suite, best[key]):
            best[key] = record
    return best


def test_examples_vary_tasks_and_robots_and_do_not_depend_on_finish_order():
    import random

    suite, records = _perturb_records(lambda s: s.seed % 3 != 0)
    best = _examples(suite, records)
    pairs = {(r["task"], r["robot"]) for r in best.values()}
    tasks = {r["task"] for r in best.values()}
    assert len(best) == 72 and len(pairs) >= 15 and len(tasks) == 10  # not 36 of 37 OpenDrawer/Panda
    assert {r["robot"] for r in best.values()} == {"Panda", "Piper"}
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    assert {k: r["id"] for k, r in _examples(suite, shuffled).items()} == {k: r["id"] for k, r in best.items()}


def test_train_resume_never_replaces_a_directory_it_did_not_write(tmp_path, capsys):
    work = tmp_path / "mywork"
    (work / "latest").mkdir(parents=True)
    (work / "latest" / "thesis.txt").write_text("x")
    config = Path(__file__).resolve().parents[1] / "scripts" / "reference.yaml"
    assert main(["train", "--config", str(config), "--data", str(tmp_path), "--out", str(work), "--resume"]) == 2
    assert "not a simeval training directory" in _one_line_error(capsys)
    assert (work / "latest" / "thesis.txt").read_text() == "x"


def test_the_report_shows_the_same_examples_whatever_the_number_of_workers(suite_file, tmp_path):
    import re

    shown = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        execute(RunRequest(suite=load_suite(str(suite_file)), policy="scripted", out=out, workers=workers))
        shown.append(sorted(re.findall(r'<video[^>]*src="([^"]+)"', (out / "report.html").read_text())))
        assert all((out / src).is_file() for src in shown[-1])
    assert shown[0] == shown[1] and shown[0]
