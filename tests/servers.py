"""A scripted fake openpi policy server (in a thread) that answers in the ways real servers fail.
``simeval serve`` as a real process is ``simeval.serve.served``."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from policies.remote.wire import pack, unpack

NO_CAMERAS = {"observation_spec": {"cameras": [], "image_size": 32, "privileged": False}, "chunk": 10}


@contextlib.contextmanager
def fake_server(reply: Callable[[dict], object], metadata: dict | None = None) -> Iterator[dict]:
    """An openpi-style server whose reply to each request is ``reply(request)``: bytes are sent as
    msgpack, a str as a text frame followed by a close with 1011 (openpi's error path). Yields a
    dict with its ``port``, the ``requests`` it received, and the same per ``connections``."""
    seen: dict = {"requests": [], "connections": []}

    def handler(ws) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client leaves when its run is over
            serve_one(ws)

    def serve_one(ws) -> None:
        ws.send(pack(NO_CAMERAS if metadata is None else metadata))
        mine: list = []
        seen["connections"].append(mine)
        for frame in ws:
            request = unpack(frame)
            seen["requests"].append(request)
            mine.append(request)
            answer = reply(request)
            if isinstance(answer, str):
                ws.send(answer)
                ws.close(1011, "Internal server error. Traceback included in previous frame.")
                return
            ws.send(pack(answer))

    with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        seen["port"] = server.socket.getsockname()[1]
        yield seen
        server.shutdown()
    thread.join(timeout=5)


def zeros(horizon: int = 10) -> Callable[[dict], dict]:
    """A reply of ``horizon`` do-nothing actions (gripper open)."""
    chunk = np.zeros((horizon, 7), np.float32)
    chunk[:, 6] = -1
    return lambda request: {"actions": chunk}


def memory_mb(pid: int) -> dict[str, float]:
    """A process's resident memory now (``VmRSS``) and at its peak (``VmHWM``), in MB, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def open_sockets(pid: int) -> int:
    """How many sockets a process holds open (its listening socket included), from /proc."""
    import os

    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:  # closed while we looked
            pass
    return count


@contextlib.contextmanager
def policy_server(policy, config) -> Iterator[tuple]:
    """A ``simeval.serve.PolicyServer`` for ``policy`` in a thread of this process; (server, port)."""
    import asyncio

    from simeval.serve import PolicyServer

    ready, box = threading.Event(), {}

    def run() -> None:
        box["server"] = PolicyServer(policy, config, "test")
        loop = box["loop"] = asyncio.new_event_loop()

        def on_ready(port: int) -> None:
            box["port"] = port
            ready.set()
        box["task"] = loop.create_task(box["server"].run(on_ready))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(box["task"])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30), "the policy server did not start"
    try:
        yield box["server"], box["port"]
    finally:
        box["loop"].call_soon_threadsafe(box["task"].cancel)
        thread.join(timeout=10)
