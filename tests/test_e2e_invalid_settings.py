"""End to end: invalid values hand-written into config.yaml, with a real OctoPrint and
Mosquitto. Each is logged once in octoprint.log naming the key (OctoPrint configures the
plugin twice at startup and again on every save), and the plugin works with the fallback the
README names: TCP for an unknown transport, `<base>mqtt` for a status topic with a wildcard,
`_timestamp` for a timestamp field that is not a name, in events and in the helpers alike.
"""

from __future__ import annotations

import json

import pytest
from test_e2e_consumers import CONSUMER_DIR, PSU, PSU_SET, PSU_STATUS_TOPIC, mqtt_send, wait_report

BASE = "octoprint/"


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
