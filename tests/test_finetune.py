"""``simeval finetune``: every method adapts a tiny base to PiPER demonstrations and the result is a
policy ``simeval run`` evaluates; bad options are one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policies.adapters import PACKAGES
from policies.base import Batch
from policies.loader import load_policy
from simeval.cli import main

SUITE = "name: d\ntasks: [PushButton]\nrobots: [Piper]\nperturbations: [nominal]\nepisodes: 2\nimage_size: 32\n"
EVAL = "name: e\ntasks: [PushButton]\nrobots: [Piper]\nperturbations: [nominal, 'light:2']\nepisodes: 1\n" \
       "image_size: 32\nmax_steps: 8\n"
CONFIG = """\
model: {image_size: 32, chunk: 4, stem_channels: [8, 16], feature_grid: 2, d_model: 32, n_heads: 2,
        vision_layers: 1, n_layers: 2, expert_layers: 2}
train: {steps: 3, batch: 8, warmup: 1, robots: [Piper]}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    (root / "s.yaml").write_text(SUITE)
    (root / "c.yaml").write_text(CONFIG)
    assert main(["collect", "--suite", str(root / "s.yaml"), "--out", str(root / "data"), "--workers", "1"]) == 0
    assert main(["train", "--config", str(root / "c.yaml"), "--data", str(root / "data"), "--out",
                 str(root / "base")]) == 0
    return root


def finetune(root, method: str, *options: str, out: str | None = None) -> int:
    return main(["finetune", "--policy", str(root / "base" / "final"), "--method", method, "--data",
                 str(root / "data"), "--out", str(root / (out or method)), "--steps", "3", "--batch", "4", *options])


@pytest.fixture(scope="module")
def lora_dir(setup):
    assert finetune(setup, "lora", "--rank", "2", out="lora-r2") == 0
    return setup / "lora-r2"


@pytest.mark.parametrize("method", list(PACKAGES))
def test_every_method_gives_a_policy(setup, method):
    assert finetune(setup, method) == 0
    summary = json.loads((setup / method / "finetune.json").read_text())
    trainable, total = summary["trainable"]["total"], summary["total"]["total"]
    assert 0 < trainable <= total
    if method not in ("full", "capvector", "clp"):
        assert trainable < total / 2
    assert (summary["vector_seconds"] > 0) == (method == "capvector")  # its extraction is part of its cost
    if method == "lora_sp":  # the paper's diagnostic: effective rank per module group, within [1, bank]
        ranks = summary["diagnostics"]["effective_rank_by_group"]
        assert set(ranks) == {"vision", "fusion", "action_expert"} and all(1 <= k <= 16 for k in ranks.values())
    policy = load_policy(str(setup / method))
    rng = np.random.default_rng(0)
    batch = Batch(slots=[0, 1], state=rng.normal(size=(2, 8)).astype(np.float32),
                  instruction=["press the button"] * 2, agentview=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
                  wrist=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    actions = policy.act(batch)
    assert actions.shape == (2, 2, 7) and np.isfinite(actions).all()
    if method == "capvector":  # the auxiliary fine-tune is kept, to be evaluated itself, with its cost
        extraction = json.loads((setup / method / "capvector" / "extraction.json").read_text())
        assert extraction["plain_seconds"] > 0 and extraction["auxiliary_seconds"] > 0
        auxiliary = load_policy(str(setup / method / "capvector" / "auxiliary"))
        assert auxiliary.act(batch).shape == (2, 2, 7)
        assert not np.allclose(auxiliary.act(batch), load_policy(str(setup / "base" / "final")).act(batch))


def test_adapted_checkpoint_runs_in_the_harness(setup, lora_dir):
    (setup / "e.yaml").write_text(EVAL)
    out = setup / "run"
    assert main(["run", "--policy", str(lora_dir), "--suite", str(setup / "e.yaml"), "--out", str(out),
                 "--workers", "1", "--video", "none"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["overall"]["n"] == 2 and results["counts"]["errors"] == 0


@pytest.mark.parametrize("method, options, message", [
    ("dora", [], "unknown --method 'dora'; valid methods: full, lora"),
    ("lora_sp", ["--eta", "1.5"], "option eta=1.5 is out of range: valid (0, 1]"),
    ("lora_sp", ["--eta", "0"], "option eta=0.0 is out of range"),
    ("lora", ["--rank", "999"], "option rank=999 is out of range: valid 1..32"),
    ("gse", ["--top-k", "9"], "top_k=9 is out of range"),
    ("lora", ["--targets", ".*nothing"], "matches no Linear module"),
    ("last_k", ["--rank", "4"], "--rank does not apply to method last_k; its options: --targets"),
    ("last_k", ["--layers", "5"], "layers=5 is out of range"),
])
def test_bad_options(setup, capsys, method, options, message):
    assert main(["finetune", "--policy", str(setup / "base" / "final"), "--method", method, "--data",
                 str(setup / "data"), "--out", str(setup / f"bad-{method}"), "--steps", "2", *options]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_adapter_for_another_base_is_refused(setup, lora_dir, tmp_path, capsys):
    import shutil

    (setup / "e.yaml").write_text(EVAL)
    moved = tmp_path / "lora"
    shutil.copytree(lora_dir, moved)
    assert main(["train", "--config", str(setup / "c.yaml"), "--data", str(setup / "data"), "--out",
                 str(tmp_path / "other"), "--steps", "4"]) == 0
    shutil.rmtree(moved / "base")
    shutil.copytree(tmp_path / "other" / "final", moved / "base")
    assert main(["run", "--policy", str(moved), "--suite", str(setup / "e.yaml"), "--out", str(tmp_path / "r"),
                 "--workers", "1", "--video", "none"]) == 2
    assert "adapter was trained on base" in capsys.readouterr().err
