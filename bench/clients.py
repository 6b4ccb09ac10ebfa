"""The two Python publishing paths the benchmark compares, behind one small interface.

`Baseline` does what the classic plugin did for every event (copy the payload, add `_event`
and `_timestamp`, `json.dumps`, publish with paho-mqtt 1.6 running `loop_start()`), written
for this benchmark. `Ours` goes through this plugin's real entry points, `on_event` and
`mqtt_publish`, into the Rust core.
"""

from __future__ import annotations

import json
import socket
import threading
import time

EVENT = "FileAdded"


def event_payload(seq: int) -> dict:
    """The typical event: six keys, with the sequence number in the file name so the
    subscriber can match every message to its send time (bench-sub reads `benchy_NNNNNNN`)."""
    return {
        "name": f"benchy_{seq:07d}.gcode",
        "path": f"prints/calibration/benchy_{seq:07d}.gcode",
        "origin": "local",
        "size": 3688412,
        "owner": "admin",
        "user": "admin",
    }


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)


class Baseline:
    name = "baseline"

    def __init__(self, host: str, port: int, base: str, connect: bool = True) -> None:
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        self.base = base
        self._done = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        # The classic plugin keeps `allow_queueing` messages in a list of its own while paho
        # is disconnected, and drops the rest.
        self._offline: list = []
        self.client = mqtt.Client(protocol=mqtt.MQTTv311, clean_session=True)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(host, port, keepalive=60)
        self.client.loop_start()
        if connect:
            if not self._connected.wait(10):
                raise TimeoutError("paho did not connect within 10 s")

    def _on_connect(self, client, userdata, flags, rc):
        # The classic plugin leaves Nagle on (p99 latency of ~20 ms); it is switched off here
        # so that the latency comparison is about the code path, not the socket option.
        sock = client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connected.set()

    def _on_disconnect(self, client, userdata, rc):
        self._connected.clear()

    def _on_publish(self, client, userdata, mid):
        with self._lock:
            self._done += 1

    def delivered(self) -> int:
        """Messages written (QoS 0) or acknowledged (QoS 1) so far."""
        return self._done

    def on_event(self, event: str, payload: dict) -> bool:
        data = dict(payload)
        data["_event"] = event
        data["_timestamp"] = int(time.time())
        return self.mqtt_publish(f"{self.base}event/{event}", data)

    def mqtt_publish(self, topic, payload, retained=False, qos=0, allow_queueing=False):
        if not isinstance(payload, str):
            payload = json.dumps(payload)
        if not self._connected.is_set():
            if allow_queueing:
                self._offline.append((topic, payload, qos, retained))
                return True
            return False
        info = self.client.publish(topic, payload, qos=qos, retain=retained)
        return info.rc == self._mqtt.MQTT_ERR_SUCCESS

    def subscribe(self, topic: str, callback, qos: int = 0) -> None:
        def on_message(client, userdata, msg):
            callback(msg.topic, msg.payload)

        self.client.message_callback_add(topic, on_message)
        self.client.subscribe(topic, qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Ours:
    name = "ours"

    def __init__(self, host: str, port: int, base: str, connect: bool = True) -> None:
        from octoprint_mqtt.plugin import MqttPlugin

        self.base = base
        self.plugin = MqttPlugin()
        self.core = self.plugin._core
        settings = {
            "broker": {"url": host, "port": port},
            "publish": {"baseTopic": base, "lwActive": False},
        }
        self.core.configure(settings, True)
        if connect:
            wait_for(lambda: self.core.connected, 10, "the core to connect")
        self.on_event = self.plugin.on_event
        self.mqtt_publish = self.plugin.mqtt_publish

    def delivered(self) -> int:
        return self.core.status()["published"]

    def subscribe(self, topic: str, callback, qos: int = 0) -> None:
        self.plugin.mqtt_subscribe(topic, callback, qos=qos)

    def close(self) -> None:
        self.core.stop(2.0)


IMPLEMENTATIONS = {"baseline": Baseline, "ours": Ours}
