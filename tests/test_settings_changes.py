"""Settings changed while running: connection settings reconnect and the others do not, a new
status topic says disconnected on the old one (the core against a real broker), and live
changes saved in a real OctoPrint.
"""

from __future__ import annotations

import re

import pytest
from support.corekit import event_json, settings_for, unique_base, wait_state
from support.e2ekit import (
    BASE,
    QUICK_GCODE,
    STATUS_TOPIC,
    assert_no_traceback,
    broker_settings,
    event_topic,
    json_field_is,
    mqtt_config,
    payload_is,
)
from support.mqtt_env import read_retained


def test_connection_settings_change_reconnects_other_changes_do_not(
    core_factory, broker_factory, subscriber_factory
):
    a, b = broker_factory(), broker_factory()
    base = unique_base()
    sub_a = subscriber_factory(a.host, a.port, f"{base}#")
    sub_b = subscriber_factory(b.host, b.port, f"{base}#")
    core = core_factory(settings_for(a, base))
    wait_state(core, "connected")
    sub_a.wait_for(f"{base}mqtt")

    # Topic and filter changes apply live.
    core.configure(settings_for(a, base, publish={"eventTopic": "ev/{event}"}))
    core.publish_event("Home", {})
    sub_a.wait_for(f"{base}ev/Home")
    assert [m.payload for m in sub_a.messages(f"{base}mqtt")] == [b"connected"]

    # A broker change: `disconnected` on the old broker, `connected` on the new one.
    core.configure(settings_for(b, base))
    sub_a.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"disconnected")
    sub_b.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"connected")
    core.publish_event("Home", {"to": "b"})
    assert event_json(sub_b.wait_for(f"{base}event/Home"))["to"] == "b"


def test_status_topic_change_says_disconnected_on_the_old_topic(
    core_factory, session_broker, subscriber_factory
):
    old, new = unique_base(), unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, "#")
    core = core_factory(settings_for(session_broker, old))
    wait_state(core, "connected")
    sub.wait_for(f"{old}mqtt", predicate=lambda m: m.payload == b"connected")
    core.configure(settings_for(session_broker, old, publish={"lwTopic": "status"}))
    sub.wait_for(f"{old}mqtt", predicate=lambda m: m.payload == b"disconnected")
    sub.wait_for(f"{old}status", predicate=lambda m: m.payload == b"connected")
    core.configure(settings_for(session_broker, new, publish={"lwTopic": "status"}))
    sub.wait_for(f"{old}status", predicate=lambda m: m.payload == b"disconnected")
    sub.wait_for(f"{new}status", predicate=lambda m: m.payload == b"connected")
    retained = read_retained(session_broker.host, session_broker.port)
    assert retained[f"{old}mqtt"].payload == b"disconnected"
    assert retained[f"{old}status"].payload == b"disconnected"
    assert retained[f"{new}status"].payload == b"connected"
    # The new status topic: `disconnected` arrives after `connected`, in order.
    assert [m.payload for m in sub.messages(f"{old}status")] == [b"connected", b"disconnected"]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_live_settings_changes(broker_factory, subscriber_factory, octoprint_factory):
    first, second = broker_factory(), broker_factory()
    sub = subscriber_factory(first.host, first.port)
    status_sub = subscriber_factory(first.host, first.port, STATUS_TOPIC)  # never cleared
    foreign = {"hassTopic": "homeassistant", "controlTopic": "ctl"}
    octoprint = octoprint_factory(broker_settings(first, publish=dict(foreign)))
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    octoprint.connect_printer()
    sub.wait_for(event_topic("Connected"), timeout=15)

    # A new event topic: applies at once, events move.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"eventTopic": "evt/{event}"}}}})
    sub.wait_for(f"{BASE}evt/SettingsUpdated", timeout=10)
    sub.clear()
    octoprint.upload("live.gcode", QUICK_GCODE, select=False, print_=False)
    sub.wait_for(f"{BASE}evt/FileAdded", timeout=10)
    assert not sub.messages(f"{BASE}event/#"), sub.messages(f"{BASE}event/#")

    # The printjob class off: the print's other events still come, its job events do not.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"events": {"printjob": False}}}}})
    sub.wait_for(f"{BASE}evt/SettingsUpdated", timeout=10)
    sub.clear()
    octoprint.print_file("live.gcode")
    octoprint.wait_job_done(timeout=60, name="live.gcode")
    sub.wait_for(
        f"{BASE}evt/PrinterStateChanged",
        timeout=10,
        predicate=json_field_is("state_id", "OPERATIONAL"),
    )
    job_events = {"PrintStarted", "PrintDone", "PrintFailed", "PrintCancelled"}
    leaked = [m.topic for m in sub.messages() if m.topic.rsplit("/", 1)[-1] in job_events]
    assert not leaked, leaked
    assert sub.messages(f"{BASE}evt/PrinterStateChanged"), "no comm events during the print"

    # No reconnect so far: `connected` came exactly once, never `disconnected`.
    assert [m.payload for m in status_sub.messages()] == [b"connected"], status_sub.messages()
    status = read_retained(first.host, first.port, STATUS_TOPIC)
    assert status[STATUS_TOPIC].payload == b"connected", status
    connects = re.findall(r"New client connected from .* as (\S+)", first.log_text())
    plugin_connects = [c for c in connects if not c.startswith("auto-")]
    assert len(plugin_connects) == 1, f"the plugin connected again: {connects}"

    stored = mqtt_config(octoprint)
    for key, value in foreign.items():
        assert stored["publish"].get(key) == value, stored

    # A new broker port: reconnect; the old broker gets `disconnected`, the new `connected`.
    sub_second = subscriber_factory(second.host, second.port)
    octoprint.save_settings({"plugins": {"mqtt": {"broker": {"port": second.port}}}})
    sub.wait_for(STATUS_TOPIC, timeout=10, predicate=payload_is(b"disconnected"))
    sub_second.wait_for(STATUS_TOPIC, timeout=15, predicate=payload_is(b"connected"))
    retained = read_retained(first.host, first.port, STATUS_TOPIC)
    assert retained[STATUS_TOPIC].payload == b"disconnected", retained
    assert [m.payload for m in status_sub.messages()] == [b"connected", b"disconnected"]

    stored = mqtt_config(octoprint)
    for key, value in foreign.items():
        assert stored["publish"].get(key) == value, f"{key} lost on save: {stored}"
    assert stored["publish"]["eventTopic"] == "evt/{event}", stored
    assert stored["publish"]["events"] == {"printjob": False}, stored
    assert stored["broker"]["port"] == second.port, stored
    assert_no_traceback(octoprint.log_text())
