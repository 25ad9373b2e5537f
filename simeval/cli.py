"""The ``simeval`` command line: ``run``, ``serve``, ``check``, ``compare``, ``collect``, ``train``, ``finetune``,
``list``, ``render-tasks``, ``gallery``, ``setup``.

Bad input gets one line on stderr naming what is wrong and what is valid, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from simeval.files import describe, write_text, writing
from simeval.cli_look import cmd_gallery, cmd_list, cmd_render_tasks, names
from simeval.libero.cli_setup import add_setup_parser, cmd_setup
from simeval.method_flags import add_method_flags as _add_method_flags
from simeval.method_flags import bounded_float, flag_of, method_flags  # noqa: F401  (tests read them here)


class UsageError(Exception):
    """A user mistake: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(message)


PERTURBATION_HELP = """perturbations (in a suite file's perturbations: list):
  nominal            no perturbation (level 0)
  light:3            one dimension at one level (1 mild .. 5 severe)
  camera:1-5         a range: camera:1, camera:2, ... camera:5
  *:2                every dimension at level 2 (*:1-5 every dimension at every level)
  light:3,camera:2   dimensions composed in one episode
  dimensions: camera, robot_init, language, light, background, noise, layout
  world libero_plus: LIBERO-Plus's categories instead (all, camera, robot_init:3 ...), and
                     per_category: N, a seeded sample of N variants per benchmark and category

--video modes:
  examples  (default) per (dimension, level) one success and one failure, tasks and robots varied
  all       every episode
  none      no video
"""


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the envs run")
    group.add_argument("--backend", default="local", help="local (worker processes here, the default) or ray (Ray "
                                                          "actors; pip install -e \".[ray]\")")
    group.add_argument("--ray-address", default=None, help="with --backend ray: auto or HOST:PORT joins a running "
                                                           "cluster (default: start Ray here with --workers CPUs)")


def _backend(args: argparse.Namespace) -> dict:
    from simeval.pools import backend_settings

    return backend_settings(args.backend, args.ray_address, args.workers)


