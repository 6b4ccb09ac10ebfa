"""Temperatures: the threshold rule, every heater, retain, and queueing while offline, through
the core to a real broker.
"""

from __future__ import annotations

import json
import time

from support.corekit import (
    connected_core,
    event_json,
    settings_for,
    unique_base,
    wait_state,
)
from support.mqtt_env import read_retained


def sample(t, **heaters):
    data = {"time": t}
    for name, (actual, target) in heaters.items():
        data[name] = {"actual": actual, "target": target}
    return data


def test_temperature_threshold_rule(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"temperatureThreshold": 1.0}
    )
    topic = f"{base}temperature/tool0"
    steps = [
        (20.0, 0.0, True),  # new heater
        (20.5, 0.0, False),  # below the threshold
        (20.99, 0.0, False),  # still below, measured from the last published 20.0
        (21.0, 0.0, True),  # exactly the threshold
        (20.0, 0.0, True),  # downwards
        (20.0, 0.05, False),  # target noise
        (20.0, 200.0, True),  # new target
    ]
    for i, (actual, target, _) in enumerate(steps):
        published = core.publish_temperatures(sample(1000 + i, tool0=(actual, target)))
        assert published == (1 if steps[i][2] else 0), steps[i]
    expected = [(a, t, 1000 + i) for i, (a, t, p) in enumerate(steps) if p]
    msgs = sub.wait_count(topic, len(expected))
    got = [(b["actual"], b["target"], b["_timestamp"]) for b in map(event_json, msgs)]
    assert got == expected
    assert list(event_json(msgs[0])) == ["actual", "target", "_timestamp"]


def test_every_heater_and_empty_heaters_skipped(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    data = sample(
        1795588489,
        bed=(None, 50.0),
        tool0=(38.21, 200.0),
        tool1=(25.0, None),
        chamber=(None, None),
        tool2=(0.0, 0.0),
    )
    data["plugin_extra"] = "not a heater"
    assert core.publish_temperatures(data) == 3
    bed = event_json(sub.wait_for(f"{base}temperature/bed"))
    assert bed == {"actual": None, "target": 50.0, "_timestamp": 1795588489}
    assert event_json(sub.wait_for(f"{base}temperature/tool0"))["actual"] == 38.21
    assert event_json(sub.wait_for(f"{base}temperature/tool1"))["target"] is None
    time.sleep(0.2)
    assert not sub.messages(f"{base}temperature/chamber")
    assert not sub.messages(f"{base}temperature/tool2")


def test_temperature_retain_follows_broker_retain_and_switch(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    core.publish_temperatures(sample(1, bed=(60.0, 60.0)))
    sub.wait_for(f"{base}temperature/bed")
    retained = read_retained(session_broker.host, session_broker.port, f"{base}temperature/#")
    assert event_json(retained[f"{base}temperature/bed"])["actual"] == 60.0

    settings = settings_for(session_broker, base, broker={"retain": False})
    core.configure(settings)
    core.publish_temperatures(sample(2, tool0=(30.0, 0.0)))
    sub.wait_for(f"{base}temperature/tool0")
    retained = read_retained(session_broker.host, session_broker.port, f"{base}temperature/#")
    assert f"{base}temperature/tool0" not in retained

    core.configure(merge_publish(settings, temperatureActive=False))
    assert core.publish_temperatures(sample(3, tool1=(30.0, 0.0))) == 0


def merge_publish(settings, **publish):
    out = json.loads(json.dumps(settings))
    out.setdefault("publish", {}).update(publish)
    return out


def test_temperatures_are_queued_while_offline(core_factory, broker, subscriber_factory):
    base = unique_base()
    broker.stop()
    core = core_factory(settings_for(broker, base))
    wait_state(core, "backing_off")
    for i in range(3):
        core.publish_temperatures(sample(100 + i, bed=(20.0 + 5 * i, 60.0)))
    time.sleep(1.3)  # see test_core_lifecycle.FIRST_RETRY_GAP
    broker.start()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    msgs = sub.wait_count(f"{base}temperature/bed", 3, timeout=15)
    assert [event_json(m)["_timestamp"] for m in msgs] == [100, 101, 102]
