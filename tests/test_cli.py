"""``simeval list`` and ``simeval render-tasks``."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np

from simeval.cli import main
from tests.conftest import ALL_IDS


def test_list_envs_json_is_every_id(capsys):
    assert main(["list", "envs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ALL_IDS


def test_list_envs_human_readable(capsys):
    assert main(["list", "envs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(ALL_IDS)
    assert any("simeval/PutCubeOnPlate-Piper-v0" in line and "put the cube on the plate" in line for line in lines)


def test_render_tasks_writes_a_labelled_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["render-tasks", "--tasks", "PushButton,OpenDrawer", "--size", "64", "--out", str(out),
                 "--columns", "2"]) == 0
    image = imageio.imread(out)
    assert image.shape == (128, 128, 3)
    tiles = [image[:64, :64], image[:64, 64:], image[64:, :64], image[64:, 64:]]
    assert all(t.std() > 5 for t in tiles)
    assert not np.array_equal(tiles[0], tiles[1])  # Panda and Piper differ


def test_gallery_is_dimensions_by_levels(tmp_path, capsys):
    out = tmp_path / "gallery.png"
    assert main(["gallery", "--task", "PushButton", "--robot", "Panda", "--size", "64", "--out", str(out)]) == 0
    image = imageio.imread(out)
    assert image.shape == (7 * 64, 6 * 64, 3)
    tiles = image.reshape(7, 64, 6, 64, 3).swapaxes(1, 2)
    for row in (0, 3, 4, 5):  # camera, light, background, noise: level 5 differs from level 0
        assert np.abs(tiles[row, 5].astype(float) - tiles[row, 0]).mean() > 3


def test_gallery_bad_input(capsys):
    assert main(["gallery", "--robot", "UR5"]) == 2
    assert "unknown robot UR5" in capsys.readouterr().err
