"""LIBERO-Plus's suites as simeval sees them without LIBERO: the ``libero_plus`` world, the published
counts per suite and category, the seeded per-category sample, the cells records carry, the suite
errors, and the run-time skip of the variants that need LIBERO-Plus's asset archive."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

import simeval
from simeval import worlds
from simeval.cli import main
from simeval.libero import plus
from simeval.metrics import build_results, summarize
from simeval.records import cell_key, record_cell, split_cell_key, variant_cell
from simeval.suites import SuiteError, load_suite, parse_suite

SPATIAL = {"background": 258, "camera": 376, "language": 390, "layout": 385, "light": 292, "noise": 351,
           "robot_init": 350}  # LIBERO-Plus's published LIBERO-Spatial column
TOTAL = {"noise": 1601, "camera": 1599, "robot_init": 1550, "language": 1537, "layout": 1525, "light": 1142,
         "background": 1076}
REASON = "LIBERO-Plus's asset archive is not set up (simeval setup libero --plus)"


def _plus(**keys) -> dict:
    return {"name": "p", "world": "libero_plus", "tasks": "all", "robots": ["Panda"], "perturbations": "all", **keys}


def _category(spec) -> str:
    return spec.variant.partition(":")[0]


def test_full_suite_has_the_published_counts():
    specs = load_suite("libero_plus_full").episode_specs()
    assert len(specs) == 10_030 and Counter(map(_category, specs)) == TOTAL
    spatial = Counter(_category(s) for s in specs if s.task.startswith("libero_spatial/"))
    assert spatial == SPATIAL and sum(spatial.values()) == 2402
    by_family = Counter(worlds.family(s.world, s.task) for s in specs)
    assert by_family == {"libero_spatial": 2402, "libero_object": 2518, "libero_goal": 2591, "libero_10": 2519}
    assert {s.index for s in specs} == {0} and {s.seed for s in specs} == {7}  # one trial at init state 0


def test_the_world_answers_for_its_variants():
    assert worlds.is_libero("libero_plus") and "libero_plus" in worlds.worlds()
    assert worlds.robots("libero_plus") == ["Panda"]
    names = worlds.task_names("libero_plus")
    assert len(names) == len(set(names)) == 10_030 and names == [v.task for v in plus.all_variants()]
    for benchmark, steps in (("libero_spatial", 220), ("libero_object", 280), ("libero_goal", 300), ("libero_10", 520)):
        task = plus.variants(benchmark)[0].task
        assert worlds.max_steps("libero_plus", task) == steps and worlds.family("libero_plus", task) == benchmark
        assert worlds.max_episodes("libero_plus", task) == 50
    assert worlds.episode_seed("libero_plus", 7, "any/id") == 7
    first = plus.variants("libero_goal")[0].task
    assert worlds.resolve_tasks("libero_plus", ["libero_goal"]) == [v.task for v in plus.variants("libero_goal")]
    assert worlds.resolve_tasks("libero_plus", ["0", first]) == [names[0], first]
    with pytest.raises(ValueError, match="unknown task nope.*a benchmark"):
        worlds.resolve_tasks("libero_plus", ["nope"])


def test_builtin_suites_are_the_sampled_protocol():
    whole = load_suite("libero_plus")
    specs = whole.episode_specs()
    assert whole.seed == 7 and whole.per_category == 20 and whole.episodes == 1 and whole.image_size == 256
    cells = Counter((worlds.family(s.world, s.task), _category(s)) for s in specs)
    assert len(specs) == 560 and set(cells.values()) == {20} and len(cells) == 4 * 7
    for benchmark in plus.BENCHMARKS:
        one = load_suite(f"libero_plus_{benchmark.removeprefix('libero_')}").episode_specs()
        assert len(one) == 140
        # a suite of one benchmark draws the same variants as that benchmark's part of libero_plus
        assert [s.task for s in one] == [s.task for s in specs if s.task.startswith(benchmark + "/")]
    digest = hashlib.sha256("\n".join(s.id for s in specs).encode()).hexdigest()
    assert digest[:16] == "8d043f78e00cc838", digest  # the sample itself, pinned: the same on every machine


def test_sample_is_deterministic_seed_dependent_and_in_catalogue_order():
    first = parse_suite(_plus(per_category=5, seed=3)).episode_specs()
    again = parse_suite(_plus(per_category=5, seed=3)).episode_specs()
    other = parse_suite(_plus(per_category=5, seed=4)).episode_specs()
    assert [s.id for s in first] == [s.id for s in again] and len(first) == 4 * 7 * 5
    assert {s.task for s in first} != {s.task for s in other}
    order = {v.task: i for i, v in enumerate(plus.all_variants())}
    assert [order[s.task] for s in first] == sorted(order[s.task] for s in first)
    # an override of the seed after loading (simeval run --seed) draws that seed's sample
    suite = parse_suite(_plus(per_category=5, seed=3))
    suite.seed = 4
    assert [s.task for s in suite.episode_specs()] == [s.task for s in other]


def test_sample_does_not_depend_on_the_interpreters_hash_seed():
    code = ("from simeval.suites import load_suite; import hashlib; "
            "ids = ''.join(s.id for s in load_suite('libero_plus').episode_specs()); "
            "print(hashlib.sha256(ids.encode()).hexdigest())")
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(simeval.__file__).resolve().parents[1])}
        digests.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True).stdout.strip())
    assert len(digests) == 1


def test_ids_are_unique_and_carry_the_category_and_level():
    specs = load_suite("libero_plus_full").episode_specs()
    assert len({s.id for s in specs}) == len(specs)
    for spec in specs[::37]:
        variant = plus.get_variant(spec.task)
        assert spec.id == f"libero_plus_full/{spec.task}-Panda/{spec.variant}/0000"
        assert spec.variant == (f"{variant.category}:{variant.level}" if variant.level else variant.category)
        assert variant_cell(spec.variant) == (variant.category, variant.level or 0)
    assert {s.variant for s in specs if _category(s) == "robot_init"} == {f"robot_init:{i}" for i in range(1, 6)}
    assert {s.variant for s in specs if _category(s) == "camera"} == {"camera"}
    assert {s.variant for s in specs if _category(s) == "layout"} == {"layout", *(f"layout:{i}" for i in range(1, 6))}


def test_perturbations_pick_categories_and_levels():
    specs = parse_suite(_plus(tasks=["libero_spatial"], perturbations=["camera", "noise:2"])).episode_specs()
    assert Counter(s.variant for s in specs) == {"camera": 376, "noise:2": 60}
    sampled = parse_suite(_plus(tasks=["libero_spatial", "libero_goal"], perturbations=["robot_init:1", "light"],
                                per_category=30)).episode_specs()
    cells = Counter((worlds.family(s.world, s.task), s.variant) for s in sampled)
    assert cells == {("libero_spatial", "robot_init:1"): 26, ("libero_spatial", "light"): 30,  # 26: all there are
                     ("libero_goal", "robot_init:1"): 30, ("libero_goal", "light"): 30}
    named = [plus.variants("libero_10")[3].task, plus.variants("libero_object")[0].task]
    suite = parse_suite(_plus(tasks=named, episodes=3))
    assert [s.task for s in suite.episode_specs()] == [named[1]] * 3 + [named[0]] * 3  # catalogue order
    assert [s.index for s in suite.episode_specs()][:3] == [0, 1, 2]


def test_run_json_stays_compact_and_simeval_suites_unchanged():
    data = load_suite("libero_plus").to_dict()
    assert data["tasks"] == list(plus.BENCHMARKS) and data["per_category"] == 20 and data["world"] == "libero_plus"
    round_trip = parse_suite(data).episode_specs()  # the compact tasks read back to the same episodes
    assert [s.id for s in round_trip] == [s.id for s in load_suite("libero_plus").episode_specs()]
    assert list(load_suite("smoke").to_dict()) == ["name", "tasks", "robots", "perturbations", "episodes", "seed",
                                                    "max_steps", "image_size", "description"]
    assert "per_category" not in load_suite("libero_spatial").to_dict()


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError) as err:
        load_suite(str(path))
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


VARIANT = plus.variants("libero_spatial")[0].task
BASE = "name: p\nworld: libero_plus\nrobots: [Panda]\n"  # then tasks on line 4, perturbations on 5


@pytest.mark.parametrize("text, line, words", [
    ("tasks: all\nperturbations: all\nper_category: 0\n", 6, ["'per_category'", "1..10000", "0"]),
    ("tasks: all\nperturbations: all\nper_category: twenty\n", 6, ["'per_category'", "'twenty'"]),
    ("tasks: all\nperturbations: all\nper_category: true\n", 6, ["'per_category'", "True"]),
    ("tasks: all\nperturbations: [camera:3]\n", 5, ["'perturbations'", "camera variants carry no level", "'camera'"]),
    ("tasks: all\nperturbations: [robot_init:9]\n", 5, ["'perturbations'", "level must be 1-5"]),
    ("tasks: all\nperturbations: [gravity]\n", 5, ["'perturbations'", "not a LIBERO-Plus category", "camera"]),
    ("tasks: all\nperturbations: [nominal]\n", 5, ["'perturbations'", "not a LIBERO-Plus category"]),
    ("tasks: all\nperturbations: [robot_init, 'robot_init:2']\n", 5, ["'perturbations'", "overlaps 'robot_init'"]),
    ("tasks: all\nperturbations: camera\n", 5, ["'perturbations'", "'all' or a list of categories"]),
    ("tasks: [libero_90]\nperturbations: all\n", 4, ["'tasks'", "unknown 'libero_90'", "libero_spatial"]),
    (f"tasks: [libero_spatial, {VARIANT}]\nperturbations: all\n", 4, ["'tasks'", "given twice", "libero_spatial"]),
    (f"tasks: [{VARIANT}]\nperturbations: [noise]\n", 5, ["'perturbations'", "none of the suite's tasks", "noise"]),
    ("tasks: all\nperturbations: all\nepisodes: 51\n", 6, ["'episodes'", "50 init states"]),
    ("tasks: all\nperturbations: all\nseed: -1\n", 6, ["'seed'", "0..2147483647"]),
])
def test_bad_plus_suites_get_one_line(tmp_path, text, line, words):
    message = _error(tmp_path, BASE + text)
    assert f"s.yaml:{line}: key " in message and all(w in message for w in words), message


def test_per_category_belongs_to_libero_plus(tmp_path):
    message = _error(tmp_path, "name: p\ntasks: all\nrobots: all\nperturbations: [nominal]\nper_category: 3\n")
    assert "s.yaml:5: key 'per_category'" in message and "world libero_plus only" in message
    from simeval.suites import Suite

    with pytest.raises(ValueError, match="per_category"):
        Suite("s", ["PushButton"], ["Panda"], ["nominal"], per_category=3)
    with pytest.raises(ValueError, match="per_category must be an integer >= 1"):
        Suite("s", [VARIANT], ["Panda"], ["camera"], world="libero_plus", per_category=0)
    with pytest.raises(ValueError, match="no LIBERO-Plus variant 'PushButton'"):
        Suite("s", ["PushButton"], ["Panda"], ["camera"], world="libero_plus")
    with pytest.raises(ValueError, match="unknown world 'libero_plus_x'"):
        Suite("s", [VARIANT], ["Panda"], ["camera"], world="libero_plus_x")


def test_cells_without_a_level_and_their_spearman():
    assert variant_cell("camera") == ("camera", 0) and variant_cell("robot_init:3") == ("robot_init", 3)
    assert cell_key("camera", 0) == "camera" and split_cell_key("camera") == ("camera", 0)
    assert cell_key("nominal", 0) == "nominal"

    def record(i: int, variant: str, success: bool) -> dict:
        dimension, level = variant_cell(variant)
        return {"id": f"x/{i}", "task": VARIANT, "robot": "Panda", "family": "libero_spatial", "perturbation": variant,
                "dimension": dimension, "level": level, "success": success, "steps": 1}

    records = [record(0, "camera", True), record(1, "camera", False), record(2, "layout", True),
               record(3, "layout", True), record(4, "layout:1", True), record(5, "layout:4", False),
               record(6, "layout:2", True), record(7, "layout:5", False)]
    assert record_cell(records[0]) == ("camera", 0)
    m = summarize(records)
    assert list(m["by_level"]) == ["camera", "layout", "layout:1", "layout:2", "layout:4", "layout:5"]
    assert m["by_dimension"]["camera"]["n"] == 2 and m["by_dimension"]["camera"]["spearman"]["n"] == 0
    assert m["by_dimension"]["camera"]["spearman"]["rho"] is None
    layout = m["by_dimension"]["layout"]
    assert layout["n"] == 6 and layout["spearman"]["n"] == 4 and layout["spearman"]["rho"] < 0  # level-0 ones left out


def test_skip_names_the_archive_variants(monkeypatch):
    specs = load_suite("libero_plus_spatial").episode_specs()
    monkeypatch.setattr(plus, "assets_problem", lambda: None)
    assert worlds.unrunnable(specs) is None
    monkeypatch.setattr(plus, "assets_problem", lambda: REASON)
    skip = worlds.unrunnable(specs)
    line = f"simeval: skipping 60 of 140 episodes (light 20, background 20, layout 20): {REASON}"
    assert skip.line(len(specs)) == line
    assert skip.to_dict() == {"episodes": 60, "by_dimension": {"light": 20, "background": 20, "layout": 20},
                              "reason": REASON}
    assert all(plus.get_variant(s.task).needs_assets == (s.id in skip.ids) for s in specs)
    assert worlds.unrunnable(load_suite("smoke").episode_specs()) is None  # simeval's worlds never skip


def test_cli_skips_without_running_a_side_process(tmp_path, monkeypatch, capsys):
    from simeval.libero import sideenv

    monkeypatch.setattr(plus, "assets_problem", lambda: REASON)
    monkeypatch.setattr(sideenv, "ensure_side_env", lambda *a, **k: pytest.fail("no episode needs the side env"))
    suite = tmp_path / "archive.yaml"
    suite.write_text(yaml.safe_dump(_plus(name="archive", tasks=["libero_spatial"],
                                          perturbations=["light", "background", "layout"], per_category=2)))
    out = tmp_path / "run"
    args = ["run", "--policy", "random", "--suite", str(suite), "--out", str(out), "--video", "none", "--workers", "1"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err == f"simeval: skipping 6 of 6 episodes (light 2, background 2, layout 2): {REASON}\n"
    results = json.loads((out / "results.json").read_text())
    assert results["skipped"] == {"episodes": 6, "by_dimension": {"light": 2, "background": 2, "layout": 2},
                                  "reason": REASON}
    assert results["counts"]["episodes"] == 0 and results["overall"]["errors"] == 0  # never counted as failures
    assert not (out / "episodes.jsonl").exists() or not (out / "episodes.jsonl").read_text().strip()
    assert main([*args, "--resume"]) == 0  # the same suite skips the same episodes
    assert capsys.readouterr().err.count("skipping 6 of 6 episodes") == 1
    assert json.loads((out / "results.json").read_text())["skipped"] == results["skipped"]
    assert main(["check", "--run", str(out), "--baseline", str(out)]) == 0  # same suite, same skip
    capsys.readouterr()
    # an episode an earlier session ran (the archive was there then) keeps its record and is not skipped
    first = load_suite(str(suite)).episode_specs()[0]
    record = {"id": first.id, "task": first.task, "robot": "Panda", "family": "libero_spatial",
              "perturbation": first.variant, "dimension": _category(first), "level": 0, "params": {}, "seed": 7,
              "success": True, "steps": 3}
    (out / "episodes.jsonl").write_text(json.dumps(record) + "\n")
    assert main([*args, "--resume"]) == 0
    assert "skipping 5 of 6 episodes" in capsys.readouterr().err
    again = json.loads((out / "results.json").read_text())
    assert again["counts"]["episodes"] == 1 and again["skipped"]["episodes"] == 5
    assert [json.loads(line)["id"] for line in (out / "episodes.jsonl").read_text().splitlines()] == [first.id]
    expert = ["run", "--policy", "scripted-libero", "--suite", str(suite), "--out", str(tmp_path / "expert"),
              "--video", "none", "--tasks", "libero_spatial"]
    assert main(expert) == 0, capsys.readouterr().err  # LIBERO's experts accept the world
    assert json.loads((tmp_path / "expert" / "results.json").read_text())["skipped"]["episodes"] == 6
    capsys.readouterr()
    one = load_suite(str(suite)).episode_specs()[0].id
    assert main([*args[:-2], "--episode", one, "--out", str(tmp_path / "one")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot run here" in err and REASON in err and not (tmp_path / "one").exists()


def test_check_says_when_a_skip_makes_the_counts_differ():
    from simeval.check import suite_mismatch

    suite = load_suite("libero_plus_spatial").to_dict()
    common = {"suite": suite, "policy": "p", "timing": {}, "versions": {}}
    skipped = {"episodes": 60, "by_dimension": {"light": 20, "background": 20, "layout": 20}, "reason": REASON}
    full = build_results([{"id": f"r/{i}", "success": True, "steps": 1} for i in range(140)], **common)
    part = build_results([{"id": f"r/{i}", "success": True, "steps": 1} for i in range(80)], skipped=skipped, **common)
    assert suite_mismatch(part, part) is None and suite_mismatch(full, full) is None
    assert suite_mismatch(part, full) == f"the run has 80 episodes (60 skipped: {REASON}), the baseline 140"
    other = {**part, "suite": {**suite, "per_category": 10}}
    assert "per_category" in suite_mismatch(part, other)


def test_list_shows_the_world_and_its_suites(capsys):
    assert main(["list", "suites", "--json"]) == 0
    rows = {r["suite"]: r["episodes"] for r in json.loads(capsys.readouterr().out)}
    assert rows["libero_plus"] == 560 and rows["libero_plus_full"] == 10_030 and rows["libero_plus_goal"] == 140
    assert main(["list", "tasks", "--world", "libero_plus", "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    assert len(tasks) == 10_030 and tasks[0]["task"] == plus.all_variants()[0].task
    assert Counter(t["category"] for t in tasks) == TOTAL
