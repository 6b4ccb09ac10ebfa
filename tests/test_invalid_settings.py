"""Settings the core cannot use as they are (typically hand-edited in config.yaml): each is
logged once, naming the key and why, and the core does what docs/settings.md's table says
instead (a status topic of `<base>mqtt` or none, a random client id, no broker, TCP,
`_timestamp`) rather than failing in silence or reconnecting forever.

"Once" is per settings value: configuring the same settings again (OctoPrint does at startup
and on every save) and reconnecting log nothing more.

End to end, the same with a real OctoPrint: invalid values hand-written into config.yaml are
logged once in octoprint.log naming the key (OctoPrint configures the plugin twice at startup
and again on every save), and the plugin works with the fallback, in events and in the helpers
alike.
"""

from __future__ import annotations

import json
import time

import pytest
from support.consumers import CONSUMER_DIR, PSU, PSU_SET, PSU_STATUS_TOPIC, mqtt_send, wait_report
from support.corekit import (
    LOGGER,
    connected_core,
    event_json,
    log_lines,
    settings_for,
    unique_base,
    wait_state,
    wait_until,
)
from support.e2ekit import (
    BASE,
)


def warnings_about(caplog, key: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelname == "WARNING" and f"plugins.mqtt.{key}" in r.getMessage()
    ]


def configure_again_and_reconnect(core, settings, broker):
    """What makes a careless implementation log again: the same settings twice more, and a
    reconnect."""
    core.configure(settings)
    core.configure(settings)
    broker.restart()
    wait_state(core, "connected", timeout=15)


def test_an_invalid_status_topic_falls_back_to_base_mqtt(
    core_factory, broker, subscriber_factory, caplog
):
    base = unique_base()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    settings = settings_for(broker, base, publish={"baseTopic": base, "lwTopic": "status/#"})
    core = core_factory(settings)
    wait_state(core, "connected")
    assert sub.wait_for(f"{base}mqtt").payload == b"connected"
    configure_again_and_reconnect(core, settings, broker)
    [line] = warnings_about(caplog, "publish.lwTopic")
    assert "wildcards" in line and f"{base}status/#" in line and f"{base}mqtt" in line, line


def test_an_invalid_base_topic_means_no_status_topic(
    core_factory, broker, subscriber_factory, caplog
):
    prefix = unique_base().rstrip("/")
    sub = subscriber_factory(broker.host, broker.port, f"{prefix}/#")
    settings = settings_for(broker, f"{prefix}/+/")
    core = core_factory(settings)
    wait_state(core, "connected")
    # Connected and usable: the helper API still publishes; no status, no last will.
    assert core.publish(f"{prefix}/helper", "hello")
    assert sub.wait_for(f"{prefix}/helper").payload == b"hello"
    configure_again_and_reconnect(core, settings, broker)
    assert core.publish(f"{prefix}/helper", "again")
    sub.wait_count(f"{prefix}/helper", 2)
    assert [m.topic for m in sub.messages()] == [f"{prefix}/helper"] * 2
    [line] = warnings_about(caplog, "publish.baseTopic")
    assert "wildcards" in line and "no status topic" in line, line


def test_a_client_id_mqtt_cannot_carry_gives_the_random_id(core_factory, broker, caplog):
    settings = settings_for(broker, unique_base(), client={"client_id": "p" * 70_000})
    core = core_factory(settings)
    wait_state(core, "connected")
    assert "as octoprint-mqtt-" in broker.log_text()
    configure_again_and_reconnect(core, settings, broker)
    [line] = warnings_about(caplog, "client.client_id")
    assert "65535" in line and "random" in line, line


def test_a_long_client_id_is_kept(core_factory, broker, caplog):
    # Longer than the 23 characters MQTT 3.1.1 guarantees; Mosquitto takes it.
    long_id = "printer-in-the-garage-workshop-42"
    core = core_factory(settings_for(broker, unique_base(), client={"client_id": long_id}))
    wait_state(core, "connected")
    assert f"as {long_id} " in broker.log_text()
    assert not warnings_about(caplog, "client.client_id")


@pytest.mark.parametrize("url", [["127.0.0.1"], {"host": "127.0.0.1"}, True, 1883])
def test_a_url_that_is_not_text_is_treated_as_unset(core_factory, session_broker, caplog, url):
    settings = settings_for(session_broker, broker={"url": url})
    core = core_factory(settings)
    wait_state(core, "idle")
    core.configure(settings)
    time.sleep(0.2)
    [line] = warnings_about(caplog, "broker.url")
    assert "host name" in line, line
    assert core.status()["state"] == "idle"


@pytest.mark.parametrize("transport", ["carrier-pigeon", ["websockets"], 5])
def test_an_unknown_transport_is_tcp(core_factory, broker, subscriber_factory, caplog, transport):
    base = unique_base()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    settings = settings_for(broker, base, broker={"transport": transport})
    core = core_factory(settings)
    wait_state(core, "connected")
    assert sub.wait_for(f"{base}mqtt").payload == b"connected"
    configure_again_and_reconnect(core, settings, broker)
    [line] = warnings_about(caplog, "broker.transport")
    assert "tcp" in line or "using its default" in line, line


