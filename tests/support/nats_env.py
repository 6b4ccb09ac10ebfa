"""A real clustered MQTT broker: several Debian `nats-server` nodes on loopback, routed to each
other, JetStream on (NATS keeps MQTT sessions and QoS 1 messages in JetStream streams, which
the cluster replicates), an MQTT listener on every node.

Used by tests/test_nats_failover.py and bench/farm.py. Each node is a process of its own, so a
test can SIGKILL the one a client is connected to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from support.mqtt_env import free_port, wait_for_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def wait_while_arriving(count, expected: int, stall: float = 30.0, interval: float = 0.5) -> int:
    """Waits until `count()` reaches `expected`, for as long as it keeps growing: gives up
    (returning the last count) only once it has not grown for `stall` seconds. NATS's QoS 1
    pace depends on the machine (every message is replicated first): a fixed deadline would
    be a guess."""
    last, grew = count(), time.monotonic()
    while last < expected and time.monotonic() - grew < stall:
        time.sleep(interval)
        now = count()
        if now > last:
            last, grew = now, time.monotonic()
    return last


def paho_client(client_id: str, clean_session: bool = True):
    """A paho client under paho 1.6 (the benchmark's virtualenv) and 2.x (the suite's); only
    `on_message`, whose signature both share, is used."""
    import paho.mqtt.client as mqtt

    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
    return mqtt.Client(client_id=client_id, clean_session=clean_session)


class NatsNode:
    def __init__(self, cluster: NatsCluster, index: int) -> None:
        self.cluster = cluster
        self.name = f"n{index + 1}"
        self.host = "127.0.0.1"
        self.port = free_port()  # MQTT
        self.client_port = free_port()  # NATS protocol (unused by the tests, always on)
        self.route_port = free_port()
        self.monitor_port = free_port()
        self.dir = cluster.workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.dir / "nats.conf"
        self.log_path = self.dir / "nats.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def config_text(self) -> str:
        routes = ", ".join(
            f'"nats-route://127.0.0.1:{n.route_port}"' for n in self.cluster.nodes if n is not self
        )
        return "\n".join(
            [
                f"server_name: {self.name}",
                f"listen: 127.0.0.1:{self.client_port}",
                f"http: 127.0.0.1:{self.monitor_port}",
                f'jetstream {{ store_dir: "{self.dir / "js"}", max_mem: 256MB, max_file: 2GB }}',
                f"cluster {{ name: {self.cluster.name}, listen: 127.0.0.1:{self.route_port},"
                f" routes: [{routes}] }}",
                # Every node holds a copy of the MQTT streams: any one may die.
                f"mqtt {{ listen: 127.0.0.1:{self.port},"
                f" stream_replicas: {len(self.cluster.nodes)} }}",
                f'log_file: "{self.log_path}"',
                "",
            ]
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.conf_path.write_text(self.config_text())
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-c", str(self.conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def wait_listening(self, timeout: float = 30.0) -> None:
        # The MQTT listener opens only once JetStream is up, which in a cluster needs a meta
        # leader, so this waits for the cluster, not just the process.
        try:
            wait_for_port(self.host, self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(
                f"nats-server {self.name} did not start: {exc}\n{self.log_text()}"
            ) from exc

    def warm_up(self, timeout: float) -> None:
        """A QoS 1 round trip through this node. NATS creates its MQTT streams and this node's
        consumers on the first MQTT connection (seconds in a cluster, the SUBACK waits for it):
        done here, so that a test's own first subscription is not the one that waits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._round_trip(min(5.0, max(0.5, deadline - time.monotonic()))):
                return
        raise TimeoutError(f"no QoS 1 round trip through {self.name}\n{self.log_text()}")

    def _round_trip(self, timeout: float) -> bool:
        # While the cluster is still creating its streams NATS may close a new connection.
        got = threading.Event()
        client = paho_client(f"warm-up-{self.name}")
        client.on_message = lambda c, u, m: got.set()
        try:
            client.connect(self.host, self.port)
        except OSError:
            time.sleep(0.2)
            return False
        client.loop_start()
        try:
            client.subscribe(f"warm-up/{self.name}", 1)
            until = time.monotonic() + timeout
            while not got.is_set() and time.monotonic() < until:
                client.publish(f"warm-up/{self.name}", b"1", qos=1)
                got.wait(1.0)
            return got.is_set()
        finally:
            client.disconnect()
            client.loop_stop()

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def monitor(self, path: str) -> dict:
        url = f"http://127.0.0.1:{self.monitor_port}/{path}"
        with urllib.request.urlopen(url, timeout=3) as answer:
            return json.load(answer)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the node's process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / _CLOCK_TICKS

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class NatsCluster:
    """`size` nodes of one cluster; `start()` returns once every node's MQTT listener is open
    and the JetStream meta group has a leader."""

    def __init__(self, workdir: Path, size: int = 3, name: str = "farm") -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.nodes: list[NatsNode] = []
        for i in range(size):
            self.nodes.append(NatsNode(self, i))

    def start(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_listening(max(1.0, deadline - time.monotonic()))
        self.wait_meta_leader(max(1.0, deadline - time.monotonic()))
        for node in self.nodes:
            node.warm_up(max(1.0, deadline - time.monotonic()))

    def wait_meta_leader(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for node in self.running_nodes():
                try:
                    leader = node.monitor("jsz").get("meta_cluster", {}).get("leader")
                except OSError:
                    leader = None
                if leader:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no JetStream meta leader after {timeout}s\n{self.logs()}")
            time.sleep(0.2)

    def leaders(self) -> dict[str, str]:
        """Which node leads what: "meta" (the JetStream meta group) and each MQTT stream
        ("$MQTT_sess" holds the sessions, "$MQTT_msgs" the QoS 1 messages, "$MQTT_rmsgs" the
        retained ones), by node name."""
        report = self.running_nodes()[0].monitor("jsz?accounts=true&streams=true")
        found = {"meta": report.get("meta_cluster", {}).get("leader")}
        for account in report.get("account_details", []):
            for stream in account.get("stream_detail", []):
                found[stream["name"]] = stream.get("cluster", {}).get("leader")
        return found

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    def running_nodes(self) -> list[NatsNode]:
        return [n for n in self.nodes if n.running]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def logs(self, lines: int = 60) -> str:
        parts = []
        for node in self.nodes:
            # A dead node's peers say so every second; one such line is enough.
            kept = [line for line in node.log_text().splitlines() if _ROUTE_RETRY not in line]
            tail = "\n".join(kept[-lines:])
            parts.append(f"----- {node.name} ({node.log_path}) -----\n{tail}")
        return "\n".join(parts)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_ROUTE_RETRY = "Error trying to connect to route (attempt"
