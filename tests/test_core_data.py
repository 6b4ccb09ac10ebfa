"""Temperatures, progress and file metadata through the core to a real broker."""

from __future__ import annotations

import json
import time

from corekit import (
    connected_core,
    decimal_digits,
    event_json,
    settings_for,
    unique_base,
    wait_state,
    wait_until,
)
from mqtt_env import read_retained

from octoprint_mqtt.plugin import is_paused_for_user, progress_percent


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


def test_progress_topics_and_retain(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, broker={"retain": False}
    )
    assert core.publish_progress(
        "printing", {"location": "local", "path": "a.gcode", "progress": 42}
    )
    slicing = {
        "slicer": "cura",
        "source_location": "local",
        "source_path": "a.stl",
        "destination_location": "local",
        "destination_path": "a.gcode",
        "progress": 7,
    }
    assert core.publish_progress("slicing", slicing)
    printing = sub.wait_for(f"{base}progress/printing")
    body = event_json(printing)
    assert list(body) == ["location", "path", "progress", "_timestamp"]
    assert body["progress"] == 42
    assert list(event_json(sub.wait_for(f"{base}progress/slicing"))) == [*slicing, "_timestamp"]
    retained = read_retained(session_broker.host, session_broker.port, f"{base}progress/#")
    # Printing progress is always retained; slicing follows broker.retain (false here).
    assert set(retained) == {f"{base}progress/printing"}


def test_progress_switch_and_bad_kind(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"progressActive": False}
    )
    assert core.publish_progress("printing", {"progress": 1}) is False
    try:
        core.publish_progress("cooking", {})
    except ValueError as exc:
        assert "printing" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_progress_percent_rules():
    assert progress_percent({"completion": 41.6}) == 42
    assert progress_percent({"completion": None}) == 0
    assert progress_percent({"completion": 100.4}) == 100
    genius = {"completion": 10.0, "printTime": 300, "printTimeLeft": 100}
    assert progress_percent(dict(genius, printTimeLeftOrigin="genius")) == 75
    assert progress_percent(dict(genius, printTimeLeftOrigin="estimate")) == 10
    assert progress_percent({"printTimeLeftOrigin": "genius", "completion": 3}) == 3


def test_paused_for_user_line_check():
    assert is_paused_for_user("echo:busy: paused for user")
    assert is_paused_for_user("echo:busy paused for user")  # OctoPrint's virtual printer
    assert not is_paused_for_user("echo:busy: processing")
    assert not is_paused_for_user("ok T:20.0 /0.0")


METADATA = {
    "analysis": {
        "estimatedPrintTime": 123.5,
        "printingArea": {"maxX": 50.0, "minX": 10.0},
        "filament": {"tool0": {"length": 810.2, "volume": 1.9}},
    },
    "hash": "abc123",
    "layers": [0.3, 0.5],
    "done": True,
    "a.b": "literal dotted key",
}


def test_metadata_values_nesting_and_clearing(core_factory, session_broker, subscriber_factory):
    keys = (
        "analysis.estimatedPrintTime, analysis.printingArea, analysis.filament.tool0.length,"
        " hash, layers, done, a.b, analysis.missing, nothere"
    )
    core, sub, base = connected_core(
        core_factory,
        session_broker,
        subscriber_factory,
        publish={"metadataActive": True, "metadataKeys": keys},
    )
    assert core.publish_metadata(METADATA) == 7
    topic = f"{base}metadata/"
    got = {
        m.topic[len(topic) :]: m.payload
        for m in sub.wait_count(f"{topic}#", 7)
    }  # fmt: skip
    assert got == {
        "analysis.estimatedPrintTime": b"123.5",
        "analysis.printingArea": b'{"maxX":50.0,"minX":10.0}',
        "analysis.filament.tool0.length": b"810.2",
        "hash": b"abc123",
        "layers": b"[0.3,0.5]",
        "done": b"true",
        "a.b": b"literal dotted key",
    }
    retained = read_retained(session_broker.host, session_broker.port, f"{topic}#")
    assert len(retained) == 7

    # At the end of the job: an empty retained payload per key clears them at the broker.
    assert core.publish_metadata(None) == 9
    sub.wait_count(f"{topic}#", 7 + 9)
    assert read_retained(session_broker.host, session_broker.port, f"{topic}#") == {}


def test_metadata_integer_beyond_pythons_digit_limit(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(
        core_factory,
        session_broker,
        subscriber_factory,
        publish={"metadataActive": True, "metadataKeys": "big, small"},
    )
    big = 3**10000  # 4772 digits
    expected = decimal_digits(big)
    assert core.publish_metadata({"big": big, "small": 3**100}) == 2
    assert json.loads(sub.wait_for(f"{base}metadata/big").payload) == expected
    assert json.loads(sub.wait_for(f"{base}metadata/small").payload) == 3**100


def test_metadata_off_by_default(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"metadataKeys": "hash"}
    )
    assert core.publish_metadata(METADATA) == 0
    wait_until(lambda: core.status()["state"] == "connected")
