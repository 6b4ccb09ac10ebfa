"""Test connection reads the settings as the live connection does: a stored value the
connection tolerates (falls back to its default, with a warning) is tolerated by the test too,
and named in its answer, instead of the whole test failing with "invalid MQTT settings". Through
the core and through the plugin's API on a real OctoPrint, against real brokers.
"""

from __future__ import annotations

import pytest
import requests
from support.corekit import settings_for, wait_state

from octoprint_mqtt_core._core import test_connection as probe

USER, PASSWORD = "printer", "stored-pw-L3n7"
# Each is what a cleared form field or a hand-edited config.yaml leaves.
TOLERATED = [
    ({"broker": {"keepalive": ""}}, "broker.keepalive"),
    ({"broker": {"retain": "maybe"}}, "broker.retain"),
    ({"timestamp_fieldname": ""}, "timestamp_fieldname"),
    ({"publish": {"offlineQueueSize": "many"}}, "publish.offlineQueueSize"),
]


@pytest.mark.parametrize(("extra", "key"), TOLERATED, ids=[k for _, k in TOLERATED])
def test_the_core_tests_what_it_connects_with(core_factory, broker, extra, key):
    settings = settings_for(broker, **extra)
    wait_state(core_factory(settings), "connected")
    out = probe(settings)
    assert out["ok"] is True, out
    assert [w for w in out["warnings"] if w.startswith(f"plugins.mqtt.{key}:")], out


def test_a_clean_tree_has_no_warnings(broker):
    assert probe(settings_for(broker))["warnings"] == []


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_the_api_tests_the_stored_settings(password_broker_factory, octoprint_factory):
    b = password_broker_factory(USER, PASSWORD)
    stored = {"url": b.host, "port": b.port, "username": USER, "password": PASSWORD}
    octoprint = octoprint_factory({"broker": {**stored, "keepalive": ""}})

    def test(form):
        response = requests.post(
            f"{octoprint.url}/api/plugin/mqtt",
            json={"command": "test_connection", "settings": form},
            headers={"X-Api-Key": octoprint.api_key},
            timeout=15,
        )
        assert response.status_code == 200, response.text
        return response.json()

    # The page sends the form with the password field blank: the stored one is used, since
    # the endpoint is the stored one however the keepalive reads.
    for form in ({}, {"broker": {"url": b.host, "port": str(b.port), "password": ""}}):
        out = test(form)
        assert out["ok"] is True, out
        assert any(w.startswith("plugins.mqtt.broker.keepalive:") for w in out["warnings"]), out
