"""``simeval serve``: any simeval policy behind openpi's websocket protocol.

The server sends its metadata when a connection opens (the policy's observation spec, its chunk
length, the I/O profile); after that each frame from the client is one observation in the chosen
profile (:mod:`policies.remote.profiles`) and each reply ``{"actions": (H, 7), "server_timing",
"policy_timing"}``. ``GET /healthz`` answers 200. With an API key, a handshake without
``Authorization: Api-Key KEY`` is refused with HTTP 401. On a bad request or a policy failure the
connection gets the error's one-line message as a text frame (the traceback goes to the server's
log, never to the client) and is closed with code 1011, as openpi's server does.

What the network can send is bounded: a non-loopback ``--host`` needs ``--api-key`` (or an explicit
``--insecure``); a frame larger than the profile's largest legitimate request (``--max-message-mb``
raises it) closes its connection with 1009 before its payload is read; beyond ``--max-connections``
a handshake is refused with HTTP 503 and a one-line body, before any slot or handler exists (openpi's
client raises it where it would raise for a missing server: "server rejected WebSocket connection:
HTTP 503"; simeval's shows the body); each connection buffers at most ``MAX_QUEUE`` frames. The
server's memory for requests is thus at most about max_connections x (MAX_QUEUE + 3) x max_size.

Each connection is a slot of the policy. Requests that arrive together on several connections are
run as one policy call (up to ``max_batch``, waiting at most ``batch_wait_ms`` for more, and not at
all once every open connection has a request waiting), on one inference thread, so one server keeps
a whole env pool busy. A request carrying an episode start (the ``simeval`` profile sends one on an
episode's first request) resets its slot; a new connection without one starts with seed 0. A
request that fails (its reset, or the policy call) fails alone: each slot is reset on its own, and
when a batched call raises, each of its requests is run again alone, so the others get their
actions. That is exact for a policy whose ``act`` changes no state before it raises, or that fails a
bad slot with a ``SlotError`` (the scripted experts do). A closed connection's slot number is
reused by the next connection, so per-slot state is bounded by the connections open at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import hmac
import http
import ipaddress
import logging
import re
import select
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import Any, Iterator

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from policies.base import Batch, EpisodeStart, Policy, SlotError, per_slot
from policies.remote.profiles import ProfileError, SlotObservation, get_profile
from policies.remote.wire import WireError, pack, unpack

READY_TIMEOUT_S = 120  # a child server's start: imports, model loading
MAX_QUEUE = 2  # frames a connection buffers before the server stops reading its socket
KEPT_BATCHES = 100_000  # the latest batch sizes kept for tests and benchmarks (a long serve makes millions)
log = logging.getLogger("simeval.serve")


@dataclass(frozen=True)
class ServeConfig:
    """Where and how to serve; validated so that a bad flag is one line, not a traceback."""

    io: str = "simeval"
    host: str = "127.0.0.1"  # loopback unless asked otherwise
    port: int = 8000  # 0: any free port (the one chosen is printed)
    api_key: str | None = None
    max_batch: int = 8
    batch_wait_ms: float = 0.0  # requests that arrive during a policy call always form the next batch
    insecure: bool = False  # serve beyond the loopback without an API key, knowingly
    max_message_mb: float | None = None  # None: the profile's largest legitimate request
    max_connections: int = 64

    def __post_init__(self) -> None:
        get_profile(self.io)
        if not is_loopback(self.host) and self.api_key is None and not self.insecure:
            raise ValueError(f"--host {self.host!r} accepts connections from other machines, and without --api-key "
                             f"anyone who reaches the port drives the policy; give --api-key KEY, or --insecure to "
                             f"serve without one")
        if self.max_message_mb is not None and not 0 < self.max_message_mb <= 65536:
            raise ValueError(f"--max-message-mb {self.max_message_mb!r}: megabytes in (0, 65536]")
        if not isinstance(self.max_connections, int) or not 1 <= self.max_connections <= 65536:
            raise ValueError(f"--max-connections {self.max_connections!r}: an integer in 1..65536")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port!r}: a port number in 0..65535 (0: any free port)")
        if not isinstance(self.max_batch, int) or not 1 <= self.max_batch <= 1024:
            raise ValueError(f"--max-batch {self.max_batch!r}: an integer in 1..1024")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ValueError(f"--batch-wait-ms {self.batch_wait_ms!r}: milliseconds in 0..1000")
        if self.api_key is not None and (not self.api_key or not self.api_key.isprintable()):
            raise ValueError("--api-key: a non-empty key of printable characters")


@dataclass
class _Request:
    slot: int
    obs: SlotObservation
    fresh: bool  # the connection's first request: reset the slot even without an episode start
    future: asyncio.Future


class PolicyServer:
    """One policy, many connections; see the module docstring."""

    def __init__(self, policy: Policy, config: ServeConfig, name: str = "") -> None:
        self.policy, self.config = policy, config
        self.profile = get_profile(config.io)
        spec = policy.observation_spec
        if spec.privileged and not self.profile.carries_privileged:
            raise ValueError(f"this policy reads simulator state, which the {self.profile.name} profile does not "
                             f"carry; serve it with --io simeval")
        self.spec = spec  # image_size None: the client's suite's size, as in a local run
        self.metadata = {
            "server": "simeval", "version": _version(), "policy": name, "io": self.profile.name,
            "observation_spec": {"cameras": list(self.spec.cameras), "image_size": self.spec.image_size,
                                 "privileged": self.spec.privileged},
            "chunk": int(policy.chunk), "action_dim": 7, "max_batch": config.max_batch,
        }
        mb = config.max_message_mb
        self.max_size = int(mb * 2**20) if mb is not None else self.profile.max_request_bytes(spec)
        self._free: list[int] = []  # slot numbers of closed connections, reused smallest first
        self._next_slot = 0
        self._admitted: dict[ServerConnection, asyncio.Task] = {}  # let through, not yet closed: their watchers
        self._open = 0  # connections now open: a batch never waits for more requests than that
        self._queue: asyncio.Queue[_Request] | None = None
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simeval-policy")
        self.batches: deque[int] = deque(maxlen=KEPT_BATCHES)  # the size of each policy call

    def _process_request(self, connection: ServerConnection, request) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.config.api_key is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Api-Key {self.config.api_key}".encode()):
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        limit = self.config.max_connections
        if len(self._admitted) >= limit:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"server busy: {limit} connections open, its limit (--max-connections)\n")
        watcher = self._admitted[connection] = asyncio.create_task(connection.wait_closed())
        watcher.add_done_callback(lambda _: self._admitted.pop(connection, None))
        return None

    @property
    def connections(self) -> int:
        """Connections admitted and not yet closed (handshakes included): for tests and the soak."""
        return len(self._admitted)

    def _take_slot(self) -> int:
        if self._free:
            return heapq.heappop(self._free)
        self._next_slot += 1
        return self._next_slot - 1

    async def _handle(self, ws: ServerConnection) -> None:
        slot, fresh = self._take_slot(), True  # given back only once its last request has its answer
        self._open += 1
        try:
            await ws.send(pack(self.metadata))
            while True:
                try:
                    frame = await ws.recv()
                except ConnectionClosed:
                    return
                started = time.perf_counter()
                try:
                    if isinstance(frame, str):
                        raise WireError("a text frame; requests are binary msgpack")
                    message = unpack(frame)
                    if not isinstance(message, dict):
                        raise ProfileError(f"the request is a {type(message).__name__}, not a map of fields")
                    obs = self.profile.decode(message, self.spec)
                    future = asyncio.get_running_loop().create_future()
                    self._queue.put_nowait(_Request(slot, obs, fresh, future))
                    fresh = False
                    chunk, infer_s, batch = await future
                except Exception as err:  # noqa: BLE001 - its message goes to the client, as openpi's server does
                    await _fail(ws, err)
                    return
                reply = {"actions": self.profile.actions_to_wire(chunk),
                         "policy_timing": {"infer_ms": 1000 * infer_s, "batch": batch},
                         "server_timing": {"infer_ms": 1000 * (time.perf_counter() - started)}}
                try:
                    await ws.send(pack(reply))
                except ConnectionClosed:
                    return
        finally:
            self._open -= 1
            heapq.heappush(self._free, slot)

    async def _batcher(self) -> None:
        """Policy calls, one batch at a time, on the inference thread."""
        loop = asyncio.get_running_loop()
        wait_s = self.config.batch_wait_ms / 1000
        while True:
            items = [await self._queue.get()]
            deadline = loop.time() + wait_s
            while len(items) < self.config.max_batch:
                if not self._queue.empty():
                    items.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if len(items) >= self._open or remaining <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            try:
                answers, infer_s = await loop.run_in_executor(self._inference, self._infer, items)
            except Exception as err:  # noqa: BLE001 - _infer fails requests alone; this is a last resort
                log.error("a batch of %d requests failed", len(items), exc_info=err)
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(err)
                continue
            for item, answer in zip(items, answers):
                if item.future.done():
                    continue
                if isinstance(answer, BaseException):
                    item.future.set_exception(answer)
                elif isinstance(answer, SlotError):
                    item.future.set_exception(RuntimeError(answer.reason))
                else:
                    item.future.set_result((answer, infer_s, len(items)))

    def _infer(self, items: list[_Request]) -> tuple[list, float]:
        """One answer per request: a chunk, a ``SlotError`` or the exception that failed it alone."""
        started = time.perf_counter()
        answers: list = [None] * len(items)
        ready = []
        for i, item in enumerate(items):
            start = item.obs.start
            if start is None and item.fresh:
                start = EpisodeStart(f"connection-{item.slot}", "", "", 0)
            try:
                if start is not None:
                    self.policy.reset([item.slot], [start])
                ready.append(i)
            except Exception as err:  # noqa: BLE001 - that request's own failure
                log.warning("slot %d: reset failed", item.slot, exc_info=err)
                answers[i] = err
        for i, answer in zip(ready, self._act([items[i] for i in ready])):
            answers[i] = answer
        return answers, time.perf_counter() - started

    def _act(self, items: list[_Request]) -> list:
        """The policy on ``items`` as one call; if it raises, on each request alone."""
        if not items:
            return []
        batch = Batch(slots=[i.slot for i in items], state=np.stack([i.obs.state for i in items]),
                      instruction=[i.obs.instruction for i in items])
        for cam in self.spec.cameras:
            setattr(batch, cam, np.stack([i.obs.images[cam] for i in items]))
        if self.spec.privileged:
            batch.privileged = [i.obs.privileged for i in items]
        self.batches.append(len(items))
        try:
            return per_slot(self.policy.act(batch), len(items))
        except Exception as err:  # noqa: BLE001 - one request's failure, found by running each alone
            if len(items) == 1:
                log.warning("slot %d: the policy failed", items[0].slot, exc_info=err)
                return [err]
        return [self._act([item])[0] for item in items]

    async def run(self, ready=None) -> None:
        """Serve until cancelled; ``ready(port)`` is called once the socket listens."""
        self._queue = asyncio.Queue()
        batcher = asyncio.create_task(self._batcher())
        try:
            async with serve(self._handle, self.config.host, self.config.port, compression=None,
                             max_size=self.max_size, max_queue=MAX_QUEUE,
                             process_request=self._process_request) as server:
                port = server.sockets[0].getsockname()[1]
                if ready is not None:
                    ready(port)
                await server.serve_forever()
        finally:
            batcher.cancel()
            self._inference.shutdown(wait=False)


async def _fail(ws: ServerConnection, err: BaseException) -> None:
    """openpi's failure: the error as a text frame, then close with 1011 (internal error). The text
    is one line (no traceback, no server paths): the traceback is in the server's log."""
    text = (str(err) or "no message").strip().replace("\r", " ").replace("\n", " | ")
    text = f"{type(err).__name__}: {text}"[:1000]
    try:
        await ws.send(text)
        await ws.close(CloseCode.INTERNAL_ERROR, "Internal server error; the reason is the previous frame.")
    except ConnectionClosed:
        pass


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens to this machine only (a name other than localhost: no)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _version() -> str:
    try:
        return importlib_metadata.version("simeval")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def serve_forever(policy: Policy, config: ServeConfig, name: str) -> None:
    """Serve until Ctrl-C, saying on stdout where (a line tests and scripts can wait for)."""
    server = PolicyServer(policy, config, name)
    logging.basicConfig(format="simeval serve: %(levelname)s %(message)s", stream=sys.stderr)

    if config.insecure and config.api_key is None and not is_loopback(config.host):
        print(f"simeval: warning: serving on {config.host} without an API key (--insecure): anyone who reaches "
              f"port {config.port} can use the policy", file=sys.stderr, flush=True)

    def ready(port: int) -> None:
        print(f"simeval: serving {name} on ws://{config.host}:{port} (io {config.io}, max batch "
              f"{config.max_batch}, messages up to {server.max_size / 2**20:.1f} MB, at most "
              f"{config.max_connections} connections{', API key required' if config.api_key else ''})", flush=True)

    try:
        asyncio.run(server.run(ready))
    except OSError as err:
        raise ValueError(f"cannot listen on {config.host}:{config.port}: {err.strerror or err}") from None
    except KeyboardInterrupt:
        print("simeval: server stopped", file=sys.stderr)


