"""A policy served elsewhere, over openpi's websocket protocol: ``--policy ws://HOST:PORT``.

Each slot of the env pool keeps its own connection, and the requests of a round go out together
(one thread per slot), so a server that handles connections concurrently is used in parallel. The
server's first frame is its metadata; each request is one slot's observation in the chosen I/O
profile (:mod:`policies.remote.profiles`) and each reply a dict whose ``actions`` (H, D) chunk the
slot runs open-loop for ``replan`` steps (all of it by default), as openpi's LIBERO client does.

Failures never stop a run. A connection lost mid-episode is reopened with exponential backoff and
the episode re-runs from scratch (the runner's limit of attempts then records it as failed); a
reply without ``actions`` or of the wrong shape, the server's error text frame, and a reply later
than ``timeout`` fail that episode with the reason. A server not reachable at start, or one whose
metadata names another I/O profile than ``io`` (simeval's servers do; openpi's send none), is a
one-line ``ValueError`` (exit code 2 from the CLI), before any episode runs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.frames import CloseCode
from websockets.sync.client import ClientConnection, connect

from policies.base import Batch, EpisodeStart, Policy, SlotError
from policies.remote.profiles import ProfileError, SlotObservation, get_profile
from policies.remote.wire import WireError, pack, unpack

SCHEMES = ("ws://", "wss://")
KEPT_TIMES = 100_000  # the latest request times kept for benchmarks (a long run makes millions)
MAX_TIMEOUT_S = 86_400.0  # a day: the CLI's --timeout has the same bound


@dataclass(frozen=True)
class RemoteConfig:
    """How to reach and read a policy server. ``api_key`` is sent as ``Authorization: Api-Key KEY``
    and never written to a run's files."""

    url: str
    io: str = "simeval"
    replan: int | None = None  # steps of each chunk run before asking again; None: the whole chunk
    timeout: float = 60.0  # seconds to wait for one reply
    api_key: str | None = None
    connect_tries: int = 5  # per reconnection, waiting backoff_s, 2 backoff_s, 4 backoff_s ... between
    backoff_s: float = 0.25

    def __post_init__(self) -> None:
        if not self.url.startswith(SCHEMES) or len(self.url) <= len("wss://"):
            raise ValueError(f"policy server address {self.url!r}: give ws://HOST:PORT or wss://HOST:PORT")
        get_profile(self.io)
        if self.replan is not None and (not isinstance(self.replan, int) or self.replan < 1):
            raise ValueError(f"--replan {self.replan!r}: a whole number of steps >= 1")
        if not 0 < self.timeout <= MAX_TIMEOUT_S:  # inf or 1e300 would overflow the socket's timeout
            raise ValueError(f"--timeout {self.timeout!r}: seconds in (0, {MAX_TIMEOUT_S:g}]")
        if self.connect_tries < 1 or not self.backoff_s >= 0:
            raise ValueError(f"connect_tries={self.connect_tries!r}, backoff_s={self.backoff_s!r}: at least 1 try, "
                             f"and a backoff of 0 s or more")

    def described(self) -> dict[str, Any]:
        """What identifies the evaluation in run.json (the key is left out)."""
        return {"io": self.io, "replan": self.replan}


@dataclass
class Traffic:
    """What crossed the wire, for benchmarks: requests, bytes each way, round-trip seconds, and the
    seconds the server says it spent on each request (its ``server_timing``, when it sends one)."""

    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    round_trip_s: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_TIMES))
    server_s: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_TIMES))


