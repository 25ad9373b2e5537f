"""Demonstrations as training samples for behaviour cloning (format: ``simeval/collect.py``).

Every step of every demonstration is a sample: the two camera images and the state at step t, the
instruction, and the chunk of the next ``chunk`` clean expert actions (steps past the end repeat
the last action and are masked out of the loss). Images are resized once at load time to the
model's input size, so a dataset of a few hundred episodes fits in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CAMERAS = ("agentview", "wrist")


@dataclass
class DemoSet:
    """All demonstrations, concatenated: ``index[i] = (start of its episode, its step, episode length)``."""

    images: dict[str, torch.Tensor]  # camera -> uint8 [N, S, S, 3]
    state: torch.Tensor  # float32 [N, 8]
    action: torch.Tensor  # float32 [N, 7]
    instruction: list[str]  # per episode
    episode_of: np.ndarray  # [N] episode index of each frame
    start: np.ndarray  # [E] first frame of each episode
    length: np.ndarray  # [E]
    robots: list[str]
    render_size: int | None = None  # the size the frames were rendered at (None: mixed sizes)

    def __len__(self) -> int:
        return len(self.episode_of)


def _resize(frames: np.ndarray, size: int) -> torch.Tensor:
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    if tensor.shape[-1] != size:
        tensor = F.interpolate(tensor, size=(size, size), mode="area")
    return tensor.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def load_demos(folders: list[Path], image_size: int, robots: tuple[str, ...] | None = None,
               tasks: tuple[str, ...] | None = None) -> DemoSet:
    """Every ``demos/*.npz`` under the given dataset folders (optionally only some robots or tasks)."""
    files = sorted(p for folder in folders for p in (Path(folder) / "demos").glob("*.npz"))
    if not files:
        raise ValueError(f"no demonstrations (demos/*.npz) under {', '.join(map(str, folders))}")
    images: dict[str, list] = {c: [] for c in CAMERAS}
    states, actions, instructions, lengths, kept_robots, sizes = [], [], [], [], [], set()
    for path in files:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if (robots and meta["robot"] not in robots) or (tasks and meta["task"] not in tasks):
                continue
            for camera in CAMERAS:
                sizes.add(int(data[camera].shape[1]))
                images[camera].append(_resize(data[camera], image_size))
            states.append(torch.from_numpy(data["state"].astype(np.float32)))
            actions.append(torch.from_numpy(data["action"].astype(np.float32)))
            instructions.append(meta["instruction"])
            lengths.append(len(data["action"]))
            kept_robots.append(meta["robot"])
    if not lengths:
        raise ValueError(f"no demonstrations of robots {robots or 'any'} and tasks {tasks or 'any'} under {', '.join(map(str, folders))}")
    length = np.array(lengths)
    start = np.concatenate([[0], np.cumsum(length)[:-1]])
    return DemoSet(images={c: torch.cat(v) for c, v in images.items()}, state=torch.cat(states),
                   action=torch.cat(actions), instruction=instructions,
                   episode_of=np.repeat(np.arange(len(length)), length), start=start, length=length,
                   robots=kept_robots, render_size=next(iter(sizes)) if len(sizes) == 1 else None)


def sample_batch(demos: DemoSet, frames: np.ndarray, chunk: int) -> dict:
    """The training batch for the given frame indices (action chunks padded with the last action)."""
    episodes = demos.episode_of[frames]
    step = frames - demos.start[episodes]
    offsets = np.arange(chunk)[None, :]
    valid = (step[:, None] + offsets) < demos.length[episodes][:, None]
    last = demos.start[episodes] + demos.length[episodes] - 1
    targets = np.minimum(frames[:, None] + offsets, last[:, None])
    index = torch.from_numpy(frames)
    return {"agentview": demos.images["agentview"][index], "wrist": demos.images["wrist"][index],
            "state": demos.state[index], "instruction": [demos.instruction[e] for e in episodes],
            "actions": demos.action[torch.from_numpy(targets)], "action_mask": torch.from_numpy(valid)}


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """DrQ-style augmentation: pad by ``pad`` pixels (edge) and crop back at a random offset per image."""
    if pad <= 0:
        return images
    b, h, w, _ = images.shape
    padded = F.pad(images.permute(0, 3, 1, 2).float(), (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    crops = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    return crops.round().to(torch.uint8).permute(0, 2, 3, 1)
