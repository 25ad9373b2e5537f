"""Drives a policy server with the real ``openpi-client`` (run in its own venv: numpy < 2).

Usage: python openpi_driver.py PORT IO IN.npz OUT.npz. ``IN.npz`` holds observations from simeval's
worlds: ``state`` (N, 8), ``instruction`` (N,), ``agentview``/``wrist`` (N, H, W, 3) upright, and
``episode`` rows (id, task, robot, seed; empty id: none). With IO ``libero`` each observation is
built as openpi's LIBERO example builds it from robosuite's raw frames (rows bottom first): turned
180 degrees, resized with padding to 224 by ``openpi_client.image_tools``, with ``libero_state``
(N, 8) as the state. Writes the replies' actions, the images sent and the server's metadata."""

import json
import sys

import numpy as np
from openpi_client import image_tools, websocket_client_policy


def main() -> None:
    port, io, source, target = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    data = np.load(source)
    client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
    actions, sent = [], []
    for i in range(len(data["state"])):
        if io == "libero":
            raw = {cam: data[cam][i][::-1] for cam in ("agentview", "wrist")}  # robosuite's row order
            images = {cam: image_tools.convert_to_uint8(image_tools.resize_with_pad(
                np.ascontiguousarray(raw[cam][::-1, ::-1]), 224, 224)) for cam in raw}
            obs = {"observation/image": images["agentview"], "observation/wrist_image": images["wrist"],
                   "observation/state": data["libero_state"][i], "prompt": str(data["instruction"][i])}
            sent.append(np.stack([images["agentview"], images["wrist"]]))
        else:
            obs = {"state": data["state"][i], "instruction": str(data["instruction"][i]),
                   "agentview": data["agentview"][i], "wrist": data["wrist"][i]}
            episode_id, task, robot, seed = (str(v) for v in data["episode"][i])
            if episode_id:
                obs["episode"] = {"id": episode_id, "task": task, "robot": robot, "seed": int(seed)}
        actions.append(np.asarray(client.infer(obs)["actions"]))
    np.savez(target, actions=np.stack(actions), sent=np.stack(sent) if sent else np.zeros(0),
             metadata=json.dumps(client.get_server_metadata()), numpy=np.__version__)


if __name__ == "__main__":
    main()
