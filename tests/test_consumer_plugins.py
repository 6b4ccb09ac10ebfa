"""End to end: other OctoPrint plugins use the MQTT plugin's helpers the way published ones do.

Three single-file consumer plugins (tests/consumer_plugins/) are copied into the OctoPrint
basedir and loaded next to the installed MQTT plugin: one modelled on Home Assistant
discovery, one on camera snapshot publishers, one on PSU Control MQTT / Enclosure. Each logs
every step as ``E2E <plugin> <step> <json>`` in octoprint.log; the tests drive them by
publishing to the topics they subscribe to and check both what they logged and what the broker
delivered.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
import time

import pytest
from support.consumers import (
    CONSUMER_DIR,
    PSU,
    PSU_SET,
    PSU_STATUS_TOPIC,
    mqtt_send,
    reports,
    wait_report,
)
from support.mqtt_env import read_retained

HASS = "e2e_hass_discovery"
SNAP = "e2e_camera_snapshot"
CONSUMERS = [CONSUMER_DIR / f"{name}.py" for name in (HASS, SNAP, PSU)]
HELPER_NAMES = [
    "mqtt_publish",
    "mqtt_publish_with_timestamp",
    "mqtt_subscribe",
    "mqtt_unsubscribe",
]


BASE = "octoprint/"
STATUS_TOPIC = f"{BASE}mqtt"
STATE_CONFIG_TOPIC = "homeassistant/sensor/e2e_printer_state/config"
CONNECTED_CONFIG_TOPIC = "homeassistant/binary_sensor/e2e_printer_connected/config"
PSU_STATE_TOPIC = f"{BASE}plugin/psucontrol/state"
PSU_TOGGLE = "test/cmd/psu/toggle"
PSU_UNSUBSCRIBE = "test/cmd/psu/unsubscribe"
SNAPSHOT_REQUEST = "test/cmd/snapshot"
SNAPSHOT_TOPIC = f"{BASE}camera/cam0/snapshot"


def load_consumer(name: str):
    """Import a consumer plugin module (to reuse its discovery payload builders)."""
    spec = importlib.util.spec_from_file_location(f"consumer_{name}", CONSUMER_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_broker_log(broker, pattern: str, timeout: float = 20.0, count: int = 1) -> None:
    """Wait until mosquitto's log has `count` matches of the regex `pattern`."""
    regex = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout
    while len(regex.findall(broker.log_text())) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"mosquitto log has not {count}x {pattern!r} after {timeout}s:\n"
                + broker.log_text()[-3000:]
            )
        time.sleep(0.1)


def plugin_unsubscribed(broker) -> list[str]:
    """The filters the plugin unsubscribed, from mosquitto's log: "Received UNSUBSCRIBE from
    <client>" is followed by one tab-indented line per filter."""
    filters: list[str] = []
    in_unsubscribe = False
    for line in broker.log_text().splitlines():
        _, _, text = line.partition(": ")
        if text.startswith("Received UNSUBSCRIBE from octoprint-mqtt-"):
            in_unsubscribe = True
        elif in_unsubscribe and text.startswith("\t"):
            filters.append(text[1:])
        else:
            in_unsubscribe = False
    return filters


def wait_subscribed(broker, topic_filter: str) -> None:
    """Mosquitto logs each filter of a SUBSCRIBE as a tab-indented `<filter> (QoS n)` line."""
    wait_broker_log(broker, rf"^\S+: \t{re.escape(topic_filter)} \(QoS \d\)$")


def assert_no_traceback(log: str) -> None:
    index = log.find("Traceback")
    assert index < 0, "octoprint.log has a traceback:\n" + log[max(0, index - 2000) : index + 3000]


def start_octoprint(octoprint_factory, broker):
    # Only the broker is stored: the consumers must still read the default base and LW topics.
    return octoprint_factory(
        {"broker": {"url": broker.host, "port": broker.port}}, plugin_files=CONSUMERS
    )