@pytest.mark.parametrize("field", ["", None, 5, ["ts"], {"a": 1}])
def test_a_timestamp_field_that_is_not_a_name_is_timestamp(
    core_factory, session_broker, subscriber_factory, caplog, field
):
    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    settings = settings_for(session_broker, base, timestamp_fieldname=field)
    core = core_factory(settings)
    wait_state(core, "connected")
    assert core.timestamp_field == "_timestamp"
    for _ in range(3):
        core.configure(settings)
        core.publish_event("Home", {"n": 1})
    core.publish_progress("printing", {"progress": 5})
    core.publish_temperatures({"time": 1, "bed": {"actual": 20.0, "target": 0.0}})
    payloads = [
        *(event_json(m) for m in sub.wait_count(f"{base}event/Home", 3)),
        event_json(sub.wait_for(f"{base}progress/printing")),
        event_json(sub.wait_for(f"{base}temperature/bed")),
    ]
    for payload in payloads:
        assert "_timestamp" in payload and "" not in payload, payload
        assert not any(key in payload for key in ("5", "ts", "None")), payload
    [line] = warnings_about(caplog, "timestamp_fieldname")
    assert "_timestamp" in line or "default" in line, line


def test_a_valid_timestamp_field_is_used(core_factory, session_broker, subscriber_factory, caplog):
    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    core = core_factory(settings_for(session_broker, base, timestamp_fieldname="ts"))
    wait_state(core, "connected")
    assert core.timestamp_field == "ts"
    core.publish_event("Home", None)
    assert "ts" in json.loads(sub.wait_for(f"{base}event/Home").payload)
    assert not warnings_about(caplog, "timestamp_fieldname")


def test_a_changed_invalid_value_is_logged_again(core_factory, session_broker, caplog):
    core = core_factory(settings_for(session_broker, broker={"transport": "pigeon"}))
    wait_state(core, "connected")
    core.configure(settings_for(session_broker, broker={"transport": "owl"}))
    wait_until(lambda: len(warnings_about(caplog, "broker.transport")) == 2, 5, "second warning")
    core.configure(settings_for(session_broker, broker={"transport": "owl"}))
    time.sleep(0.2)
    lines = warnings_about(caplog, "broker.transport")
    assert len(lines) == 2 and "pigeon" in lines[0] and "owl" in lines[1], lines


def test_an_unusable_setting_falls_back_alone(
    core_factory, session_broker, subscriber_factory, caplog
):
    # A cleared number field saves "" or None: that key gets its default, with a warning,
    # and every other setting (here the broker's port as text, the base topic) still applies.
    core, sub, base = connected_core(
        core_factory,
        session_broker,
        subscriber_factory,
        broker={"port": str(session_broker.port), "keepalive": None, "lwRetain": "sometimes"},
    )
    core.publish_event("Home", {})
    sub.wait_for(f"{base}event/Home")
    assert log_lines(caplog, "plugins.mqtt.broker.keepalive: ")
    assert log_lines(caplog, "plugins.mqtt.broker.lwRetain: ")
    assert len(log_lines(caplog, "using its default")) == 2


def lines_about(octoprint, key: str) -> list[str]:
    return [
        line
        for line in octoprint.log_text().splitlines()
        if "WARNING" in line and f"plugins.mqtt.{key}" in line
    ]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_invalid_values_are_logged_once_and_fall_back(
    broker, subscriber_factory, octoprint_factory
):
    sub = subscriber_factory(broker.host, broker.port, f"{BASE}#")
    octoprint = octoprint_factory(
        {
            "broker": {"url": broker.host, "port": broker.port, "transport": "carrier-pigeon"},
            "publish": {"lwTopic": "status/#"},
            "timestamp_fieldname": "",
        },
        plugin_files=[CONSUMER_DIR / f"{PSU}.py"],
    )
    assert sub.wait_for(f"{BASE}mqtt", timeout=20).payload == b"connected"
    startup = json.loads(sub.wait_for(f"{BASE}event/Startup", timeout=20).payload)
    assert "_timestamp" in startup and "" not in startup, startup

    # An unrelated save configures the plugin again: nothing more is logged.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"temperatureThreshold": 0.5}}}})
    updated = json.loads(sub.wait_for(f"{BASE}event/SettingsUpdated", timeout=20).payload)
    assert "_timestamp" in updated and "" not in updated, updated
    for key in ("broker.transport", "publish.lwTopic", "timestamp_fieldname"):
        assert len(lines_about(octoprint, key)) == 1, (key, lines_about(octoprint, key))

    # Not a string at all: the helper's timestamp follows the core's, `_timestamp`.
    octoprint.save_settings({"plugins": {"mqtt": {"timestamp_fieldname": 7}}})
    sub.wait_count(f"{BASE}event/SettingsUpdated", 2, timeout=20)
    mqtt_send(broker, PSU_SET, b"on")
    status = wait_report(octoprint, PSU, "state")[0]["status"]
    assert isinstance(status.get("_timestamp"), int) and "7" not in status, status
    assert json.loads(sub.wait_for(PSU_STATUS_TOPIC, timeout=10).payload) == status
    later = json.loads(sub.messages(f"{BASE}event/SettingsUpdated")[-1].payload)
    assert "_timestamp" in later and "7" not in later, later
    assert len(lines_about(octoprint, "timestamp_fieldname")) == 2
    assert "Traceback" not in octoprint.log_text()
