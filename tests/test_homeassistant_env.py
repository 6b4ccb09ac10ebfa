"""The Home Assistant environment itself (support/homeassistant_env.py): it starts with the
MQTT entry loaded, creates an entity from a hand-written discovery config, follows its state
and says `online` on its birth topic at every start."""

from __future__ import annotations

import json
import time

import paho.mqtt.publish as publish
import pytest
from support.e2ekit import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.homeassistant]


@pytest.mark.timeout(120)
def test_home_assistant_reads_discovery_and_says_online(
    broker, homeassistant_factory, subscriber_factory
):
    birth = subscriber_factory(broker.host, broker.port, "homeassistant/status")
    ha = homeassistant_factory(broker)
    ha.start()
    birth.wait_for("homeassistant/status", 30, lambda m: m.payload == b"online")
    config = {
        "name": "Smoke",
        "unique_id": "env_smoke",
        "state_topic": "env/smoke",
        "value_template": "{{ value_json.v if value_json.v is not none else None }}",
        "unit_of_measurement": "%",
    }
    publish.single(
        "homeassistant/sensor/env/smoke/config",
        json.dumps(config),
        retain=True,
        hostname=broker.host,
        port=broker.port,
    )
    entity = wait_until(
        lambda: next((e for e in ha.entity_registry() if e["unique_id"] == "env_smoke"), None),
        20,
        lambda: "the entity in the registry",
    )["entity_id"]

    def state():
        return next((s["state"] for s in ha.states() if s["entity_id"] == entity), None)

    # Retained: the entity may subscribe a moment after it is in the registry.
    publish.single("env/smoke", '{"v": 41}', retain=True, hostname=broker.host, port=broker.port)
    wait_until(lambda: state() == "41", 10, lambda: f"state 41, now {state()}")
    # `None` from a template is Home Assistant's "unknown" for a numeric sensor (what our
    # discovery relies on; a text sensor would show "None").
    publish.single("env/smoke", '{"v": null}', hostname=broker.host, port=broker.port)
    wait_until(lambda: state() == "unknown", 10, lambda: f"state unknown, now {state()}")

    birth.clear()
    started = time.monotonic()
    ha.restart()
    birth.wait_for("homeassistant/status", 30, lambda m: m.payload == b"online")
    assert time.monotonic() - started < 60
    assert state() is not None, "the registry kept the entity across the restart"
