"""The commands that look at the worlds without running a policy: ``list``, ``render-tasks``, ``gallery``.

Bad input raises ``ValueError``, which the CLI's ``main`` turns into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence


def cmd_list(args: argparse.Namespace) -> int:
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
    elif args.what == "suites":
        from simeval.suites import builtin_suites, load_suite

        rows = []
        for name in sorted(builtin_suites()):
            suite = load_suite(name)
            rows.append({"suite": name, "episodes": len(suite.episode_specs()), "description": suite.description})
        if args.json:
            print(json.dumps(rows))
        else:
            for row in rows:
                print(f"{row['suite']:<20} {row['episodes']:>5} episodes  {row['description']}")
    elif args.what == "tasks" and args.world == "libero_plus":
        from simeval.libero import plus

        rows = [{"index": i, "task": v.task, "benchmark": v.benchmark, "category": v.category, "level": v.level,
                 "max_steps": plus.max_steps(v.benchmark), "needs_assets": v.needs_assets}
                for i, v in enumerate(plus.all_variants())]
        print(json.dumps(rows, indent=1) if args.json else
              "\n".join(f"{r['index']:>5}  {r['category']:<10} {r['level'] or '-'}  {r['task']}" for r in rows))
    elif args.what == "tasks" and args.world != "simeval":
        from simeval import worlds
        from simeval.libero import catalog

        worlds.check_world(args.world)
        rows = [{"index": t.index, "task": t.name, "instruction": t.language, "init_states": t.init_states,
                 "max_steps": catalog.max_steps(args.world)} for t in catalog.tasks(args.world)]
        print(json.dumps(rows, indent=1) if args.json else
              "\n".join(f"{r['index']:>3}  {r['task']}  \"{r['instruction']}\"" for r in rows))
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


def names(text: str, valid: Sequence[str], what: str) -> list[str]:
    if not text:
        return list(valid)
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad:
        raise ValueError(f"unknown {what} {', '.join(bad)}; valid {what}s: {', '.join(valid)}")
    return names


def check_picture_out(out: Path) -> None:
    """A picture replaces only an earlier picture: ``--out`` must be new or an existing PNG file."""
    from simeval.rundir import check_out_path

    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: give a .png path")
    check_out_path(out.parent, "--out's folder")
    if out.is_dir() or (out.exists() and out.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"--out {out} exists and is not a PNG picture; choose another path")


def cmd_render_tasks(args: argparse.Namespace) -> int:
    from envs.robots import ROBOTS
    from envs.scene import PROFILES
    from envs.tasks.library import TASKS
    from simeval.pictures import task_grid

    if args.profile not in PROFILES:
        raise ValueError(f"unknown --profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    if not 32 <= args.size <= 1024:
        raise ValueError(f"--size must be within 32..1024, got {args.size}")
    tasks = names(args.tasks, [t.name for t in TASKS], "task")
    robots = names(args.robots, list(ROBOTS), "robot")
    if args.columns < 1:
        raise ValueError(f"--columns must be >= 1, got {args.columns}")
    check_picture_out(args.out)
    path = task_grid(tasks, robots, args.out, size=args.size, seed=args.seed, profile=args.profile,
                     columns=args.columns)
    print(f"wrote {path}")
    return 0


def cmd_gallery(args: argparse.Namespace) -> int:
    from envs.robots import ROBOTS
    from envs.scene import PROFILES
    from envs.tasks.library import TASKS
    from simeval.pictures import perturbation_gallery

    names(args.task, [t.name for t in TASKS], "task")
    names(args.robot, list(ROBOTS), "robot")
    if args.profile not in PROFILES:
        raise ValueError(f"unknown --profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    if not 64 <= args.size <= 1024:
        raise ValueError(f"--size must be within 64..1024, got {args.size}")
    out = args.out or Path(f"results/gallery_{args.robot.lower()}.png")
    check_picture_out(out)
    path = perturbation_gallery(args.task, args.robot, out, size=args.size, seed=args.seed, profile=args.profile)
    print(f"wrote {path}")
    return 0