def wait_consumers_started(octoprint) -> dict[str, dict]:
    started = {p: wait_report(octoprint, p, "startup")[0] for p in (HASS, SNAP, PSU)}
    for plugin, report in started.items():
        assert report["helpers"] == HELPER_NAMES, (plugin, report)
        assert report["base"] == BASE, (plugin, report)
    assert started[HASS]["lw"] == "mqtt", started[HASS]
    return started


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_consumers_started_before_the_broker_connection(
    broker, subscriber_factory, octoprint_factory
):
    """Helpers fetched and used while the broker is down: queued discovery, subscriptions
    sent at connect, the status callback, a caught ValueError for a bad topic."""
    hass = load_consumer(HASS)
    broker.stop()
    octoprint = start_octoprint(octoprint_factory, broker)
    assert "publish" not in octoprint.read_config()["plugins"]["mqtt"]
    wait_consumers_started(octoprint)

    # Offline: the retained discovery config is queued (accepted), bad topics are rejected.
    assert wait_report(octoprint, HASS, "early-discovery")[0]["accepted"] is True
    for plugin in (HASS, PSU):
        caught = wait_report(octoprint, plugin, "bad-topic-caught")
        assert len(caught) == 1 and caught[0]["error"], caught
        assert not reports(octoprint, plugin, "bad-topic-accepted")
    assert not reports(octoprint, HASS, "status")

    broker.start()
    sub = subscriber_factory(broker.host, broker.port)

    # The MQTT plugin's own "connected" reaches the consumer subscribed to its status topic.
    status = wait_report(
        octoprint, HASS, "status", lambda r: r["payload"] == "b'connected'", timeout=40
    )[0]
    assert status["topic"] == STATUS_TOPIC, status
    assert status["payload_type"] == "bytes", status
    # Live, or replayed as retained if the SUBSCRIBE overtook the plugin's own publish.
    assert isinstance(status["retained"], bool) and status["qos"] == 0, status
    assert status["thread"] != "MainThread", status
    assert "E2E-HASS the MQTT plugin is connected, publishing discovery" in octoprint.log_text()
    on_connected = wait_report(octoprint, HASS, "discovery-on-connected")[0]
    assert on_connected == {"state": True, "connected": True}, on_connected

    # A late subscriber finds both discovery configs retained, nested dicts intact; the one
    # queued while offline kept its retain flag.
    expected_state = hass.state_sensor_config(BASE, STATUS_TOPIC)
    expected_connected = hass.connected_sensor_config(BASE, STATUS_TOPIC)
    deadline = time.monotonic() + 10
    while True:
        retained = read_retained(broker.host, broker.port, "homeassistant/#")
        if {STATE_CONFIG_TOPIC, CONNECTED_CONFIG_TOPIC} <= retained.keys() or (
            time.monotonic() > deadline
        ):
            break
    assert json.loads(retained[STATE_CONFIG_TOPIC].payload) == expected_state
    assert json.loads(retained[CONNECTED_CONFIG_TOPIC].payload) == expected_connected
    assert read_retained(broker.host, broker.port, STATUS_TOPIC)[STATUS_TOPIC].payload == (
        b"connected"
    )
    # Both publishes of the state config (queued while offline, then on "connected") went out
    # with the retain flag: the queue kept it.
    flags = re.findall(
        rf"Received PUBLISH from octoprint-mqtt-\S+ \(d\d, q0, r(\d), m\d+, "
        rf"'{re.escape(STATE_CONFIG_TOPIC)}'",
        broker.log_text(),
    )
    assert flags == ["1", "1"], flags

    # Subscriptions made while offline were sent at connect.
    mqtt_send(broker, "homeassistant/status", b"online")
    online = wait_report(octoprint, HASS, "hass-online")[0]
    assert online == {"retained": False, "state": True, "connected": True}, online
    sub.wait_count(STATE_CONFIG_TOPIC, 1, timeout=10)

    mqtt_send(broker, PSU_SET, b"on")
    state = wait_report(octoprint, PSU, "state")[0]
    assert state["state"] == "on" and state["accepted"] == [True, True], state
    assert sub.wait_for(PSU_STATE_TOPIC, timeout=10).payload == b"on"

    # The rejected topic never went anywhere.
    assert not [m for m in sub.messages() if m.topic.startswith("bad/")]
    assert "'bad/" not in broker.log_text()
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_snapshot_bytes_and_subscription_args(broker, subscriber_factory, octoprint_factory):
    """`raw_data=True` sends 300 KiB of bytes unchanged; the callback gets bytes, its
    subscription's args and kwargs, and the retained/qos keywords."""
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = start_octoprint(octoprint_factory, broker)
    wait_consumers_started(octoprint)
    wait_subscribed(broker, SNAPSHOT_REQUEST)

    mqtt_send(broker, SNAPSHOT_REQUEST, b"noise")
    request = wait_report(octoprint, SNAP, "request")[0]
    assert request == {
        "topic": SNAPSHOT_REQUEST,
        "payload": "b'noise'",
        "payload_type": "bytes",
        "is_take": False,
        "camera": "cam0",
        "index": 3,
        "quality": "high",
        "rotate": 90,
        "retained": False,
        "qos": 0,
        "thread": request["thread"],
    }, request
    assert request["thread"] != "MainThread", request
    assert not reports(octoprint, SNAP, "snapshot")

    mqtt_send(broker, SNAPSHOT_REQUEST, b"take")
    wait_report(octoprint, SNAP, "request", lambda r: r["is_take"])
    snapshot = wait_report(octoprint, SNAP, "snapshot")[0]
    assert snapshot["size"] == 300 * 1024 and snapshot["accepted"] == [True, True, True]
    assert snapshot["topic"] == SNAPSHOT_TOPIC, snapshot

    blob = sub.wait_for(SNAPSHOT_TOPIC, timeout=15)
    assert len(blob.payload) == 300 * 1024
    assert hashlib.sha256(blob.payload).hexdigest() == snapshot["sha256"]
    assert sub.wait_for(f"{BASE}camera/cam0/size", timeout=10).payload == b"307200"
    digest = sub.wait_for(f"{BASE}camera/cam0/sha256", timeout=10)
    assert digest.payload == snapshot["sha256"].encode()

    # Subscribed twice with equal callbacks: called once per message. Deliveries are in order
    # on one thread, so once the next message's report is there, no duplicate can follow.
    mqtt_send(broker, SNAPSHOT_REQUEST, b"last")
    wait_report(octoprint, SNAP, "request", lambda r: r["payload"] == "b'last'")
    assert [r["payload"] for r in reports(octoprint, SNAP, "request")] == [
        "b'noise'",
        "b'take'",
        "b'last'",
    ]
    assert len(reports(octoprint, SNAP, "snapshot")) == 1

    # retained=False was explicit: it wins over broker.retain (true by default).
    retained = read_retained(broker.host, broker.port, f"{BASE}camera/#")
    assert not retained, sorted(retained)
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_retained_commands_timestamp_and_unsubscribe(broker, subscriber_factory, octoprint_factory):
    """A retained command arrives with retained=True; state and timestamped status are
    retained; unsubscribing by callback (fresh bound method), by callback and topic, and the
    topic-string mistake behave as the helper contract says."""
    mqtt_send(broker, PSU_SET, b"on", retain=True)
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = start_octoprint(octoprint_factory, broker)
    wait_consumers_started(octoprint)

    # The retained command is replayed at subscribe time.
    command = wait_report(octoprint, PSU, "cmd")[0]
    assert command == {
        "topic": PSU_SET,
        "payload": "b'on'",
        "payload_type": "bytes",
        "retained": True,
        "qos": 0,
    }, command
    state = wait_report(octoprint, PSU, "state")[0]
    assert state["state"] == "on" and state["accepted"] == [True, True], state
    # mqtt_publish_with_timestamp added the timestamp to the consumer's own dict.
    status = state["status"]
    assert isinstance(status.get("_timestamp"), int), status
    assert abs(status["_timestamp"] - time.time()) < 120, status
    assert sub.wait_for(PSU_STATE_TOPIC, timeout=10).payload == b"on"
    assert json.loads(sub.wait_for(PSU_STATUS_TOPIC, timeout=10).payload) == status

    # Clear the retained command (an empty payload reaches the consumer too), then live ones.
    wait_subscribed(broker, PSU_UNSUBSCRIBE)
    mqtt_send(broker, PSU_SET, b"", retain=True)
    ignored = wait_report(octoprint, PSU, "cmd-ignored")[0]
    assert ignored == {"payload": "b''"}, ignored
    mqtt_send(broker, PSU_SET, b"off")
    mqtt_send(broker, PSU_TOGGLE, b"")
    states = wait_report(octoprint, PSU, "state", count=3)
    assert [s["state"] for s in states] == ["on", "off", "on"], states
    commands = reports(octoprint, PSU, "cmd")
    assert [(c["topic"], c["payload"], c["retained"]) for c in commands] == [
        (PSU_SET, "b'on'", True),
        (PSU_SET, "b''", False),
        (PSU_SET, "b'off'", False),
        (PSU_TOGGLE, "b''", False),
    ], commands
    retained = read_retained(broker.host, broker.port, f"{BASE}plugin/#")
    assert retained[PSU_STATE_TOPIC].payload == b"on"
    assert json.loads(retained[PSU_STATUS_TOPIC].payload) == states[-1]["status"]
    assert states[-1]["status"]["source"] == PSU_TOGGLE

    mqtt_send(broker, "a/b", b"1")
    mqtt_send(broker, "a/c", b"2")
    xs = wait_report(octoprint, PSU, "x", count=2)
    assert [(x["topic"], x["payload"]) for x in xs] == [("a/b", "b'1'"), ("a/c", "b'2'")]

    # A topic string instead of a callback: silently ignored, the subscription stays.
    mqtt_send(broker, PSU_UNSUBSCRIBE, b"by-topic-string")
    result = wait_report(octoprint, PSU, "unsubscribed")[0]
    assert result == {"request": "by-topic-string", "results": {"topic-string": "None"}}, result
    mqtt_send(broker, PSU_SET, b"off")
    assert wait_report(octoprint, PSU, "state", count=4)[-1]["state"] == "off"
    assert "Received UNSUBSCRIBE" not in broker.log_text()

    # For real: every filter of _on_cmd, and only a/b of _on_x.
    mqtt_send(broker, PSU_UNSUBSCRIBE, b"go")
    result = wait_report(octoprint, PSU, "unsubscribed", count=2)[-1]
    assert result == {
        "request": "go",
        "results": {"all-of-on_cmd": "None", "on_x-a/b": "None"},
    }, result
    # Filters nobody uses any more are unsubscribed at the broker, the others stay.
    deadline = time.monotonic() + 20
    while sorted(plugin_unsubscribed(broker)) != sorted([PSU_SET, PSU_TOGGLE, "a/b"]):
        if time.monotonic() > deadline:
            raise AssertionError(f"unsubscribed at the broker: {plugin_unsubscribed(broker)}")
        time.sleep(0.1)

    commands_before = len(reports(octoprint, PSU, "cmd"))
    mqtt_send(broker, PSU_SET, b"on")
    mqtt_send(broker, PSU_TOGGLE, b"")
    mqtt_send(broker, "a/b", b"3")
    mqtt_send(broker, "a/c", b"4")
    # Deliveries are in order on one callback thread: once a/c's arrived, the others would have.
    wait_report(octoprint, PSU, "x", lambda x: x["payload"] == "b'4'")
    time.sleep(0.3)
    xs = reports(octoprint, PSU, "x")
    assert [(x["topic"], x["payload"]) for x in xs] == [
        ("a/b", "b'1'"),
        ("a/c", "b'2'"),
        ("a/c", "b'4'"),
    ], xs
    assert len(reports(octoprint, PSU, "cmd")) == commands_before
    assert len(reports(octoprint, PSU, "state")) == 4
    assert read_retained(broker.host, broker.port, PSU_STATE_TOPIC)[PSU_STATE_TOPIC].payload == (
        b"off"
    )
    unsubscribed = plugin_unsubscribed(broker)
    assert sorted(unsubscribed) == sorted([PSU_SET, PSU_TOGGLE, "a/b"]), unsubscribed
    assert_no_traceback(octoprint.log_text())
