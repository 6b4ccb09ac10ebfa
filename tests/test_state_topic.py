"""The retained printer-state topic through the core to a real Mosquitto: its shape, one
message per distinct state however close together, progress and temperatures paced to
`publish.stateInterval` with the newest values last, the current state at every connect and
for every late subscriber, and MQTT 5's message expiry (`publish.stateExpiry`).

End to end with a real OctoPrint and its virtual printer: tests/test_state_topic_print.py.
"""

from __future__ import annotations

import json
import time

import pytest
from support.corekit import connected_core, settings_for, unique_base, wait_state, wait_until
from support.mqtt_env import read_retained, read_retained_v5

JOB = {
    "file": {
        "name": "cube.gcode",
        "path": "folder/cube.gcode",
        "display": "cube.gcode",
        "origin": "local",
        "size": 1234,
        "date": 1700000000,
    },
    "estimatedPrintTime": 321.5,
    "averagePrintTime": None,
    "lastPrintTime": None,
    "filament": {"tool0": {"length": 10.0, "volume": 1.0}},
    "user": "admin",
}
NO_JOB = {"file": {"name": None, "path": None, "origin": None, "size": None, "date": None}}
FLAGS = ["operational", "printing", "paused", "error", "ready", "cancelling", "pausing"]


def progress(completion, print_time=10, left=90):
    return {
        "completion": completion,
        "filepos": 100,
        "printTime": print_time,
        "printTimeLeft": left,
        "printTimeLeftOrigin": "estimate",
        "printTimeOrigin": None,
    }


def states(sub, topic):
    return [json.loads(m.payload) for m in sub.messages(topic)]


def retained_state(broker, topic):
    found = read_retained(broker.host, broker.port, topic)
    assert topic in found, f"no retained message on {topic}"
    return json.loads(found[topic].payload)


