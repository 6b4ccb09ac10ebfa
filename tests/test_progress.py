"""Progress: topics, retain and the percent rules through the core to a real broker; end to end,
a real print in OctoPrint's virtual printer publishing progress, temperatures and the file's
metadata, and progress carrying the printer's data.
"""

from __future__ import annotations

import json

import pytest
from support.corekit import (
    connected_core,
    event_json,
)
from support.e2ekit import (
    BASE,
    BED_TARGET,
    QUICK_GCODE,
    STATE_TOPIC,
    STATUS_TOPIC,
    TOOL_TARGET,
    assert_no_traceback,
    broker_settings,
    decode,
    event_topic,
    heating_print_gcode,
    json_field_is,
    payload_is,
    sub_topics,
    upload_analysed,
)
from support.mqtt_env import read_retained

from octoprint_mqtt.plugin import progress_percent


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


PRINTING_TOPIC = f"{BASE}progress/printing"
SLICING_TOPIC = f"{BASE}progress/slicing"
INSTANCE_TOPIC = f"{BASE}mqtt/instance"
PROGRESS_KEYS = ["location", "path", "progress", "_timestamp"]
SLICING_KEYS = [
    "slicer",
    "source_location",
    "source_path",
    "destination_location",
    "destination_path",
    "progress",
    "_timestamp",
]


