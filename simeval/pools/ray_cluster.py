"""Joining a Ray cluster, and asking it which nodes are alive: what the Ray pool needs of the cluster.

Ray alone waits a long time on a cluster that does not answer: ``ray.init`` on an address that
accepts connections but never speaks Ray's protocol retries for half a minute or more, and a pool
whose actors' nodes are gone waits for them forever (a replacement actor stays pending while no
node has a CPU for it). Here both are bounded: the address is probed with gRPC's own handshake
within ``CONNECT_TIMEOUT_S``, and :class:`Cluster` answers, within ``NODES_TIMEOUT_S``, which
nodes are alive (from the GCS, the authority Ray's own node health checks report to).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

EXTRA = 'pip install -e ".[ray]"'
CONNECT_TIMEOUT_S = 4.0  # an address must answer Ray's handshake within this long (the command, about 5 s)
NODES_TIMEOUT_S = 10.0  # the GCS must say which nodes are alive within this long


class RayPoolError(ValueError):
    """Ray missing or the cluster unreachable: a user's setting, one line, exit code 2."""


class ClusterLost(RayPoolError):
    """No node is left to run env actors on (or the head stopped answering): the run stops, with
    its finished episodes kept for ``--resume``. One line, exit code 2."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayPoolError(f"--backend ray needs Ray, an optional extra: {EXTRA}") from None
    return ray


def connect(address: str | None, cpus: int) -> bool:
    """Join ``address`` ("auto", "HOST:PORT" or "ray://HOST:PORT"), or start Ray on this machine
    with ``cpus`` CPUs when it is None; True when this call started Ray (and must stop it)."""
    ray = import_ray()
    check_address(address)
    if ray.is_initialized():
        return False
    try:
        if address is None:  # "local": a new Ray here, never a cluster that `ray start` left running
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="ERROR",
                     log_to_driver=True)
        else:
            ray.init(address=address, logging_level="ERROR", log_to_driver=True)
    except ConnectionError as err:
        reason = str(err).splitlines()[0].split(". ")[0]
        raise RayPoolError(f"cannot join the Ray cluster at {address}: {reason}") from None
    return True


def check_address(address: str | None) -> None:
    """A one-line error within ``CONNECT_TIMEOUT_S`` for an address nothing listens on, or one that
    accepts connections but does not answer as a gRPC server (Ray's GCS and Ray Client both are).
    None and "auto" need no address."""
    if address in (None, "auto"):
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayPoolError(f"--ray-address {address!r}: give auto, HOST:PORT (a cluster's head, e.g. head:6379) "
                           f"or ray://HOST:PORT (Ray Client, e.g. head:10001)")
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise RayPoolError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None
    import grpc  # Ray's own dependency

    channel = grpc.insecure_channel(hostport)
    try:
        grpc.channel_ready_future(channel).result(timeout=max(0.5, deadline - time.monotonic()))
    except grpc.FutureTimeoutError:
        raise RayPoolError(f"cannot join the Ray cluster at {address}: it accepts connections but does not answer "
                           f"as Ray within {CONNECT_TIMEOUT_S:g} s (is it a Ray head's GCS port, e.g. 6379, or a "
                           f"Ray Client port, e.g. ray://head:10001?)") from None
    finally:
        channel.close()


@dataclass(frozen=True)
class Nodes:
    """What the GCS says of the cluster's nodes at one moment."""

    alive: frozenset[str]  # node ids
    dead: frozenset[str]
    cpus: float  # of the alive nodes
    names: dict[str, str]  # node id -> its address


class Cluster:
    """The cluster a pool runs on: which nodes are alive, asked of the GCS within a bound. A node
    found dead is reported once on stderr; the driver's own node dead, or no alive node with a CPU,
    is :class:`ClusterLost`."""

    def __init__(self, ray: Any, address: str | None) -> None:
        self._ray = ray
        self.where = f"the Ray cluster at {address}" if address else "the Ray started for this run"
        self.driver_node = ray.get_runtime_context().get_node_id()
        self.lost = False  # ClusterLost was raised: nothing more is asked of the cluster
        self.nodes = self._ask()
        self._reported: set[str] = set(self.nodes.dead)  # dead before this run: not news

    @property
    def deaths(self) -> int:
        """How many nodes were dead at the last check (a node that died since made it grow)."""
        return len(self.nodes.dead)

    def _ask(self) -> Nodes:
        """``ray.nodes()`` in a daemon thread (a call stuck on a dead head must not hold up the exit)."""
        answer: dict[str, Any] = {}

        def ask() -> None:
            try:
                answer["table"] = self._ray.nodes()
            except Exception as err:  # noqa: BLE001 - any failure to reach the GCS
                answer["error"] = err

        thread = threading.Thread(target=ask, name="simeval-ray-nodes", daemon=True)
        thread.start()
        thread.join(NODES_TIMEOUT_S)
        if "error" in answer:
            raise self.lose(f"its head cannot be reached ({type(answer['error']).__name__})")
        if "table" not in answer:
            raise self.lose(f"its head did not say which nodes are alive within {NODES_TIMEOUT_S:g} s")
        table = answer["table"]
        alive = frozenset(n["NodeID"] for n in table if n.get("Alive"))
        dead = frozenset(n["NodeID"] for n in table if not n.get("Alive")) - alive
        cpus = sum(float((n.get("Resources") or {}).get("CPU", 0)) for n in table if n["NodeID"] in alive)
        return Nodes(alive, dead, cpus, {n["NodeID"]: str(n.get("NodeManagerAddress", "?")) for n in table})

    def check(self) -> Nodes:
        """Ask again; warn of nodes that died since; raise :class:`ClusterLost` when the driver's node
        died or no alive node has a CPU."""
        nodes = self.nodes = self._ask()
        for node in sorted(nodes.dead - self._reported):
            self._reported.add(node)
            sys.stderr.write(f"\nsimeval: warning: Ray node {nodes.names.get(node, '?')} ({node[:8]}) died; "
                             f"{len(nodes.alive)} node(s) with {nodes.cpus:g} CPU(s) left run its env workers' "
                             f"episodes\n")
        if self.driver_node in nodes.dead:
            raise self.lose(f"the node this run's driver is on ({nodes.names.get(self.driver_node, '?')}) died")
        if nodes.cpus < 1:
            raise self.lose("no alive node has a CPU left for env actors")
        return nodes

    def lose(self, reason: str) -> ClusterLost:
        """The error that stops the run: ``reason``, and how to finish it."""
        self.lost = True
        return ClusterLost(f"{self.where}: {reason}; the finished episodes are kept in episodes.jsonl: continue "
                           f"with --resume (on Ray or locally)")