@pytest.mark.timeout(30)
def test_the_state_message_keys_values_and_flags(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    topic = f"{base}state"
    core.printer_data(JOB, progress(41.6))
    core.printer_state("PRINTING", "Printing", JOB)
    core.publish_temperatures(
        {"time": 1700000001, "tool0": {"actual": 199.5, "target": 200.0}, "bed": {"actual": 60}}
    )
    msg = wait_until(
        lambda: [m for m in sub.messages(topic) if json.loads(m.payload)["temperatures"]],
        what="a state with temperatures",
    )[-1]
    assert msg.retain is False and msg.qos == 0  # live copy; the retained one below
    body = json.loads(msg.payload)
    assert list(body) == ["state", "job", "progress", "temperatures", "_timestamp"]
    assert list(body["state"]) == ["text", "flags", "error"]
    assert body["state"]["text"] == "Printing" and body["state"]["error"] == ""
    assert list(body["state"]["flags"]) == [*FLAGS, "closedOrError"]
    assert body["state"]["flags"] == {
        "operational": True,
        "printing": True,
        "paused": False,
        "error": False,
        "ready": False,
        "cancelling": False,
        "pausing": False,
        "closedOrError": False,
    }
    assert body["job"] == {
        "name": "cube.gcode",
        "path": "folder/cube.gcode",
        "origin": "local",
        "size": 1234,
        "estimatedPrintTime": 321.5,
        "user": "admin",
    }
    assert list(body["progress"]) == [
        "completion",
        "percent",
        "printTime",
        "printTimeLeft",
        "printTimeLeftOrigin",
    ]
    assert body["progress"]["completion"] == 41.6 and body["progress"]["percent"] == 42
    assert body["temperatures"] == {
        "tool0": {"actual": 199.5, "target": 200.0},
        "bed": {"actual": 60.0, "target": None},
    }
    assert isinstance(body["_timestamp"], int)
    assert retained_state(session_broker, topic) == body


@pytest.mark.timeout(30)
def test_a_burst_of_states_gives_one_message_per_distinct_state_in_order(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    topic = f"{base}state"
    core.printer_state("PRINTING", "Printing", JOB)
    sub.wait_for(topic)
    sub.clear()
    # Within a few milliseconds, as OctoPrint reports the end of a print; one repeated.
    for state_id, text in [
        ("FINISHING", "Finishing"),
        ("FINISHING", "Finishing"),
        ("OPERATIONAL", "Operational"),
        ("PRINTING", "Printing"),
        ("CANCELLING", "Cancelling"),
        ("OPERATIONAL", "Operational"),
    ]:
        core.printer_state(state_id, text, JOB)
    sub.wait_count(topic, 5)
    time.sleep(0.3)
    got = [s["state"]["text"] for s in states(sub, topic)]
    assert got == ["Finishing", "Operational", "Printing", "Cancelling", "Operational"], got
    cancelling = states(sub, topic)[3]["state"]["flags"]
    assert cancelling["cancelling"] and cancelling["printing"] and cancelling["operational"]
    assert states(sub, topic)[-1]["state"]["flags"]["ready"] is True


@pytest.mark.timeout(30)
def test_progress_and_temperatures_are_paced_and_the_newest_arrives(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"stateInterval": 1.0}
    )
    topic = f"{base}state"
    core.printer_state("PRINTING", "Printing", JOB)
    sub.wait_for(topic)
    sub.clear()
    started = time.monotonic()
    # 2 s of updates every 20 ms: 100 changes of progress and temperature.
    for i in range(100):
        core.printer_data(JOB, progress(i * 0.5))
        core.publish_temperatures({"tool0": {"actual": 20.0 + i, "target": 200.0}})
        time.sleep(0.02)
    spent = time.monotonic() - started
    # The last progress and the last temperature come a moment apart: when an interval ends
    # between them, the state with both is the next interval's.
    wait_until(
        lambda: [
            s
            for s in states(sub, topic)
            if s["progress"]["completion"] == 49.5 and s["temperatures"]["tool0"]["actual"] == 119.0
        ],
        what="the newest progress and temperature",
        timeout=5,
    )
    sent = len(sub.messages(topic))
    # One per interval started (the first change may go out at once), nothing more.
    assert sent <= int(spent) + 2, (sent, spent)
    arrivals = [m.received_at for m in sub.messages(topic)]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert all(g > 0.8 for g in gaps), gaps
    # The temperature topic itself is not paced (publish.temperatureInterval is 0).
    assert len(sub.messages(f"{base}temperature/tool0")) == 100


@pytest.mark.timeout(30)
def test_the_current_state_goes_out_after_connected_at_every_connect(
    core_factory, broker, subscriber_factory
):
    base = unique_base()
    core = core_factory()
    # Known before the first connection: handed over while offline, nothing is queued.
    core.printer_state("OPERATIONAL", "Operational", NO_JOB)
    core.printer_data(JOB, progress(5.0))
    core.printer_state("PRINTING", "Printing", JOB)
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    core.configure(settings_for(broker, base))
    wait_state(core, "connected")
    sub.wait_for(f"{base}state")
    topics = [m.topic for m in sub.messages()]
    assert topics[:2] == [f"{base}mqtt", f"{base}state"], topics
    assert len(sub.messages(f"{base}state")) == 1, "one state, not the ones before connecting"
    assert states(sub, f"{base}state")[0]["state"]["text"] == "Printing"
    assert core.status()["refused"] == 0, "offline state changes are not counted as refused"

    # Offline changes are not replayed; the state at the reconnect is the current one.
    broker.stop()
    wait_state(core, "backing_off")
    core.printer_state("PAUSED", "Paused", JOB)
    core.printer_state("OPERATIONAL", "Operational", JOB)
    sub.clear()
    broker.start()
    wait_state(core, "connected", timeout=20)
    sub.wait_connected(timeout=20)
    got = wait_until(lambda: states(sub, f"{base}state"), what="the state after reconnect")
    assert [s["state"]["text"] for s in got] == ["Operational"]
    assert retained_state(broker, f"{base}state")["state"]["text"] == "Operational"


@pytest.mark.timeout(30)
def test_a_late_subscriber_reads_the_current_state(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    topic = f"{base}state"
    for state_id, text in [("OPERATIONAL", "Operational"), ("PRINTING", "Printing")]:
        core.printer_state(state_id, text, JOB)
        sub.wait_for(topic, predicate=lambda m, t=text: json.loads(m.payload)["state"]["text"] == t)
        assert retained_state(session_broker, topic)["state"]["text"] == text
    core.printer_error("Too many consecutive timeouts, printer still connected and alive?")
    core.printer_state("OFFLINE", "Offline", NO_JOB)
    wait_until(
        lambda: retained_state(session_broker, topic)["state"]["text"] == "Offline after error",
        what="the offline state",
    )
    body = retained_state(session_broker, topic)
    assert body["state"]["error"].startswith("Too many consecutive timeouts")
    assert body["state"]["flags"]["closedOrError"] is True
    assert body["job"] is None and body["progress"] is None


@pytest.mark.timeout(30)
def test_the_state_topic_can_be_moved_or_switched_off(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    core.printer_state("OPERATIONAL", "Operational", NO_JOB)
    sub.wait_for(f"{base}state")
    core.configure(settings_for(session_broker, base, publish={"stateTopic": "printer/now"}))
    # The current state at once under the new name.
    sub.wait_for(f"{base}printer/now")
    core.configure(settings_for(session_broker, base, publish={"stateActive": False}))
    sub.clear()
    core.printer_state("PRINTING", "Printing", JOB)
    core.publish_event("PrintStarted", {"name": "x"})
    sub.wait_for(f"{base}event/PrintStarted")
    time.sleep(0.3)
    assert not [m for m in sub.messages() if "state" in m.topic or "now" in m.topic]


@pytest.mark.timeout(30)
def test_mqtt5_expiry_lets_the_broker_drop_a_vanished_printers_state(
    core_factory, session_broker, subscriber_factory
):
    base = unique_base()
    core = core_factory(
        settings_for(
            session_broker,
            base,
            broker={"protocol": "MQTTv5"},
            publish={"stateExpiry": 2},
        )
    )
    wait_state(core, "connected")
    core.printer_state("PRINTING", "Printing", JOB)
    msg = wait_until(
        lambda: read_retained_v5(session_broker.host, session_broker.port, f"{base}state", 1.0),
        what="the retained state",
    )
    expiry = getattr(msg.properties, "MessageExpiryInterval", None)
    assert expiry is not None and 0 < expiry <= 2, msg.properties
    # Unchanged, the state is sent again after half the expiry: it does not expire while
    # this OctoPrint is there.
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}state")
    sub.wait_count(f"{base}state", 3, timeout=4)
    # The OctoPrint vanishes (its core is stopped; the state is not published again).
    core.stop(1.0)
    time.sleep(3.0)
    assert read_retained_v5(session_broker.host, session_broker.port, f"{base}state", 1.0) is None

    # Without an expiry (the default) the state stays.
    other = unique_base()
    core = core_factory(settings_for(session_broker, other, broker={"protocol": "MQTTv5"}))
    wait_state(core, "connected")
    core.printer_state("PRINTING", "Printing", JOB)
    msg = wait_until(
        lambda: read_retained_v5(session_broker.host, session_broker.port, f"{other}state", 1.0),
        what="the retained state",
    )
    assert getattr(msg.properties, "MessageExpiryInterval", None) is None


@pytest.mark.timeout(30)
def test_the_temperature_interval_sends_the_last_reading_when_it_ends(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(
        core_factory,
        session_broker,
        subscriber_factory,
        publish={"temperatureInterval": 1.0, "stateActive": False},
    )
    topic = f"{base}temperature/tool0"
    for i in range(10):
        core.publish_temperatures({"time": 1000 + i, "tool0": {"actual": 20.0 + i, "target": 0}})
        time.sleep(0.05)
    # The first at once; the newest (29.0) when the interval ends; nothing in between.
    got = sub.wait_count(topic, 2, timeout=5)
    time.sleep(1.5)
    got = [json.loads(m.payload) for m in sub.messages(topic)]
    assert [g["actual"] for g in got] == [20.0, 29.0], got
    assert got[-1]["_timestamp"] == 1009
    arrivals = [m.received_at for m in sub.messages(topic)]
    assert arrivals[1] - arrivals[0] > 0.8
    # Per heater: the bed has an interval of its own.
    core.publish_temperatures({"tool0": {"actual": 40.0}, "bed": {"actual": 50.0}})
    sub.wait_for(f"{base}temperature/bed", timeout=2)
