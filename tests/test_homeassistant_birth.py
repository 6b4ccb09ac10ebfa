"""Home Assistant's birth message through the core and a real Mosquitto: `online` on
`homeassistant.birthTopic` (retained or not) makes the plugin publish again, within a
second, `connected`, the state topic, the retained temperatures and progress and the
discovery configs; at most once per 5 s; the watch survives plugins unsubscribing the same
topic, and an empty birth topic watches nothing.

With a real Home Assistant: tests/test_homeassistant.py.
"""

from __future__ import annotations

import json
import time

import paho.mqtt.publish as mqtt_publish
import pytest
from support.corekit import log_lines, settings_for, unique_base, wait_state, wait_until
from support.mqtt_env import read_retained

DEVICE = {
    "name": "Bench printer",
    "manufacturer": "OctoPrint",
    "model": "Virtual",
    "sw_version": "1.11.8",
    "configuration_url": None,
    "heaters": ["tool0", "bed"],
}
SAMPLE = {"time": 1700000001, "tool0": {"actual": 199.5, "target": 200.0}, "bed": {"actual": 60}}


def homeassistant(base: str, **extra) -> dict:
    """A birth topic and discovery prefix of the test's own (tests share a broker)."""
    return {"birthTopic": f"{base}ha/status", "prefix": f"{base}ha", **extra}


def say(broker, topic: str, payload: str, retain: bool = False) -> None:
    mqtt_publish.single(topic, payload, retain=retain, hostname=broker.host, port=broker.port)


def after(sub, since: float, topic: str | None = None):
    return [m for m in sub.messages(topic) if m.received_at > since]


def ready_core(core_factory, broker, subscriber_factory, **homeassistant_settings):
    """A connected core with a state, temperatures and progress, its first messages seen."""
    base = unique_base()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    core = core_factory(
        settings_for(broker, base, homeassistant=homeassistant(base, **homeassistant_settings))
    )
    wait_state(core, "connected")
    sub.wait_for(f"{base}mqtt")
    core.printer_state("OPERATIONAL", "Operational", None)
    core.publish_temperatures(SAMPLE)
    core.publish_progress("printing", {"location": "local", "path": "a.gcode", "progress": 42})
    sub.wait_for(f"{base}progress/printing")
    sub.wait_for(f"{base}temperature/bed")
    return core, sub, base


@pytest.mark.timeout(30)
def test_online_publishes_status_state_and_retained_values_again(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = ready_core(core_factory, session_broker, subscriber_factory)
    wait_until(lambda: sub.messages(f"{base}state"), what="the state")
    time.sleep(0.3)  # the subscription to the birth topic is made right after connect
    since = time.monotonic()
    say(session_broker, f"{base}ha/status", "online")
    wanted = [
        f"{base}mqtt",
        f"{base}state",
        f"{base}temperature/tool0",
        f"{base}temperature/bed",
        f"{base}progress/printing",
    ]
    wait_until(
        lambda: all(after(sub, since, t) for t in wanted),
        timeout=5,
        what=f"all of {wanted} again (got {[m.topic for m in after(sub, since)]})",
    )
    first = min(m.received_at for m in after(sub, since))
    assert first - since < 1.0, "answered within a second"
    assert after(sub, since, f"{base}mqtt")[0].payload == b"connected"
    progress = json.loads(after(sub, since, f"{base}progress/printing")[-1].payload)
    assert progress["progress"] == 42 and progress["path"] == "a.gcode"
    tool = json.loads(after(sub, since, f"{base}temperature/tool0")[-1].payload)
    assert tool["actual"] == 199.5 and tool["target"] == 200.0
    state = json.loads(after(sub, since, f"{base}state")[-1].payload)
    assert state["state"]["text"] == "Operational"
    assert state["temperatures"]["tool0"] == {"actual": 199.5, "target": 200.0}

    # Within 5 s of the answer, another birth gets none; after that it does.
    time.sleep(0.5)
    again = time.monotonic()
    say(session_broker, f"{base}ha/status", "online")
    say(session_broker, f"{base}ha/status", "offline")
    time.sleep(1.0)
    assert not after(sub, again, f"{base}mqtt"), "a second birth within 5 s is not answered"
    time.sleep(max(0.0, since + 5.2 - time.monotonic()))
    late = time.monotonic()
    say(session_broker, f"{base}ha/status", "online")
    sub.wait_for(f"{base}mqtt", 3, lambda m: m.received_at > late)


@pytest.mark.timeout(30)
def test_a_retained_birth_is_answered_once_per_connection(
    core_factory, broker, subscriber_factory, caplog
):
    base = unique_base()
    say(broker, f"{base}ha/status", "online", retain=True)
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    sub.wait_for(f"{base}ha/status")
    core = core_factory(settings_for(broker, base, homeassistant=homeassistant(base)))
    wait_state(core, "connected")
    wait_until(
        lambda: len(sub.messages(f"{base}mqtt")) >= 2,
        timeout=5,
        what="connected at connect and again for the retained birth",
    )
    time.sleep(1.0)
    assert [m.payload for m in sub.messages(f"{base}mqtt")] == [b"connected", b"connected"]
    assert log_lines(caplog, "Home Assistant said online")


@pytest.mark.timeout(30)
def test_the_watch_outlives_a_plugin_unsubscribing_the_same_topic(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = ready_core(core_factory, session_broker, subscriber_factory)
    seen = []

    def callback(topic, payload, **kwargs):
        seen.append(payload)

    core.subscribe(f"{base}ha/status", callback)
    time.sleep(0.3)
    say(session_broker, f"{base}ha/status", "hello")
    wait_until(lambda: seen == [b"hello"], what="the plugin's callback")
    core.unsubscribe(callback)
    time.sleep(0.3)
    since = time.monotonic()
    say(session_broker, f"{base}ha/status", "online")
    sub.wait_for(f"{base}mqtt", 3, lambda m: m.received_at > since)
    assert seen == [b"hello"], "the callback was removed"


@pytest.mark.timeout(30)
def test_an_empty_birth_topic_watches_nothing(core_factory, session_broker, subscriber_factory):
    core, sub, base = ready_core(core_factory, session_broker, subscriber_factory, birthTopic="")
    time.sleep(0.3)
    since = time.monotonic()
    say(session_broker, f"{base}ha/status", "online")
    say(session_broker, "homeassistant/status", "online")
    time.sleep(1.5)
    assert not after(sub, since, f"{base}mqtt")
    assert core.status()["received"] == 0


@pytest.mark.timeout(30)
def test_discovery_configs_come_again_after_a_birth(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = ready_core(
        core_factory, session_broker, subscriber_factory, discovery=True, nodeId="node1"
    )
    configs = f"{base}ha/#"
    ha = subscriber_factory(session_broker.host, session_broker.port, configs)
    core.homeassistant_device(DEVICE, "generated")
    wait_until(lambda: len(ha.messages()) == 12, timeout=5, what="12 discovery configs")
    assert core.homeassistant_status() | {"topics": None} == {
        "node_id": "node1",
        "entities": 12,
        "off": None,
        "other_plugin": None,
        "topics": None,
    }
    time.sleep(0.3)
    since = time.monotonic()
    say(session_broker, f"{base}ha/status", "online")
    wait_until(
        lambda: len([m for m in after(ha, since) if m.topic.endswith("/config")]) == 12,
        timeout=3,
        what="the 12 configs again",
    )
    assert all(m.qos == 1 for m in after(ha, since) if m.topic.endswith("/config"))
    kept = read_retained(session_broker.host, session_broker.port, f"{base}ha/+/node1/+/config")
    assert len(kept) == 12
