"""A real local Ray cluster for a test: a head and optional worker nodes, started with ``ray start``
in a temp dir of its own (so no other ``ray.init`` on this machine finds it), and always stopped:
every process whose command line names that temp dir is killed by its pid (``ray stop`` would end
every Ray on the machine). Ray's node health checks are made fast (about 2 s to find a node dead
instead of about 15 s) so that the tests stay short; the pool's own bounds are the defaults."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

RAY = str(Path(sys.executable).with_name("ray"))
RAY_PACKAGE = str(Path(importlib.util.find_spec("ray").origin).parent)  # in every Ray process's command line
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "500",
                      "RAY_health_check_timeout_ms": "500", "RAY_health_check_failure_threshold": "3"}
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **FAST_HEALTH_CHECKS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalCluster:
    temp_dir: str
    address: str  # the head's GCS, HOST:PORT
    node_ports: list[int] = field(default_factory=list)  # each node's node-manager port, the head's first

    def processes(self, word: str = "") -> list[int]:
        """The pids of this cluster's Ray processes whose command line also holds ``word``."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.temp_dir in command and RAY_PACKAGE in command and word in command:
                found.append(int(entry))
        return found

    def kill_raylet(self, node: int) -> None:
        """End node ``node``'s raylet (0: the head) with SIGKILL, as a crash or the OOM killer would."""
        pids = self.processes(f"--node_manager_port={self.node_ports[node]}")
        raylets = [p for p in pids if "raylet/raylet" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
        assert len(raylets) == 1, f"node {node}'s raylet not found: {pids}"
        os.kill(raylets[0], signal.SIGKILL)

    def kill_head(self) -> None:
        """End the head's GCS and raylet with SIGKILL: the head machine lost."""
        gcs = self.processes(f"--gcs_server_port={self.address.rpartition(':')[2]}")
        assert len(gcs) == 1, f"the GCS not found: {gcs}"
        os.kill(gcs[0], signal.SIGKILL)
        self.kill_raylet(0)

    def stop(self) -> None:
        for _ in range(3):  # a process may start another while the first are killed
            for pid in self.processes():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _ray_start(args: list[str]) -> None:
    done = subprocess.run([RAY, "start", "--disable-usage-stats", *args], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@contextlib.contextmanager
def local_cluster(head_cpus: int, *node_cpus: int) -> Iterator[LocalCluster]:
    """A head with ``head_cpus`` CPUs and one more node per ``node_cpus``, on this machine."""
    temp_dir = tempfile.mkdtemp(prefix="sr", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    port = free_port()
    cluster = LocalCluster(temp_dir, f"127.0.0.1:{port}")
    try:
        cluster.node_ports.append(free_port())
        _ray_start(["--head", "--port", str(port), "--num-cpus", str(head_cpus), "--include-dashboard=false",
                    "--temp-dir", temp_dir, "--node-manager-port", str(cluster.node_ports[0]),
                    "--ray-client-server-port", str(free_port()), "--dashboard-port", str(free_port()),
                    "--dashboard-agent-listen-port", str(free_port())])
        for cpus in node_cpus:
            cluster.node_ports.append(free_port())
            _ray_start(["--address", cluster.address, "--num-cpus", str(cpus), "--temp-dir", temp_dir,
                        "--node-manager-port", str(cluster.node_ports[-1]),
                        "--dashboard-agent-listen-port", str(free_port())])
        yield cluster
    finally:
        cluster.stop()
