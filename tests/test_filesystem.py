"""When the file system says no (read-only, full, a name too long) every command gives one line
naming the path and the reason, exit 2; a disk that fills mid-run leaves a log ``--resume``
completes. Also: bounded float flags, control characters in suite names, dangling ``--out`` links,
and workers that outlive a ``kill -9`` of the main process exit quietly.

The mounts (a small tmpfs, a read-only bind mount; the tests run as root, where ``chmod 555`` does
not stop a write) are skipped with the reason where this machine does not permit mounting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simeval.cli import _build_parser, main
from simeval.suites import SuiteError, load_suite

SUITE = """\
name: tiny
tasks: [PushButton]
robots: [Piper]
perturbations: [nominal, "layout:2"]
episodes: 1
max_steps: 40
seed: 3
image_size: 32
"""
# 24 short episodes: enough that a log with room for a few records fills part-way through
LONGER = SUITE.replace("perturbations: [nominal, \"layout:2\"]", "perturbations: [nominal, \"*:1\", \"layout:2-5\"]") \
    .replace("tasks: [PushButton]", "tasks: [PushButton, PutCubeOnPlate]").replace("max_steps: 40", "max_steps: 15")
PAGE = 4096


# ------------------------------------------------------------------ mounts
class Mounts:
    """tmpfs and read-only bind mounts under ``root``, all unmounted at the end."""

    def __init__(self, root: Path) -> None:
        self.root, self.mounted = root, []

    def _mount(self, *args: str) -> None:
        try:
            subprocess.run(["mount", *args], check=True, capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("no mount command on this machine")
        except subprocess.CalledProcessError as err:
            pytest.skip(f"mounting is not permitted here: {err.stderr.strip() or err.returncode}")

    def tmpfs(self, size: str) -> Path:
        path = self.root / f"tmpfs{len(self.mounted)}"
        path.mkdir()
        self._mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
        self.mounted.append(path)
        return path

    def read_only(self) -> Path:
        source, path = self.root / f"src{len(self.mounted)}", self.root / f"ro{len(self.mounted)}"
        source.mkdir()
        path.mkdir()
        self._mount("--bind", str(source), str(path))
        self.mounted.append(path)
        self._mount("-o", "remount,bind,ro", str(path))
        return path

    def full(self, room: int = 0) -> Path:
        """A tmpfs with ``room`` bytes (whole pages) left free, the rest taken by a filler file."""
        path = self.tmpfs("256k")
        free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
        (path / "filler").write_bytes(b"\0" * (free - room))
        assert os.statvfs(path).f_bavail * os.statvfs(path).f_frsize == room
        return path

    def close(self) -> None:
        for path in reversed(self.mounted):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach it now


@pytest.fixture
def mounts(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    made = Mounts(tmp_path)
    yield made
    made.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A suite, two runs of it (for compare and check) and a one-demo dataset (for finetune)."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "tiny.yaml").write_text(SUITE)
    for name, policy in (("a", "scripted"), ("b", "random")):
        assert main(["run", "--policy", policy, "--suite", str(root / "tiny.yaml"), "--out", str(root / name),
                     "--workers", "1", "--video", "none"]) == 0
    assert main(["collect", "--suite", str(root / "tiny.yaml"), "--out", str(root / "data"), "--workers", "1",
                 "--episodes", "1", "--keep-failures"]) == 0
    return root


def _argv(command: str, inputs: Path, target: Path) -> list[str]:
    """``command`` writing to ``target`` (its --out, or check's --baseline file)."""
    suite = str(inputs / "tiny.yaml")
    return {
        "run": ["run", "--policy", "scripted", "--suite", suite, "--out", str(target), "--workers", "1",
                "--video", "none"],
        "compare": ["compare", str(inputs / "a"), str(inputs / "b"), "--out", str(target)],
        "check --update": ["check", "--run", str(inputs / "a"), "--baseline", str(target) + ".json", "--update"],
        "collect": ["collect", "--suite", suite, "--out", str(target), "--workers", "1"],
        "finetune": ["finetune", "--policy", "results/reference", "--method", "lora", "--data", str(inputs / "data"),
                     "--out", str(target), "--steps", "1", "--batch", "2"],
    }[command]


COMMANDS = ["run", "compare", "check --update", "collect", "finetune"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert line.startswith("simeval: error: cannot "), err
    return line


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # finetune's --policy results/reference


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_out_is_one_line(command, inputs, mounts, in_repo, capsys):
    target = mounts.read_only() / "out"
    capsys.readouterr()
    assert main(_argv(command, inputs, target)) == 2
    line = _error_line(capsys)
    assert str(target) in line and "Read-only file system" in line, line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_full_disk_is_one_line_and_leaves_no_half_file(command, inputs, mounts, in_repo, capsys):
    disk = mounts.full()
    target = disk / "out"
    capsys.readouterr()
    assert main(_argv(command, inputs, target)) == 2
    line = _error_line(capsys)
    assert str(target) in line and "No space left on device" in line, line
    assert not list(disk.rglob("*.tmp")), list(disk.rglob("*"))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_name_past_the_limit_is_one_line(command, inputs, tmp_path, in_repo, capsys):
    target = tmp_path / ("n" * 300)
    capsys.readouterr()
    assert main(_argv(command, inputs, target)) == 2
    line = _error_line(capsys)
    assert str(tmp_path) in line and "File name too long" in line and "longest name has 30" in line, line


def test_a_long_suite_name_that_makes_the_default_out_too_long_is_one_line(tmp_path, monkeypatch, capsys):
    name = "s" * 100  # the longest a suite name may be; with the policy and the episode id it passes 255 bytes
    (tmp_path / "long.yaml").write_text(SUITE.replace("name: tiny", f"name: {name}").replace(
        'perturbations: [nominal, "layout:2"]', 'perturbations: ["light:2,camera:1,layout:2,noise:2"]'))
    episode = load_suite(str(tmp_path / "long.yaml")).episode_specs()[0].id
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--policy", "scripted", "--suite", "long.yaml", "--episode", episode, "--workers", "1",
                 "--video", "none"]) == 2
    line = _error_line(capsys)
    assert f"runs/{name}-scripted-" in line and "File name too long" in line, line
    assert not list((tmp_path / "runs").iterdir())


