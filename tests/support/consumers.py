"""The consumer plugins of tests/consumer_plugins/: single-file OctoPrint plugins that use the
MQTT plugin's helpers the way published ones do, and log every step as
``E2E <plugin> <step> <json>`` in octoprint.log.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from support.e2ekit import BASE

CONSUMER_DIR = Path(__file__).resolve().parent.parent / "consumer_plugins"
PSU = "e2e_psu_control"
PSU_STATUS_TOPIC = f"{BASE}plugin/psucontrol/status"
PSU_SET = "test/cmd/psu/set"
REPORT_LINE = re.compile(r" - octoprint\.plugins\.(\w+) - INFO - E2E (\w+) ([\w-]+) (\{.*\})$")


def reports(octoprint, plugin: str, step: str) -> list[dict]:
    """Every `E2E <plugin> <step> <json>` line the consumer logged so far, decoded, in order."""
    found = []
    for line in octoprint.log_text().splitlines():
        match = REPORT_LINE.search(line)
        if match and match.group(1) == plugin and match.group(2) == plugin:
            if match.group(3) == step:
                found.append(json.loads(match.group(4)))
    return found


def wait_report(
    octoprint, plugin: str, step: str, predicate=None, timeout: float = 20.0, count: int = 1
) -> list[dict]:
    """Wait until the consumer logged `count` matching reports of `step`; return them all."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in reports(octoprint, plugin, step) if predicate is None or predicate(r)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            lines = [line for line in octoprint.log_text().splitlines() if " E2E " in line]
            raise AssertionError(
                f"{plugin} did not report {step!r} ({count}x, {predicate}) within {timeout}s; "
                "consumer lines:\n" + "\n".join(lines[-40:])
            )
        time.sleep(0.1)


def mqtt_send(broker, topic: str, payload: bytes, retain: bool = False) -> None:
    """Publish one QoS 1 message from a fresh paho client and wait for the PUBACK."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published(), f"publish to {topic} not acknowledged"
    finally:
        client.disconnect()
        client.loop_stop()