TEMPERATURE_KEYS = ["actual", "target", "_timestamp"]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_print_progress_temperatures_and_metadata(broker, subscriber_factory, octoprint_factory):
    name = "heated.gcode"
    keys = {
        "hash": f"{BASE}metadata/hash",
        "analysis.estimatedPrintTime": f"{BASE}metadata/analysis.estimatedPrintTime",
        "analysis.printingArea": f"{BASE}metadata/analysis.printingArea",
        "analysis.noSuchKey": f"{BASE}metadata/analysis.noSuchKey",
    }
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        broker_settings(
            broker,
            publish={"metadataActive": True, "metadataKeys": ",".join(keys)},
        )
    )

    # Startup: `connected`, then (only events in between) the reset of both progress topics.
    sub.wait_for(SLICING_TOPIC, timeout=30)
    startup = sub.messages()
    assert startup[0].topic == STATUS_TOPIC and startup[0].payload == b"connected", startup[:3]
    not_events = [
        m
        for m in startup[1:]
        if not m.topic.startswith(f"{BASE}event/") and m.topic not in (STATE_TOPIC, INSTANCE_TOPIC)
    ]
    assert [m.topic for m in not_events[:2]] == [PRINTING_TOPIC, SLICING_TOPIC], not_events
    reset = decode(not_events[0])
    assert list(reset) == PROGRESS_KEYS, reset
    assert (reset["location"], reset["path"], reset["progress"]) == ("", "", 0), reset
    slicing_reset = decode(not_events[1])
    assert list(slicing_reset) == SLICING_KEYS, slicing_reset
    assert [slicing_reset[k] for k in SLICING_KEYS[:-1]] == ["", "", "", "", "", 0]
    assert isinstance(slicing_reset["_timestamp"], int), slicing_reset

    octoprint.connect_printer()
    info = upload_analysed(octoprint, sub, name, heating_print_gcode(moves=60, dwell_ms=250))
    analysis = info["gcodeAnalysis"]
    assert isinstance(analysis.get("estimatedPrintTime"), (int, float)), analysis
    assert analysis["printingArea"]["maxX"] > 0, analysis

    octoprint.print_file(name)
    sub.wait_for(event_topic("PrintStarted"), timeout=15)

    # Metadata at PrintStarted: scalars as plain text, dicts as JSON text, retained.
    has_payload = lambda m: m.payload != b""  # noqa: E731
    hash_msg = sub.wait_for(keys["hash"], timeout=10, predicate=has_payload)
    assert hash_msg.payload == info["hash"].encode(), hash_msg
    time_msg = sub.wait_for(keys["analysis.estimatedPrintTime"], timeout=10, predicate=has_payload)
    assert json.loads(time_msg.payload) == pytest.approx(analysis["estimatedPrintTime"])
    area_msg = sub.wait_for(keys["analysis.printingArea"], timeout=10, predicate=has_payload)
    assert json.loads(area_msg.payload) == analysis["printingArea"], area_msg
    retained = read_retained(broker.host, broker.port, f"{BASE}metadata/#")
    assert set(retained) == {
        keys["hash"],
        keys["analysis.estimatedPrintTime"],
        keys["analysis.printingArea"],
    }, retained
    for topic, message in retained.items():
        assert message.payload == sub.messages(topic)[0].payload, (topic, message)

    # The print runs ~20 s; the progress check runs every 5 s.
    octoprint.wait_job_done(timeout=90, name=name)
    sub.wait_for(event_topic("PrintDone"), timeout=10)
    sub.wait_for(PRINTING_TOPIC, timeout=15, predicate=json_field_is("progress", 100))

    # Progress: 0 .. 100, non-decreasing, several steps, exact key order.
    progress = [decode(m) for m in sub.messages(PRINTING_TOPIC)]
    progress = [p for p in progress if p["path"] == name]
    for p in progress:
        assert list(p) == PROGRESS_KEYS, p
        assert p["location"] == "local", p
        assert type(p["progress"]) is int and type(p["_timestamp"]) is int, p
    values = [p["progress"] for p in progress]
    assert values == sorted(values), values
    # The first check runs when OctoPrint announces FileSelected, which it does while the
    # print is already starting: OctoPrint's completion (file position) may be 1-2 % by then.
    assert values[0] <= 5 and values[-1] == 100, values
    assert len(set(values)) >= 4, f"too few progress steps: {values}"

    # Metadata cleared at PrintDone: an empty (retained-clearing) payload per key, and the
    # missing key was never published with a value.
    for key in list(keys)[:3]:
        sub.wait_for(keys[key], timeout=10, predicate=payload_is(b""))
    assert not [m for m in sub.messages(keys["analysis.noSuchKey"]) if m.payload], sub.messages(
        keys["analysis.noSuchKey"]
    )

    # Temperatures keep coming while the printer cools down: note how many had arrived.
    temperature_counts = {t: len(sub.messages(t)) for t in sub_topics(sub, "temperature/#")}
    retained = read_retained(broker.host, broker.port)
    assert not [t for t in retained if t.startswith(f"{BASE}metadata/")], retained
    assert decode(retained[PRINTING_TOPIC]) == progress[-1], retained[PRINTING_TOPIC]

    # Temperatures: per heater, exact keys, rising while heating, retained. The virtual
    # printer has no chamber, and heaters without readings are not published.
    heaters = set(temperature_counts)
    assert heaters == {f"{BASE}temperature/bed", f"{BASE}temperature/tool0"}, heaters
    for heater, target in (("bed", BED_TARGET), ("tool0", TOOL_TARGET)):
        topic = f"{BASE}temperature/{heater}"
        samples = [decode(m) for m in sub.messages(topic)]
        for sample in samples:
            assert list(sample) == TEMPERATURE_KEYS, sample
            assert isinstance(sample["_timestamp"], int), sample
        assert any(s["target"] == target for s in samples), samples
        heating = [s["actual"] for s in samples if s["target"] == target and s["actual"]]
        reached = next((i for i, a in enumerate(heating) if a >= target - 1), None)
        assert reached is not None, f"{heater} never reached {target}: {heating}"
        rising = heating[: reached + 1]
        assert rising == sorted(rising) and len(set(rising)) >= 2, (heater, heating)
        assert rising[0] < target - 5, (heater, heating)
        assert topic in retained, f"{topic} not retained: {sorted(retained)}"
        assert list(decode(retained[topic])) == TEMPERATURE_KEYS, retained[topic]
        # The broker keeps the last sample published before the read.
        recent = [m.payload for m in sub.messages(topic)][temperature_counts[topic] - 1 :]
        assert retained[topic].payload in recent, (retained[topic], recent)

    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_progress_carries_printer_data(broker, subscriber_factory, octoprint_factory):
    name = "printer-data.gcode"
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(broker_settings(broker, publish={"printerData": True}))
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    octoprint.connect_printer()
    octoprint.upload(name, QUICK_GCODE, select=True, print_=True)
    message = sub.wait_for(PRINTING_TOPIC, timeout=20, predicate=json_field_is("path", name))

    data = decode(message)
    assert list(data) == ["location", "path", "progress", "printer_data", "_timestamp"], data
    printer_data = data["printer_data"]
    assert isinstance(printer_data, dict), printer_data
    assert {"state", "job", "progress"} <= printer_data.keys(), printer_data
    assert isinstance(printer_data["state"]["text"], str), printer_data["state"]
    assert printer_data["job"]["file"]["name"] == name, printer_data["job"]
    assert "completion" in printer_data["progress"], printer_data["progress"]
    octoprint.wait_job_done(timeout=60, name=name)
    assert_no_traceback(octoprint.log_text())
