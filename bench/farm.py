"""Figure 9, a print farm on a clustered broker: 50 plugin cores in this process, each with a
base topic and client id of its own and a persistent session, spread over a 3-node NATS cluster
(tests/support/nats_env.py) with the other two nodes as failover. Each publishes a print's worth
of messages at QoS 1 through the `mqtt_publish` helper while one node is SIGKILLed a third of
the way in. Reported: how long until every instance that was on the dead node is connected
again, messages lost (must be 0), duplicates, and the broker's CPU per delivered message.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from support.nats_env import NatsCluster, paho_client, wait_while_arriving

INSTANCES = 50
# A print, compressed: start, layer changes, progress, temperature reports, done.
PRINT = (
    [("event/PrintStarted", {"name": "benchy.gcode", "origin": "local"})]
    + [("event/ZChange", {"new": z * 0.2, "old": (z - 1) * 0.2}) for z in range(1, 151)]
    + [("progress/printing", {"progress": p, "path": "benchy.gcode"}) for p in range(101)]
    + [("temperature/tool0", {"actual": 210.0, "target": 210.0}) for _ in range(47)]
    + [("event/PrintDone", {"name": "benchy.gcode", "time": 1234.5})]
)
PACE = 0.02  # seconds between one instance's messages: its print takes 6 s


class Watcher:
    """One persistent QoS 1 subscription to every instance's topics, on a node that stays up,
    counting distinct (instance, sequence) pairs; paho 1.6 (the benchmark's virtualenv)."""

    def __init__(self, node) -> None:
        self.seen: set[tuple[str, int]] = set()
        self.arrivals: dict[str, list[tuple[float, int]]] = {}
        self.received = 0
        self.lock = threading.Lock()
        self.client = paho_client("farm-watcher", clean_session=False)
        self.client.on_message = self._on_message
        self.client.connect(node.host, node.port)
        self.client.loop_start()
        self.client.subscribe("farm/+/seq/#", 1)
        time.sleep(2)  # the SUBACK waits for the cluster's consumer

    def _on_message(self, client, userdata, msg) -> None:
        instance = msg.topic.split("/")[1]
        seq = int(msg.payload.split(b" ", 1)[0])
        with self.lock:
            self.received += 1
            self.seen.add((instance, seq))
            self.arrivals.setdefault(instance, []).append((time.monotonic(), seq))

    def delivering_again(self, instance: str, since: float) -> float | None:
        """Seconds from `since` until the first message `instance` published after it arrived
        (one numbered past everything that had arrived before)."""
        with self.lock:
            arrivals = list(self.arrivals.get(instance, []))
        before = max((seq for t, seq in arrivals if t <= since), default=-1)
        later = [t for t, seq in arrivals if t > since and seq > before]
        return min(later) - since if later else None

    def distinct(self) -> int:
        with self.lock:
            return len(self.seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _plugin(nodes, i: int):
    from octoprint_mqtt.plugin import MqttPlugin

    first = nodes[i % len(nodes)]
    others = [n for n in nodes if n is not first]
    plugin = MqttPlugin()
    plugin._core.configure(
        {
            "broker": {
                "url": first.host,
                "port": first.port,
                "failover": [n.address for n in others],
                "clean_session": False,
                "protocol": "MQTTv311",
            },
            "client": {"client_id": f"farm-p{i:02d}"},
            "publish": {"baseTopic": f"farm/p{i:02d}/"},
        }
    )
    return plugin, first


def _print(plugin, i: int) -> None:
    import json

    base = f"farm/p{i:02d}/"
    for seq, (topic, payload) in enumerate(PRINT):
        # The sequence number first, so that the watcher can count what arrived.
        body = f"{seq} {json.dumps(payload)}"
        plugin.mqtt_publish(f"{base}seq/{topic}", body, retained=False, qos=1, allow_queueing=True)
        time.sleep(PACE)


def once(cwd: Path, rep: int) -> dict:
    cluster = NatsCluster(cwd / f"farm-{rep}")
    cluster.start()
    plugins = []
    try:
        victim = cluster.nodes[0]
        watcher = Watcher(cluster.nodes[2])
        made = [_plugin(cluster.nodes, i) for i in range(INSTANCES)]
        plugins = [p for p, _ in made]
        deadline = time.monotonic() + 60
        while not all(p._core.status()["state"] == "connected" for p in plugins):
            if time.monotonic() > deadline:
                raise RuntimeError("not every instance connected within 60 s")
            time.sleep(0.1)
        on_victim = [(i, p) for i, (p, first) in enumerate(made) if first is victim]
        cpu_before = {n.name: n.cpu_seconds() for n in cluster.nodes}
        printers = [threading.Thread(target=_print, args=(p, i)) for i, p in enumerate(plugins)]
        started = time.monotonic()
        for t in printers:
            t.start()
        time.sleep(len(PRINT) * PACE / 3)
        cpu_victim = victim.cpu_seconds()
        victim.kill()
        killed = time.monotonic()
        back: dict[int, float] = {}
        while len(back) < len(on_victim) and time.monotonic() - killed < 120:
            for k, p in on_victim:
                s = p._core.status()
                if k not in back and s["state"] == "connected" and s["broker"] != victim.address:
                    back[k] = time.monotonic() - killed
            time.sleep(0.05)
        for t in printers:
            t.join(120)
        expected = INSTANCES * len(PRINT)
        last = wait_while_arriving(watcher.distinct, expected, stall=30)
        finished = time.monotonic()
        cpu = sum(
            (cpu_victim if n is victim else n.cpu_seconds()) - cpu_before[n.name]
            for n in cluster.nodes
        )
        received = watcher.received
        delivering = [watcher.delivering_again(f"p{k:02d}", killed) for k, _ in on_victim]
        watcher.close()
        return {
            "instances": INSTANCES,
            "on_killed_node": len(on_victim),
            "messages": expected,
            "lost": expected - last,
            "duplicates": received - last,
            "back_max_s": max(back.values()) if len(back) == len(on_victim) else None,
            "back_median_s": statistics.median(back.values()) if back else None,
            # Connected is not yet working: NATS may still be electing the leaders it needs.
            "delivering_max_s": None if None in delivering else max(delivering),
            "seconds": finished - started,
            "broker_cpu_us_per_msg": cpu / max(1, received) * 1e6,
            "dropped": sum(p._core.status()["dropped"] for p in plugins),
        }
    finally:
        for p in plugins:
            p._core.stop(1.0)
        cluster.stop()


def farm(cwd: Path, reps: int) -> dict:
    import logging

    # The cores' warnings about the killed node go to a file, not over the table.
    log = logging.getLogger("octoprint.plugins.mqtt")
    log.addHandler(logging.FileHandler(cwd / "farm.log"))
    log.setLevel(logging.INFO)
    log.propagate = False
    runs = [once(cwd, rep) for rep in range(reps)]
    keys = (
        "back_max_s",
        "back_median_s",
        "delivering_max_s",
        "lost",
        "duplicates",
        "broker_cpu_us_per_msg",
    )
    medians = {}
    for k in keys:
        values = [r[k] for r in runs if r[k] is not None]
        medians[k] = statistics.median(values) if values else None
    return {**runs[0], **medians, "runs": runs, "worst_lost": max(r["lost"] for r in runs)}
