"""``simeval setup libero``: build (or with --check, verify) LIBERO's side environment ahead of its first use."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_setup_parser(sub: argparse._SubParsersAction) -> None:
    setup = sub.add_parser("setup", help="build a side environment ahead of use (libero: LIBERO's own venv, "
                                         "assets and config)")
    setup.add_argument("what", choices=("libero",), help="libero: hf-libero with robosuite 1.4.0, in its own venv")
    setup.add_argument("--home", type=Path, default=None, metavar="DIR",
                       help="where it lives (default $SIMEVAL_LIBERO_HOME, else ~/.cache/simeval/libero)")
    setup.add_argument("--assets", type=Path, default=None, metavar="DIR",
                       help="the assets folder of a LIBERO checkout to use (verified, linked, never modified) "
                            "instead of downloading LIBERO's assets")
    setup.add_argument("--plus-assets", type=Path, default=None, metavar="PATH",
                       help="LIBERO-Plus's asset archive (its assets.zip from the Hugging Face hub, or the folder it "
                            "extracts to) to install for the light, background and layout variants (checked, "
                            "never modified; its sha256 is recorded)")
    setup.add_argument("--check", action="store_true", help="verify an existing set-up fully (every asset's hash, "
                                                            "the import); builds nothing")


def disk_usage(path: Path) -> int:
    """Bytes on disk under ``path``, links not followed (linked assets are the user's, not counted)."""
    total, seen = 0, set()
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def cmd_setup(args: argparse.Namespace) -> int:
    from simeval.libero import sideenv

    if args.check and (args.assets is not None or args.plus_assets is not None):
        raise ValueError("--check verifies the set-up as it is; leave out --assets and --plus-assets (or drop "
                         "--check to install them)")
    if args.check:
        env = sideenv.check_side_env(args.home)
        print(f"simeval: LIBERO's side environment is complete: {len(sideenv.read_manifest())} assets verified, "
              f"LIBERO and LIBERO-Plus import")
    else:
        try:
            env = sideenv.ensure_side_env(args.home, args.assets, plus_assets=args.plus_assets)
        except KeyboardInterrupt:  # not main()'s message about episodes
            print("\nsimeval: interrupted; simeval setup libero resumes where this stopped", file=sys.stderr)
            return 130
    linked = f"; assets linked to {os.path.realpath(env.assets)}, not counted" if env.assets.is_symlink() else ""
    print(f"simeval: LIBERO's side environment: {sideenv._tilde(env.home)} ({_size(disk_usage(env.home))} "
          f"on disk{linked})")
    print(f"  python: {env.python}")
    print(f"  LIBERO_CONFIG_PATH={env.config_dir}")
    plus_why = sideenv.plus_assets_problem(env.home)
    print(f"  LIBERO-Plus: camera, robot, language and noise variants ready; light, background and layout: "
          f"{'ready' if plus_why is None else plus_why}")
    return 0
