"""``simeval train``: behaviour cloning from collected demonstrations, checkpoints, resume."""

from __future__ import annotations

import json

from policies.loader import load_policy
from simeval.cli import main

SUITE = "name: d\ntasks: [PushButton]\nrobots: [Panda]\nperturbations: [nominal]\nepisodes: 2\nimage_size: 32\n"
CONFIG = """\
model: {image_size: 32, chunk: 4, stem_channels: [8, 16], feature_grid: 2, d_model: 32, n_heads: 2,
        n_layers: 1, expert_layers: 1}
train: {steps: 6, batch: 8, warmup: 2, checkpoint_every: 3, log_every: 1, robots: [Panda]}
"""


def test_train_resume_and_use_as_policy(tmp_path):
    (tmp_path / "s.yaml").write_text(SUITE)
    (tmp_path / "c.yaml").write_text(CONFIG)
    data, out = tmp_path / "data", tmp_path / "train"
    assert main(["collect", "--suite", str(tmp_path / "s.yaml"), "--out", str(data), "--workers", "1"]) == 0
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--data", str(data), "--out", str(out)]) == 0
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--data", str(data), "--out", str(out)]) == 2
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--data", str(data), "--out", str(out),
                 "--steps", "9", "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 10))  # resumed at 6, no step run twice
    assert (out / "curve.png").stat().st_size > 1000
    policy = load_policy(str(out / "final"))
    assert policy.observation_spec.cameras == ("agentview", "wrist") and not policy.observation_spec.privileged


def test_train_bad_config(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("model: {head: magic}\n")
    (tmp_path / "d").mkdir()
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "d"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "head" in capsys.readouterr().err


def test_plot_curve_draws_a_log_loss_curve(tmp_path):
    """matplotlib (Agg) PNG at 150 dpi; works for either head's loss key and for a single logged step."""
    from PIL import Image

    from policies.train import plot_curve

    for name, key, count in (("l1", "l1", 40), ("flow", "flow_mse", 1)):
        metrics = tmp_path / f"{name}.jsonl"
        metrics.write_text("".join(json.dumps({"step": 50 * (i + 1), "loss": 0.3 / (i + 1), key: 0.3 / (i + 1),
                                               "seconds": 2.0 * i}) + "\n" for i in range(count)))
        path = plot_curve(metrics, tmp_path / f"{name}.png")
        with Image.open(path) as image:
            assert image.size == (960, 540)
            pixels = image.convert("RGB")
            assert len(pixels.getcolors(1 << 20)) > 20  # axes, text and the curve, not a blank canvas
            assert (42, 90, 200) in {c for _, c in pixels.getcolors(1 << 20)}  # the loss line's colour