@contextlib.contextmanager
def served(policy: str, *flags: str, port: int = 0) -> Iterator[tuple[int, subprocess.Popen]]:
    """``simeval serve --policy POLICY`` in a child process until the block ends; (port, process).
    For benchmarks, tests and scripts that evaluate over the wire on one machine."""
    proc = start_server(policy, *flags, port=port)
    try:
        yield wait_ready(proc), proc
    finally:
        stop_server(proc)


def start_server(policy: str, *flags: str, port: int = 0, threads: int = 1) -> subprocess.Popen:
    """The child process (its stderr goes to a temporary file, read if it fails to start)."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "simeval", "serve", "--policy", policy, "--port", str(port),
                             "--threads", str(threads), *flags], stdout=subprocess.PIPE, stderr=log, text=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def wait_ready(proc: subprocess.Popen) -> int:
    """The port from the server's 'serving ... on ws://HOST:PORT' line; ``RuntimeError`` if it exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            match = re.search(r"on ws://[^:]+:(\d+)", line)
            if match:
                return int(match.group(1))
        if proc.poll() is not None:
            proc.log.seek(0)
            raise RuntimeError(f"simeval serve exited {proc.returncode}: {proc.log.read().decode()[-2000:]}")
    raise RuntimeError(f"simeval serve did not say it was ready within {READY_TIMEOUT_S} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.log.close()