def _build_parser(with_methods: bool = True) -> argparse.ArgumentParser:
    """The parser; ``with_methods`` adds finetune's method flags (reading the method configs imports torch)."""
    parser = _Parser(prog="simeval", description="Evaluate VLA policies on perturbed MuJoCo tabletop worlds.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="evaluate a policy on a suite of (perturbed) episodes", epilog=PERTURBATION_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--policy", required=True, help="scripted (simeval's worlds), scripted-libero (LIBERO's), random, a "
                                                     "checkpoint directory, or ws://HOST:PORT "
                                                     "(a policy server speaking openpi's protocol)")
    run.add_argument("--suite", required=True, help="a built-in suite (simeval list suites) or a suite YAML file")
    run.add_argument("--robot", default="", help="only these robots (comma-separated)")
    run.add_argument("--tasks", default="", help="only these tasks (comma-separated)")
    run.add_argument("--episodes", type=int, default=None, help="episodes per cell (overrides the suite)")
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    run.add_argument("--out", type=Path, default=None, help="run directory (default runs/<suite>-<policy>)")
    run.add_argument("--video", default="examples", help="examples (default), all or none (see below)")
    run.add_argument("--seed", type=int, default=None, help="suite seed (overrides the suite)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run: only missing episodes")
    run.add_argument("--force", action="store_true", help="replace an earlier simeval run in --out (only the files "
                                                          "that run wrote are removed)")
    run.add_argument("--episode", default=None, help="re-run this one episode id alone")
    _add_backend_flags(run)
    remote = run.add_argument_group("policy servers (--policy ws://HOST:PORT or wss://...)")
    remote.add_argument("--io", default=None, help="I/O profile: simeval (default) or libero (openpi's LIBERO "
                                                   "example: 224 px images, 8-D state, prompt, delta-pose actions)")
    remote.add_argument("--replan", type=int, default=None, help="steps of each returned chunk run before asking "
                                                                 "again (default: the whole chunk)")
    remote.add_argument("--timeout", type=bounded_float(0, 86_400, low_open=True), default=None,
                        help="seconds to wait for one reply, at most a day (default 60)")
    remote.add_argument("--api-key", default=None, help="sent as 'Authorization: Api-Key KEY'")

    srv = sub.add_parser("serve", help="serve a policy over openpi's websocket protocol")
    srv.add_argument("--policy", required=True, help="any policy simeval run accepts")
    srv.add_argument("--io", default="simeval", help="I/O profile the requests are read in: simeval or libero")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only; any other needs "
                                                         "--api-key or --insecure)")
    srv.add_argument("--insecure", action="store_true", help="serve beyond the loopback without an API key")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    srv.add_argument("--api-key", default=None, help="refuse connections without 'Authorization: Api-Key KEY'")
    srv.add_argument("--max-batch", type=int, default=8, help="requests run in one policy call at most (8)")
    srv.add_argument("--batch-wait-ms", type=bounded_float(0, 1000), default=0.0,
                     help="longest wait for more requests, 0..1000 (default 0: those that arrive during a call form "
                          "the next)")
    srv.add_argument("--max-message-mb", type=bounded_float(0, 65536, low_open=True), default=None,
                     help="largest request accepted, in MB (default: the profile's largest legitimate request)")
    srv.add_argument("--max-connections", type=int, default=64, help="connections open at once; more get HTTP 503 (64)")
    srv.add_argument("--threads", type=int, default=None, help="torch threads for the policy (default: torch's)")

    collect = sub.add_parser("collect", help="record scripted demonstrations (with action noise) for training")
    collect.add_argument("--suite", required=True, help="a built-in suite or a suite YAML file")
    collect.add_argument("--out", type=Path, required=True, help="dataset directory")
    collect.add_argument("--robot", default="", help="only these robots (comma-separated)")
    collect.add_argument("--tasks", default="", help="only these tasks (comma-separated)")
    collect.add_argument("--episodes", type=int, default=None, help="episodes per cell (overrides the suite)")
    collect.add_argument("--noise", type=bounded_float(0, 1), default=0.1,
                         help="std of the noise on executed arm actions, 0..1 (0.1)")
    collect.add_argument("--rot-noise", type=bounded_float(0, 1), default=None,
                         help="std of the noise on the rotation dims (default: --noise)")
    collect.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    collect.add_argument("--seed", type=int, default=None, help="suite seed (overrides the suite)")
    collect.add_argument("--keep-failures", action="store_true", help="also keep failed episodes' demos")
    collect.add_argument("--resume", action="store_true", help="continue: only missing episodes")
    collect.add_argument("--force", action="store_true", help="replace an earlier simeval dataset in --out (only "
                                                              "the files it wrote are removed)")
    _add_backend_flags(collect)

    train = sub.add_parser("train", help="behaviour cloning of the reference VLA from demonstrations")
    train.add_argument("--config", type=Path, required=True, help="YAML with model: and train: sections")
    train.add_argument("--data", type=Path, nargs="+", required=True, help="dataset directories (simeval collect)")
    train.add_argument("--out", type=Path, required=True, help="training directory (checkpoints, metrics, curve)")
    train.add_argument("--steps", type=int, default=None, help="override train.steps")
    train.add_argument("--resume", action="store_true", help="continue from <out>/latest")

    ft = sub.add_parser("finetune", help="adapt a checkpoint to new demonstrations with one adapter method")
    ft.add_argument("--policy", type=Path, required=True, help="base checkpoint directory (e.g. results/reference)")
    ft.add_argument("--method", required=True, help="full, lora, lora_sp, gse, last_k, clp or capvector")
    ft.add_argument("--data", type=Path, nargs="+", required=True, help="dataset directories (simeval collect)")
    ft.add_argument("--out", type=Path, required=True, help="adapted checkpoint directory")
    ft.add_argument("--steps", type=int, default=2000)
    ft.add_argument("--batch", type=int, default=32)
    ft.add_argument("--lr", type=bounded_float(0, 1, low_open=True), default=None,
                    help="learning rate in (0, 1] (default: by method)")
    ft.add_argument("--robot", default="", help="only demonstrations of these robots (comma-separated)")
    ft.add_argument("--seed", type=int, default=0)
    if with_methods:
        _add_method_flags(ft)

    check = sub.add_parser("check", help="fail when a run's success rates fell below a baseline's")
    check.add_argument("--run", type=Path, required=True, help="a run directory (or its results.json)")
    check.add_argument("--baseline", type=Path, required=True, help="baseline JSON (a results.json works too), or "
                                                                    "a run directory: then the check is paired")
    check.add_argument("--update", action="store_true", help="write the run as the new baseline instead")
    check.add_argument("--alpha", type=bounded_float(0, 1, True, True), default=0.05,
                       help="one-sided significance in (0, 1) (default 0.05)")
    check.add_argument("--min-effect", type=bounded_float(0, 1, high_open=True), default=0.10,
                       help="smallest drop that counts, in [0, 1) (default 0.10)")
    check.add_argument("--allow-different-suite", action="store_true",
                       help="compare a run of another suite or episode set on the cells both have")

    cmp = sub.add_parser("compare", help="paired comparison of runs over the episodes they share")
    cmp.add_argument("runs", nargs="+", metavar="RUN", help="a run directory, or NAME=RUN1,RUN2,... to pool the "
                                                            "runs (seeds) of one method")
    cmp.add_argument("--out", type=Path, default=None, help="where compare.{json,md,png} go (default "
                                                            "runs/compare-A-vs-B)")
    cmp.add_argument("--levels", action="store_true", help="also compare each perturbation level")

    lst = sub.add_parser("list", help="list environments, tasks, robots or suites")
    lst.add_argument("what", choices=("envs", "tasks", "robots", "suites"))
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument("--world", default="simeval", help="tasks of this world: simeval (default), a LIBERO benchmark "
                                                        "(libero_spatial, libero_object, libero_goal, libero_10, libero_90) "
                                                        "or libero_plus (LIBERO-Plus's variants)")

    render = sub.add_parser("render-tasks", help="a grid picture of every task on every robot (agentview)")
    render.add_argument("--out", type=Path, default=Path("results/tasks.png"))
    render.add_argument("--size", type=int, default=256, help="pixels per tile")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    render.add_argument("--robots", default="", help="comma-separated robot names (default: all)")
    render.add_argument("--profile", default="fast", help="render profile: fast or full")
    render.add_argument("--columns", type=int, default=4, help="tiles per row")
    gallery = sub.add_parser("gallery", help="agentview for each perturbation dimension (rows) at levels 0-5")
    gallery.add_argument("--task", default="PutCubeOnPlate")
    gallery.add_argument("--robot", default="Piper")
    gallery.add_argument("--out", type=Path, default=None, help="PNG path (default results/gallery_<robot>.png)")
    gallery.add_argument("--size", type=int, default=160, help="pixels per tile")
    gallery.add_argument("--seed", type=int, default=0)
    gallery.add_argument("--profile", default="fast", help="render profile: fast or full")
    add_setup_parser(sub)
    return parser


