"""A real Ray cluster of separate nodes on this machine, for the ray engine's tests (docs/ray.md).

Each node is a ``ray start --block`` process of its own (in its own session, so that stopping it stops that node's
raylet and workers and nothing else): the tests never run ``ray stop``, which would end every Ray on the machine,
other tests' included. Every port is a free one and the temp folder is the test's own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[4]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_env() -> dict[str, str]:
    """The environment of a node: batchlane from this checkout, no usage reports."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Token authentication would need a token shared by every node and driver; these clusters listen on 127.0.0.1.
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("RAY_ADDRESS", None)
    return env


class LocalCluster:
    """A head node and worker nodes (``num_cpus`` each) under ``temp_dir``; ``address`` is the head's GCS."""

    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir = temp_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen[bytes]] = []

    def _ports(self) -> list[str]:
        return [
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
        ]

    def _start(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.temp_dir / log_name, "ab")  # noqa: SIM115  # the node's lifetime
        node = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *args],
            env=node_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nodes.append(node)
        return node

    def start_head(self, num_cpus: int = 1) -> None:
        self._start(
            [
                "--head",
                f"--port={self.port}",
                f"--num-cpus={num_cpus}",
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                f"--temp-dir={self.temp_dir}",
                *self._ports(),
            ],
            "head.log",
        )

    def add_node(self, num_cpus: int = 1) -> subprocess.Popen[bytes]:
        return self._start(
            [f"--address={self.address}", f"--num-cpus={num_cpus}", *self._ports()],
            f"node-{len(self.nodes)}.log",
        )

    def wait_for(self, nodes: int, cpus: float, timeout_s: float = 90.0) -> None:
        """Wait until ``nodes`` nodes with ``cpus`` CPUs in all are alive (asked through a short-lived driver)."""
        probe = (
            "import ray, sys, time\n"
            f"ray.init(address={self.address!r}, log_to_driver=False)\n"
            f"deadline = time.time() + {timeout_s}\n"
            "while time.time() < deadline:\n"
            f"    if len([n for n in ray.nodes() if n['Alive']]) >= {nodes} and "
            f"ray.cluster_resources().get('CPU', 0) >= {cpus}: sys.exit(0)\n"
            "    time.sleep(0.5)\n"
            "sys.exit(1)\n"
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = subprocess.run(
                [sys.executable, "-c", probe], env=node_env(), capture_output=True, timeout=timeout_s + 30
            )
            if done.returncode == 0:
                return
            time.sleep(1)
        logs = "".join(
            f"\n--- {log.name}:\n" + log.read_text(errors="replace")[-1500:]
            for log in sorted(self.temp_dir.glob("*.log"))
        )
        raise TimeoutError(f"the Ray cluster at {self.address} did not reach {nodes} nodes{logs}")

    def stop_node(self, node: subprocess.Popen[bytes]) -> None:
        """Stop one node: its ``ray start --block`` process and everything in its session."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if node.poll() is not None:
                break
            try:
                os.killpg(node.pid, sig)
            except ProcessLookupError:
                break
            try:
                node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        for node in reversed(self.nodes):
            self.stop_node(node)


def start_cluster(temp_dir: Path, nodes: int = 2, attempts: int = 2) -> LocalCluster:
    """A running cluster of ``nodes`` one-CPU nodes under ``temp_dir``; a start that does not come up (a port taken
    between choosing and binding it, a machine too busy) is stopped and tried again with fresh ports."""
    for attempt in range(attempts):
        cluster = LocalCluster(temp_dir / f"try{attempt}")
        cluster.temp_dir.mkdir(parents=True)
        try:
            cluster.start_head(num_cpus=1)
            for _ in range(nodes - 1):
                cluster.add_node(num_cpus=1)
            cluster.wait_for(nodes=nodes, cpus=nodes)
            return cluster
        except BaseException:
            cluster.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
