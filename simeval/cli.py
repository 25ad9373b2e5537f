"""The ``simeval`` command line: ``simeval list envs [--json]``, ``simeval render-tasks``.

Bad input gets one line on stderr naming what is wrong and what is valid, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn, Sequence


class UsageError(Exception):
    """A user mistake: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="simeval", description="Evaluate VLA policies on perturbed MuJoCo tabletop worlds.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    lst = sub.add_parser("list", help="list environments, tasks or robots")
    lst.add_argument("what", choices=("envs", "tasks", "robots"))
    lst.add_argument("--json", action="store_true", help="machine-readable output")

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
    return parser


def _cmd_list(args: argparse.Namespace) -> int:
    import envs
    from envs.robots import ROBOTS
    from envs.tasks.library import TASKS

    if args.what == "envs":
        rows = [{"id": envs.registration.env_id(t.name, r), "task": t.name, "robot": r, "family": t.family,
                 "instruction": t.instruction, "max_steps": t.max_steps} for t in TASKS for r in ROBOTS]
        if args.json:
            print(json.dumps([row["id"] for row in rows]))
        else:
            width = max(len(row["id"]) for row in rows)
            for row in rows:
                print(f"{row['id']:<{width}}  {row['family']:<8} {row['max_steps']:>4} steps  \"{row['instruction']}\"")
    elif args.what == "tasks":
        rows = [{"task": t.name, "family": t.family, "instruction": t.instruction, "max_steps": t.max_steps,
                 "goals": [repr(g) for g in t.goals]} for t in TASKS]
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            for row in rows:
                print(f"{row['task']:<30} {row['family']:<8} \"{row['instruction']}\"  goals: {', '.join(row['goals'])}")
    else:
        rows = [{"robot": name, "reach_m": entry.info.reach, "arm_joints": len(entry.info.arm_joints)}
                for name, entry in ROBOTS.items()]
        print(json.dumps(rows) if args.json else "\n".join(f"{r['robot']:<8} {r['arm_joints']} joints, reach "
                                                              f"{r['reach_m']} m" for r in rows))
    return 0


def _names(text: str, valid: Sequence[str], what: str) -> list[str]:
    if not text:
        return list(valid)
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad:
        raise UsageError(f"unknown {what} {', '.join(bad)}; valid {what}s: {', '.join(valid)}")
    return names


def _cmd_render_tasks(args: argparse.Namespace) -> int:
    from envs.robots import ROBOTS
    from envs.scene import PROFILES
    from envs.tasks.library import TASKS
    from simeval.pictures import task_grid

    if args.profile not in PROFILES:
        raise UsageError(f"unknown --profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    if not 32 <= args.size <= 1024:
        raise UsageError(f"--size must be within 32..1024, got {args.size}")
    tasks = _names(args.tasks, [t.name for t in TASKS], "task")
    robots = _names(args.robots, list(ROBOTS), "robot")
    if args.columns < 1:
        raise UsageError(f"--columns must be >= 1, got {args.columns}")
    path = task_grid(tasks, robots, args.out, size=args.size, seed=args.seed, profile=args.profile,
                     columns=args.columns)
    print(f"wrote {path}")
    return 0


def _cmd_gallery(args: argparse.Namespace) -> int:
    from envs.robots import ROBOTS
    from envs.scene import PROFILES
    from envs.tasks.library import TASKS
    from simeval.pictures import perturbation_gallery

    _names(args.task, [t.name for t in TASKS], "task")
    _names(args.robot, list(ROBOTS), "robot")
    if args.profile not in PROFILES:
        raise UsageError(f"unknown --profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    if not 64 <= args.size <= 1024:
        raise UsageError(f"--size must be within 64..1024, got {args.size}")
    out = args.out or Path(f"results/gallery_{args.robot.lower()}.png")
    path = perturbation_gallery(args.task, args.robot, out, size=args.size, seed=args.seed, profile=args.profile)
    print(f"wrote {path}")
    return 0


COMMANDS = {"list": _cmd_list, "render-tasks": _cmd_render_tasks, "gallery": _cmd_gallery}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UsageError, ValueError) as err:
        print(f"simeval: error: {err}", file=sys.stderr)
        return 2
