"""Settings migration, end to end in a real OctoPrint: the classic plugin's settings taken over,
and a fresh install's lowercase base topic.
"""

from __future__ import annotations

import pytest
from support.e2ekit import (
    BASE,
    QUICK_GCODE,
    STATUS_TOPIC,
    assert_no_traceback,
    broker_settings,
    event_topic,
    mqtt_config,
    payload_is,
)


@pytest.mark.e2e
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("stored_base", "expected_base"),
    [(None, "octoPrint/"), ("farm/p1/", "farm/p1/")],
    ids=["classic-default-base", "classic-explicit-base"],
)
def test_classic_settings_migration(
    broker, subscriber_factory, octoprint_factory, stored_base, expected_base
):
    sub = subscriber_factory(broker.host, broker.port)
    settings = broker_settings(broker)
    if stored_base is not None:
        settings["publish"] = {"baseTopic": stored_base}
    octoprint = octoprint_factory(settings, classic_config=True)

    sub.wait_for(f"{expected_base}mqtt", timeout=30, predicate=payload_is(b"connected"))
    sub.wait_for(event_topic("Startup", expected_base), timeout=10)
    assert octoprint.settings()["plugins"]["mqtt"]["publish"]["baseTopic"] == expected_base
    # A later save through the API (OctoPrint then stores only what differs from the
    # defaults) keeps the base topic.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"temperatureThreshold": 0.5}}}})
    sub.wait_for(event_topic("SettingsUpdated", expected_base), timeout=10)
    octoprint.stop()
    stray = [m.topic for m in sub.messages() if not m.topic.startswith(expected_base)]
    assert not stray, f"published outside {expected_base}: {stray}"

    stored = mqtt_config(octoprint)
    assert stored["publish"]["baseTopic"] == expected_base, stored
    assert stored.get("_config_version") == 1, stored
    assert stored["broker"] == {"url": broker.host, "port": broker.port}, stored
    assert stored["publish"]["temperatureThreshold"] == 0.5, stored
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_fresh_install_uses_lowercase_base(broker, subscriber_factory, octoprint_factory):
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory({}, write_mqtt_section=False)
    assert octoprint.settings()["plugins"]["mqtt"]["publish"]["baseTopic"] == BASE

    octoprint.save_settings(
        {"plugins": {"mqtt": {"broker": {"url": broker.host, "port": broker.port}}}}
    )
    sub.wait_for(STATUS_TOPIC, timeout=20, predicate=payload_is(b"connected"))
    octoprint.upload("fresh.gcode", QUICK_GCODE, select=False, print_=False)
    sub.wait_for(event_topic("FileAdded"), timeout=10)
    octoprint.stop()
    stray = [m.topic for m in sub.messages() if not m.topic.startswith(BASE)]
    assert not stray, f"published outside {BASE}: {stray}"

    stored = mqtt_config(octoprint)
    assert stored["broker"] == {"url": broker.host, "port": broker.port}, stored
    assert "baseTopic" not in (stored.get("publish") or {}), stored
    assert_no_traceback(octoprint.log_text())
