"""With the real thing: a Home Assistant core from PyPI (its own virtualenv, its MQTT
integration set up through a config entry pointing at the test's Mosquitto) and a real
OctoPrint with the virtual printer and this plugin's built-in discovery.

Every entity appears in Home Assistant's entity registry with its unique_id, their states
follow a print, availability drops when OctoPrint is killed and comes back with it, and after
a restart of Home Assistant alone, against a broker that lost every retained message of the
printer, all entities have their current values within 5 s of its birth message.
"""

from __future__ import annotations

import time

import paho.mqtt.publish as publish
import pytest
from support.e2ekit import (
    BED_TARGET,
    DISCOVERY_OBJECTS,
    STATE_TOPIC,
    STATUS_TOPIC,
    TOOL_TARGET,
    broker_settings,
    heating_print_gcode,
    wait_until,
)
from support.mqtt_env import read_retained

pytestmark = [pytest.mark.e2e, pytest.mark.homeassistant]

OBJECTS = {obj for objects in DISCOVERY_OBJECTS.values() for obj in objects}
# Home Assistant's answer to the birth message arrives within a second; entities need their
# discovery processed and their state read on top.
AFTER_BIRTH = 5.0


def entity_ids(ha, node: str) -> dict[str, str]:
    """Our entities in Home Assistant's registry: object id -> entity id."""
    prefix = f"{node}_"
    return {
        e["unique_id"][len(prefix) :]: e["entity_id"]
        for e in ha.entity_registry()
        if e.get("platform") == "mqtt" and str(e.get("unique_id", "")).startswith(prefix)
    }


def states(ha, ids: dict[str, str]) -> dict[str, str]:
    """The state of each entity, by object id (None: Home Assistant has no state for it)."""
    current = {s["entity_id"]: s["state"] for s in ha.states()}
    return {obj: current.get(entity) for obj, entity in ids.items()}


def wait_states(ha, ids, check, timeout: float, what: str) -> dict[str, str]:
    return wait_until(
        lambda: check(s := states(ha, ids)) and s,
        timeout,
        lambda: f"{what}; states now: {states(ha, ids)}",
    )


def number(state: str | None) -> float | None:
    try:
        return float(state)
    except (TypeError, ValueError):
        return None  # unknown, unavailable, or no state


def clear_retained(broker, topics) -> None:
    for topic in topics:
        publish.single(topic, b"", retain=True, hostname=broker.host, port=broker.port)


@pytest.mark.timeout(420)
def test_entities_follow_a_print_and_survive_restarts(
    broker, octoprint_factory, homeassistant_factory, subscriber_factory
):
    octoprint = octoprint_factory(broker_settings(broker, homeassistant={"discovery": True}))
    report = octoprint.get("/api/plugin/mqtt")["homeassistant"]
    node = report["node_id"]
    assert node.startswith("octoprint-") and report["off"] is None, report
    ha = homeassistant_factory(broker)
    ha.start()

    # Every entity, with its unique id, in one device named after the host.
    ids = wait_until(
        lambda: (found := entity_ids(ha, node)) and set(found) == OBJECTS and found,
        30,
        lambda: f"entities {sorted(entity_ids(ha, node))}, wanted {sorted(OBJECTS)}",
    )
    devices = [d for d in ha.device_registry() if ["mqtt", node] in d["identifiers"]]
    assert len(devices) == 1, devices
    assert devices[0]["manufacturer"] == "OctoPrint"
    assert devices[0]["sw_version"]

    # States follow the printer and a print.
    wait_states(ha, ids, lambda s: s["state"] == "Offline", 15, "the printer offline")
    octoprint.connect_printer()
    wait_states(
        ha,
        ids,
        lambda s: s["state"] == "Operational" and s["connected"] == "on",
        15,
        "the printer operational",
    )
    octoprint.upload("ha.gcode", heating_print_gcode(moves=120, dwell_ms=100))
    printing = wait_states(
        ha,
        ids,
        lambda s: s["printing"] == "on" and s["file"] == "ha.gcode",
        30,
        "a print of ha.gcode",
    )
    assert printing["state"] in ("Printing", "Starting"), printing
    heated = wait_states(
        ha,
        ids,
        lambda s: (
            number(s["progress"]) is not None
            and number(s["tool0_target"]) == TOOL_TARGET
            and number(s["bed_target"]) == BED_TARGET
            and (number(s["print_time"]) or 0) > 0
        ),
        60,
        "progress, print time and targets",
    )
    assert 0 <= int(heated["progress"]) <= 100
    octoprint.wait_job_done(timeout=120, name="ha.gcode")
    done = wait_states(
        ha,
        ids,
        lambda s: s["printing"] == "off" and s["state"] == "Operational",
        15,
        "the print done",
    )
    assert done["connected"] == "on"

    # Availability: OctoPrint killed (the last will), then back.
    octoprint.kill()
    wait_states(
        ha,
        ids,
        lambda s: all(v == "unavailable" for v in s.values()),
        15,
        "every entity unavailable",
    )
    octoprint.start()
    octoprint.connect_printer()
    wait_states(
        ha,
        ids,
        lambda s: s["state"] == "Operational" and s["connected"] == "on",
        30,
        "the entities available again",
    )

    # Home Assistant restarts alone, and meanwhile the broker loses every retained message
    # of the printer (as a broker restarted without persistence): only the plugin's answer to
    # the birth message can bring the entities back with their values.
    ha.stop()
    retained = read_retained(broker.host, broker.port, "#")
    printer_topics = [t for t in retained if t.startswith(("octoprint/", "homeassistant/"))]
    assert STATE_TOPIC in printer_topics and STATUS_TOPIC in printer_topics, printer_topics
    clear_retained(broker, [t for t in printer_topics if t != "homeassistant/status"])
    birth = subscriber_factory(broker.host, broker.port, "homeassistant/status")
    ha.start()
    born = birth.wait_for("homeassistant/status", 30, lambda m: m.payload == b"online")
    back = wait_states(
        ha,
        ids,
        lambda s: (
            s["state"] == "Operational"
            and s["connected"] == "on"
            and s["printing"] == "off"
            and number(s["tool0_temperature"]) is not None
        ),
        AFTER_BIRTH + 10,
        "current values after the restart",
    )
    took = time.monotonic() - born.received_at
    assert took <= AFTER_BIRTH, f"current values {took:.1f} s after the birth message: {back}"
    assert "Home Assistant said online" in octoprint.log_text()