def _records(out: Path) -> list[dict]:
    lines = (out / "episodes.jsonl").read_text().splitlines()
    return sorted(({k: v for k, v in json.loads(line).items() if k != "wall_s"} for line in lines),
                  key=lambda r: r["id"])


def test_a_disk_that_fills_mid_run_leaves_a_log_resume_completes(tmp_path, mounts, capsys):
    suite = tmp_path / "longer.yaml"
    suite.write_text(LONGER)
    argv = ["run", "--policy", "scripted", "--suite", str(suite), "--workers", "1", "--video", "none"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    whole = _records(tmp_path / "whole")
    assert len(whole) == 24 and len(json.dumps(whole[0])) * 24 > 2 * PAGE  # the log outgrows a page
    disk = mounts.full(room=3 * PAGE)  # the marker, run.json and one page of episodes.jsonl
    out = disk / "run"
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert f"cannot write {out / 'episodes.jsonl'}: No space left on device" in line, line
    text = (out / "episodes.jsonl").read_text()
    assert text.endswith("\n") and 0 < len(text.splitlines()) < 24  # cut back to whole records
    assert not (out / "results.json").exists()
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert "torn" not in capsys.readouterr().err
    assert _records(out) == whole  # nothing lost, nothing twice
    results = json.loads((out / "results.json").read_text())
    assert results["overall"]["n"] == 24


def _demos(out: Path) -> dict[str, dict]:
    import numpy as np

    demos = {}
    for path in sorted((out / "demos").glob("*.npz")):
        with np.load(path) as data:
            demos[path.name] = {key: data[key].tolist() for key in data.files}
    return demos


def test_a_disk_that_fills_mid_collect_leaves_no_half_demo_and_resume_completes(tmp_path, mounts, capsys):
    suite = tmp_path / "longer.yaml"
    suite.write_text(LONGER.replace('"*:1", ', "").replace("PushButton, ", ""))  # five episodes
    argv = ["collect", "--suite", str(suite), "--workers", "1", "--keep-failures"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    whole, whole_demos = _records(tmp_path / "whole"), _demos(tmp_path / "whole")
    assert len(whole_demos) == len(whole) == 5
    disk = mounts.full(room=16 * PAGE)  # room for a few demonstrations (each some 10 kB)
    out = disk / "data"
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert f"cannot write {out}/" in line and "No space left on device" in line, line
    kept = _demos(out)  # every .npz there is whole: np.load reads it
    assert 0 < len(kept) < 5 and not list(disk.rglob("*.tmp"))
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert _records(out) == whole and _demos(out) == whole_demos


# ------------------------------------------------------------------ float flags
def _float_actions():
    parser = _build_parser(with_methods=True)
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            if action.option_strings and action.type is not None and getattr(action.type, "__name__", "") == "float":
                yield name, action


def test_every_float_flag_is_bounded():
    actions = list(_float_actions())
    assert {a.option_strings[0] for _, a in actions} >= {"--timeout", "--batch-wait-ms", "--noise", "--rot-noise",
                                                          "--lr", "--alpha", "--min-effect", "--eta", "--tau"}
    for command, action in actions:
        assert action.type is not float, (command, action.option_strings)  # plain float takes inf, nan, 1e300
        for text in ("inf", "-inf", "nan", "1e300", "-1e300"):  # method options too (their ranges: the configs')
            with pytest.raises(Exception, match="finite number"):
                action.type(text)


@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "0", "-1", "86401"])
def test_timeout_out_of_range_is_one_line(value, capsys):
    assert main(["run", "--policy", "ws://127.0.0.1:9", "--suite", "smoke", "--timeout", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--timeout" in err and "(0, 86400]" in err, err


@pytest.mark.parametrize("argv", [
    ["collect", "--suite", "smoke", "--out", "x", "--noise", "inf"],
    ["collect", "--suite", "smoke", "--out", "x", "--rot-noise", "2"],
    ["serve", "--policy", "scripted", "--batch-wait-ms", "1e300"],
    ["finetune", "--policy", "p", "--method", "lora", "--data", "d", "--out", "o", "--lr", "inf"],
    ["finetune", "--policy", "p", "--method", "lora", "--data", "d", "--out", "o", "--dropout", "nan"],
    ["check", "--run", "r", "--baseline", "b", "--alpha", "1"],
    ["check", "--run", "r", "--baseline", "b", "--min-effect", "1"],
])
def test_other_float_flags_out_of_range_are_one_line(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"argument {argv[-2]}: expected a finite number" in err, err
    assert not list(tmp_path.iterdir())


def test_the_remote_config_bounds_the_timeout_too():
    from policies.remote.client import RemoteConfig

    for value in (float("inf"), 1e300, float("nan"), 0.0):
        with pytest.raises(ValueError, match="--timeout"):
            RemoteConfig(url="ws://127.0.0.1:9", timeout=value)


def test_bounded_float_states_its_range():
    from simeval.method_flags import bounded_float

    parse = bounded_float(0, 1, low_open=True)
    assert parse("1") == 1.0 and parse("0.5") == 0.5
    for text in ("0", "1.01", "x"):
        with pytest.raises(Exception, match="expected a"):
            parse(text)


# ------------------------------------------------------------------ suite names, --out links
@pytest.mark.parametrize("name", ['"a\\nb"', '"a\\tb"', '"a\\0b"', '"a\\x1bb"', '"a\\rb"'])
def test_a_suite_name_with_a_control_character_is_refused(name, tmp_path, monkeypatch, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(SUITE.replace("name: tiny", f"name: {name}"))
    with pytest.raises(SuiteError) as err:
        load_suite(str(path))
    assert f"{path}:1: key 'name'" in str(err.value) and "control character" in str(err.value)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--policy", "scripted", "--suite", "s.yaml", "--workers", "1", "--video", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{path.name}:1: key 'name'" in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["run", "collect", "compare"])
def test_out_naming_a_dangling_symlink_says_so(command, inputs, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert main(_argv(command, inputs, link)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "symbolic link" in err and "does not exist" in err, err
    assert "names an existing file" not in err
    assert not (tmp_path / "gone").exists() and link.is_symlink()


def test_a_baseline_that_is_a_link_is_written_through_whole(inputs, tmp_path, capsys):
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    assert main(["check", "--run", str(inputs / "b"), "--baseline", str(real), "--update"]) == 0
    link.symlink_to(real)
    assert main(["check", "--run", str(inputs / "a"), "--baseline", str(link), "--update"]) == 0
    assert link.is_symlink() and json.loads(real.read_text())["policy"] == "scripted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]  # no .tmp left


def test_out_with_a_nul_byte_names_the_flag(inputs, capsys):
    assert main(_argv("run", inputs, Path("runs/a\0b"))) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--out" in err and "NUL" in err, err


# ------------------------------------------------------------------ kill -9 of the main process
def test_workers_exit_quietly_after_the_main_process_is_killed(tmp_path):
    suite = tmp_path / "longer.yaml"
    suite.write_text(LONGER)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "simeval", "run", "--policy", "scripted", "--suite", str(suite),
                             "--out", str(out), "--workers", "2", "--video", "none"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    log = out / "episodes.jsonl"
    while not (log.is_file() and log.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)  # returns when every process holding stderr (the workers too) ended
    assert proc.returncode == -signal.SIGKILL
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