def _suite_from_args(args: argparse.Namespace):
    """The suite named by ``--suite``, filtered and overridden by the other flags."""
    from simeval import worlds
    from simeval.suites import load_suite

    suite = load_suite(args.suite)
    if args.robot:
        suite.robots = [r for r in names(args.robot, worlds.robots(suite.world), "robot") if r in suite.robots] or \
            _fail(f"--robot {args.robot}: none of these robots is in suite {suite.name!r} ({', '.join(suite.robots)})")
    if args.tasks:
        chosen = set(worlds.resolve_tasks(suite.world, [t.strip() for t in args.tasks.split(",") if t.strip()]))
        suite.tasks = [t for t in suite.tasks if t in chosen] or \
            _fail(f"--tasks {args.tasks}: none of these tasks is in suite {suite.name!r}")
    if args.episodes is not None:
        if args.episodes < 1:
            raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
        most = min((worlds.max_episodes(suite.world, t) or args.episodes) for t in suite.tasks)
        if args.episodes > most:
            raise UsageError(f"--episodes {args.episodes}: the tasks of suite {suite.name!r} have {most} init states")
        suite.episodes = args.episodes
    if args.seed is not None:
        suite.seed = args.seed
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    return suite


def _cmd_collect(args: argparse.Namespace) -> int:
    from simeval.collect import collect
    from simeval.harness import RunRequest

    suite = _suite_from_args(args)
    policy = f"scripted+noise{args.noise}" + ("" if args.rot_noise is None else f"+rot{args.rot_noise}")
    request = RunRequest(suite=suite, policy=policy, out=args.out, workers=args.workers, video="none",
                         resume=args.resume, force=args.force, **_backend(args))
    summary = collect(request, args.noise, keep_failures=args.keep_failures, rot_noise=args.rot_noise)
    print(f"{summary['demos']} demonstrations ({summary['frames']} frames) from {summary['episodes']} episodes "
          f"({summary['successes']} succeeded) in {args.out}/demos")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from policies.train import train

    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    missing = [str(d) for d in args.data if not d.is_dir()]
    if missing:
        raise UsageError(f"--data: no such dataset directory {', '.join(missing)}")
    with writing(args.out):  # policies' writes are plain open/write: a full disk's error names no file
        summary = train(args.config, args.data, args.out, steps=args.steps, resume=args.resume)
    print(f"trained {summary['steps']} steps on {summary['device']} in {summary['seconds']:.0f} s, final loss "
          f"{summary['loss']:.4f}; checkpoint {summary['checkpoint']}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from policies.finetune import finetune

    if args.steps < 1 or args.batch < 1:
        raise UsageError(f"--steps and --batch must be >= 1, got {args.steps}, {args.batch}")
    missing = [str(d) for d in [args.policy, *args.data] if not d.is_dir()]
    if missing:
        raise UsageError(f"no such directory {', '.join(missing)} (--policy is a checkpoint, --data a dataset)")
    from policies.adapters.registry import PACKAGES, get_method

    if args.method not in PACKAGES:
        raise UsageError(f"unknown --method {args.method!r}; valid methods: {', '.join(PACKAGES)}")
    options = {k[len("opt_"):]: v for k, v in vars(args).items() if k.startswith("opt_") and v is not None}
    own = get_method(args.method).options()
    foreign = [flag_of(name) for name in options if name not in own]
    if foreign:
        raise UsageError(f"{', '.join(foreign)} does not apply to method {args.method}; its options: "
                         f"{', '.join(flag_of(name) for name in own)}")
    robots = tuple(r for r in args.robot.split(",") if r)
    with writing(args.out):
        summary = finetune(args.policy, args.method, options, args.data, args.out, steps=args.steps,
                           batch=args.batch, lr=args.lr, robots=robots, seed=args.seed)
    counts = summary["trainable"]["total"], summary["total"]["total"]
    print(f"{args.method}: {counts[0]:,} of {counts[1]:,} parameters trained ({counts[0] / counts[1]:.2%}), "
          f"{summary['steps']} steps in {summary['train_seconds']:.0f} s; adapted checkpoint {args.out}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from simeval.harness import RunRequest, default_out, execute
    from simeval.video import MODES

    suite = _suite_from_args(args)
    if args.video not in MODES:
        raise UsageError(f"unknown --video mode {args.video!r}; valid modes: {', '.join(MODES)}")
    backend = _backend(args)
    from policies.loader import is_remote, load_policy

    given = {"io": args.io, "replan": args.replan, "timeout": args.timeout, "api_key": args.api_key}
    remote = {k: v for k, v in given.items() if v is not None}
    policy = load_policy(args.policy, remote)  # once, and before any directory is touched
    out = args.out or default_out(suite, args.policy, args.episode)
    options = policy.config.described() if is_remote(args.policy) else None
    request = RunRequest(suite=suite, policy=args.policy, out=out, workers=args.workers, video=args.video,
                         resume=args.resume, force=args.force, episode=args.episode, policy_options=options,
                         **backend)
    try:
        results = execute(request, policy)
    finally:
        if hasattr(policy, "close"):
            policy.close()
    overall = results["overall"]
    low, high = overall["ci95"]
    rate = overall["rate"] if overall["rate"] is not None else 0.0
    print(f"{suite.name} / {args.policy}: {overall['successes']}/{overall['n']} succeeded ({rate:.1%}, 95% CI "
          f"{low:.1%}-{high:.1%}); wrote {out}/results.json, summary.md, report.html")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from policies.loader import load_policy
    from simeval.serve import ServeConfig, serve_forever

    config = ServeConfig(io=args.io, host=args.host, port=args.port, api_key=args.api_key, max_batch=args.max_batch,
                         batch_wait_ms=args.batch_wait_ms, insecure=args.insecure,
                         max_message_mb=args.max_message_mb, max_connections=args.max_connections)
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: at least 1")
    policy = load_policy(args.policy)
    if args.threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.threads)
    serve_forever(policy, config, args.policy)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from simeval.compare import compare_methods, default_out, format_markdown, parse_method, write_outputs

    methods = [parse_method(text) for text in args.runs]
    result = compare_methods(methods, levels=args.levels)
    paths = write_outputs(result, args.out or default_out(methods))
    print(format_markdown(result))
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


def _fail(message: str):
    raise UsageError(message)


def _cmd_check(args: argparse.Namespace) -> int:
    from simeval.check import (baseline_from_results, compare, compare_paired, episode_logs, format_report,
                               paired_records, suite_mismatch)
    from simeval.rundir import check_out_path

    path = args.run / "results.json" if args.run.is_dir() else args.run
    run = _read_json(path, "--run")
    if args.update:
        if args.baseline.exists():
            _read_json(args.baseline, "--baseline (to be replaced by --update)")  # never overwrite a foreign file
        check_out_path(args.baseline.parent, "--baseline's folder")
        args.baseline.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.baseline, json.dumps(baseline_from_results(run), indent=1) + "\n")
        print(f"wrote baseline {args.baseline} from {path}")
        return 0
    if not 0 < args.alpha < 1 or not 0 <= args.min_effect < 1:
        raise UsageError(f"--alpha must be in (0, 1) and --min-effect in [0, 1), got {args.alpha}, {args.min_effect}")
    base_dir = args.baseline if args.baseline.is_dir() else None
    baseline = _read_json(base_dir / "results.json" if base_dir else args.baseline, "--baseline")
    logs = episode_logs(args.run, base_dir)
    mismatch = suite_mismatch(run, baseline, logs)
    if mismatch and not args.allow_different_suite:
        raise UsageError(f"--run and --baseline are not runs of the same episodes: {mismatch}; pass "
                         f"--allow-different-suite to compare the cells both have")
    records = paired_records(logs)
    if records is not None:
        result = compare_paired(*records, alpha=args.alpha, min_effect=args.min_effect)
    else:
        result = compare(run, baseline, alpha=args.alpha, min_effect=args.min_effect)
    if mismatch:
        print(f"different suites or episodes ({mismatch}); comparing only the {len(result.cells)} cell(s) both "
              f"have: {', '.join(c.name for c in result.cells) or 'none'}")
    print(format_report(result))
    return 0 if result.passed else 1


