"""The checks of saved values: bad ones are named, good ones pass, typed ones are normalised."""

from __future__ import annotations


def test_bad_values_are_named_and_good_ones_pass():
    from octoprint_mqtt import validation
    from octoprint_mqtt.plugin import settings_defaults

    merged = settings_defaults()
    bad = {
        "broker": {"port": "70000", "keepalive": -1, "url": "mqtt://host"},
        "publish": {
            "eventTopic": "event/+/{event}",
            "offlineQueueSize": "many",
            "temperatureThreshold": -1,
        },
    }
    found = validation.problems(bad, merged)
    assert set(found) == {
        ("broker", "port"),
        ("broker", "keepalive"),
        ("broker", "url"),
        ("publish", "eventTopic"),
        ("publish", "offlineQueueSize"),
        ("publish", "temperatureThreshold"),
    }, found
    assert "wildcard" in found[("publish", "eventTopic")] or "+" in found[("publish", "eventTopic")]
    assert validation.problems({"publish": {"baseTopic": "a/#/"}}, merged)
    good = {"broker": {"port": "1884", "url": "mqtt.local"}, "publish": {"baseTopic": "x/"}}
    assert validation.problems(good, merged) == {}
    validation.drop(bad, found)
    assert bad == {"broker": {}, "publish": {}}
    typed = {
        "broker": {"port": " 1884", "keepalive": "60"},
        "publish": {"temperatureThreshold": "0.5"},
    }
    validation.normalise(typed)
    assert typed == {
        "broker": {"port": 1884, "keepalive": 60},
        "publish": {"temperatureThreshold": 0.5},
    }