class RemotePolicy(Policy):
    """The harness side of a policy server."""

    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        self.profile = get_profile(config.io)
        try:
            first, self.metadata = self._open()
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, WireError, ConnectionClosed) as err:
            raise ValueError(f"cannot reach the policy server at {config.url}: {_why(err)}") from None
        if not isinstance(self.metadata, dict):
            first.close()
            raise ValueError(f"the server at {config.url} sent {type(self.metadata).__name__} metadata, not a map: "
                             f"not an openpi policy server")
        served = self.metadata.get("io")
        if isinstance(served, str) and served != self.profile.name:
            first.close()
            raise ValueError(f"the server at {config.url} serves the {served!r} I/O profile and this run sends "
                             f"{self.profile.name!r}; pass --io {served} (or serve with --io {self.profile.name})")
        try:
            self.observation_spec = self.profile.observation_spec(self.metadata)
        except ProfileError as err:
            first.close()
            raise ValueError(str(err)) from None
        chunk = self.metadata.get("chunk")
        self.chunk = chunk if isinstance(chunk, int) and chunk >= 1 else 1
        self._spare: ClientConnection | None = first  # the first slot to ask takes it
        self._conns: dict[int, ClientConnection] = {}
        self._starts: dict[int, EpisodeStart] = {}
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self.traffic = Traffic()

    def _open(self) -> tuple[ClientConnection, Any]:
        """A new connection and the metadata frame the server sends first."""
        headers = {"Authorization": f"Api-Key {self.config.api_key}"} if self.config.api_key else None
        conn = connect(self.config.url, compression=None, max_size=None, additional_headers=headers,
                       open_timeout=self.config.timeout, close_timeout=1)
        try:
            frame = conn.recv(timeout=self.config.timeout)
            if isinstance(frame, str):
                raise WireError(f"the server sent text instead of its metadata: {frame[:200]!r}")
            return conn, unpack(frame)
        except BaseException:
            conn.close()
            raise

    def _connection(self, slot: int) -> ClientConnection | SlotError:
        """The slot's open connection, reopened with backoff when it was lost."""
        with self._lock:
            conn = self._conns.get(slot)
            if conn is None and self._spare is not None:
                conn = self._conns[slot] = self._spare
                self._spare = None
        if conn is not None:
            return conn
        delay, reason = self.config.backoff_s, "no attempt"
        for attempt in range(self.config.connect_tries):
            try:
                conn, _ = self._open()
                with self._lock:
                    self._conns[slot] = conn
                return conn
            except (OSError, TimeoutError, InvalidHandshake, WireError, ConnectionClosed) as err:
                reason = _why(err)
            if attempt + 1 < self.config.connect_tries:
                time.sleep(delay)
                delay *= 2
        return SlotError(f"policy server unreachable ({reason})", retry=True)

    def _drop(self, slot: int) -> None:
        with self._lock:
            conn = self._conns.pop(slot, None)
        if conn is not None:
            conn.close()

    def reset(self, slots: Sequence[int], starts: Sequence[EpisodeStart]) -> None:
        """Remember each episode's start; it goes with the slot's next request (profiles that carry it)."""
        for slot, start in zip(slots, starts):
            self._starts[slot] = start

    def act(self, batch: Batch) -> list[np.ndarray | SlotError]:
        """Every slot's request at once, one connection each; a chunk or a :class:`SlotError` per slot."""
        observations = []
        for i, slot in enumerate(batch.slots):
            images = {cam: getattr(batch, cam)[i] for cam in self.observation_spec.cameras}
            privileged = batch.privileged[i] if batch.privileged is not None else None
            native = batch.native[i] if batch.native is not None else None
            observations.append(SlotObservation(batch.state[i], batch.instruction[i], images, privileged,
                                                self._starts.pop(slot, None), native))
        if len(observations) == 1:
            return [self._request(batch.slots[0], observations[0])]
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=256, thread_name_prefix="simeval-remote")  # made as needed
        return list(self._threads.map(self._request, batch.slots, observations))

    def _request(self, slot: int, obs: SlotObservation) -> np.ndarray | SlotError:
        conn = self._connection(slot)
        if isinstance(conn, SlotError):
            return conn
        try:
            frame = pack(self.profile.encode(obs))
        except (WireError, ProfileError, KeyError) as err:
            return SlotError(f"observation cannot be sent in the {self.profile.name} profile: {err}")
        started = time.perf_counter()
        try:
            conn.send(frame)
            reply = conn.recv(timeout=self.config.timeout)
        except TimeoutError:
            self._drop(slot)  # a late reply must not answer the next request
            return SlotError(f"no reply from the policy server within {self.config.timeout:g} s (--timeout)")
        except (ConnectionClosed, OSError) as err:
            self._drop(slot)
            if isinstance(err, ConnectionClosed) and err.rcvd is not None and err.rcvd.code == CloseCode.MESSAGE_TOO_BIG:
                return SlotError(f"the policy server refused a request of {len(frame)} bytes as too big "
                                 f"({err.rcvd.reason or 'message too big'}; its --max-message-mb)")
            return SlotError(f"lost the connection to the policy server ({_why(err)})", retry=True)
        with self._lock:
            t = self.traffic
            t.requests, t.bytes_sent, t.bytes_received = t.requests + 1, t.bytes_sent + len(frame), t.bytes_received + len(reply)
            t.round_trip_s.append(time.perf_counter() - started)
        if isinstance(reply, str):  # openpi's servers send their traceback as text, then close
            self._drop(slot)
            lines = [line for line in reply.strip().splitlines() if line.strip()]
            return SlotError(f"policy server error: {lines[-1].strip() if lines else 'no message'}"[:500])
        return self._chunk(reply, obs.native is not None)

    def _chunk(self, frame: bytes, native: bool = False) -> np.ndarray | SlotError:
        try:
            reply = unpack(frame)
        except WireError as err:
            return SlotError(f"policy server reply unreadable: {err}")
        if not isinstance(reply, dict) or "actions" not in reply:
            keys = ", ".join(map(str, reply)) if isinstance(reply, dict) else type(reply).__name__
            return SlotError(f"policy server reply has no 'actions' (it has: {keys or 'nothing'})")
        timing = reply.get("server_timing")
        if isinstance(timing, dict) and isinstance(timing.get("infer_ms"), (int, float)):
            with self._lock:
                self.traffic.server_s.append(timing["infer_ms"] / 1000)
        try:
            chunk = self.profile.actions_from_wire(reply["actions"], native)
        except ProfileError as err:
            return SlotError(f"policy server {err}")
        return chunk[: self.config.replan] if self.config.replan else chunk

    def close(self) -> None:
        """Close every connection (the server sees each slot leave)."""
        with self._lock:
            conns, self._conns = list(self._conns.values()) + ([self._spare] if self._spare else []), {}
            self._spare = None
        for conn in conns:
            conn.close()
        if self._threads is not None:
            self._threads.shutdown(wait=False)


def _why(err: BaseException) -> str:
    """A failure to reach or read the server, in one short phrase."""
    if isinstance(err, InvalidStatus):
        status = err.response.status_code
        if status in (401, 403):
            return f"HTTP {status}: the server refused the API key (--api-key)"
        body = err.response.body.decode(errors="replace").strip().splitlines() if err.response.body else []
        return f"HTTP {status}: {body[0][:200]}" if status == 503 and body else f"HTTP {status} instead of a websocket"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (is the server running, on this port?)"
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ConnectionClosed):
        if err.rcvd is None:
            return "connection closed (code none)"
        return f"connection closed (code {err.rcvd.code}{': ' + err.rcvd.reason[:200] if err.rcvd.reason else ''})"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{type(err).__name__}: {text}"[:300]