def _read_json(path: Path, flag: str) -> dict:
    """A results.json or baseline, checked against its schema (``simeval.check.validate_results``)."""
    from simeval.check import validate_results
    from simeval.schemas import read_json

    return validate_results(read_json(path, f"{flag} {path}"), f"{flag} {path}")


COMMANDS = {"list": cmd_list, "render-tasks": cmd_render_tasks, "gallery": cmd_gallery, "run": _cmd_run,
            "check": _cmd_check, "collect": _cmd_collect, "train": _cmd_train,
            "finetune": _cmd_finetune, "serve": _cmd_serve, "compare": _cmd_compare, "setup": cmd_setup}


def one_line(err: BaseException) -> str:
    """The message on one line, whatever user text it quotes (newlines shown as \\n), at most 1000 characters."""
    text = (str(err) or type(err).__name__).replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= 1000 else text[:997] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = _build_parser(with_methods="finetune" in argv)
        args = parser.parse_args(argv)
        if args.command is None:  # plain ``simeval``: the command list
            parser.print_help()
            return 0
        return COMMANDS[args.command](args)
    except (UsageError, ValueError) as err:
        print(f"simeval: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system said no: read-only, full, a name too long (simeval.files)
        message = describe(err)
        if message is None:
            raise
        print(f"simeval: error: {one_line(message)}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # the run could not go on (e.g. env workers cannot start)
        print(f"simeval: failed: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("simeval: interrupted; finished episodes are in episodes.jsonl (continue with --resume)",
              file=sys.stderr)
        return 130
