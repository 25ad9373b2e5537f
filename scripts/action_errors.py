"""Where a checkpoint's actions differ from the expert's: mean absolute error per action dimension
and task, on recorded demonstrations (the first action of each predicted chunk against the clean
expert label at every step).

    python scripts/action_errors.py --policy results/reference --data data/panda-nominal [--per-task 10]
        [--out results/reference_action_errors.md]

Run on the training demonstrations it measures how well the model fits them (not generalisation);
on a fresh collection (another ``--seed``) it measures held-out error. Dimensions: dx dy dz (position),
rx ry rz (rotation, rz = yaw about the vertical), grip.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.vla import load_checkpoint  # noqa: E402

DIMS = ("dx", "dy", "dz", "rx", "ry", "rz", "grip")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=ROOT / "results" / "reference")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "panda-nominal")
    parser.add_argument("--per-task", type=int, default=10, help="demonstrations per task")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_checkpoint(args.policy).model
    errors: dict[str, list[np.ndarray]] = defaultdict(list)
    for path in sorted((args.data / "demos").glob("*.npz")):
        with np.load(path) as demo:
            meta = json.loads(str(demo["meta"]))
            if len(errors[meta["task"]]) >= args.per_task:
                continue
            batch = {"agentview": torch.from_numpy(demo["agentview"]), "wrist": torch.from_numpy(demo["wrist"]),
                     "state": torch.from_numpy(demo["state"]), "instruction": [meta["instruction"]] * len(demo["state"])}
            with torch.no_grad():
                predicted = model.predict(batch)[:, 0].numpy()  # [T, 7]
            errors[meta["task"]].append(np.abs(predicted - demo["action"]))
    rows = ["| task | demos | " + " | ".join(DIMS) + " | mean |", "|---|---:|" + "---:|" * (len(DIMS) + 1)]
    for task, runs in sorted(errors.items()):
        err = np.concatenate(runs).mean(0)
        rows.append(f"| {task} | {len(runs)} | " + " | ".join(f"{e:.3f}" for e in err) + f" | {err.mean():.3f} |")
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.write_text(f"Mean absolute action error of `{args.policy.name}` against the expert labels of "
                            f"`{args.data}` (first action of each chunk, every step).\n\n{table}\n")


if __name__ == "__main__":
    main()
