"""Events: topics, JSON shape, class toggles and the retain rule, through the core to a real
broker, and end to end from a real OctoPrint (virtual printer) with the installed plugin.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
from collections import OrderedDict

import pytest
from support.corekit import (
    connected_core,
    decimal_digits,
    event_json,
    settings_for,
    unique_base,
    wait_state,
)
from support.e2ekit import (
    BASE,
    STATUS_TOPIC,
    assert_no_traceback,
    event_topic,
    layers_gcode,
    payload_is,
)
from support.mqtt_env import Message, read_retained

from octoprint_mqtt_core._core import encode_event


def test_connects_and_publishes_status_and_event(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    status = sub.wait_for(f"{base}mqtt")
    assert status.payload == b"connected"
    assert status.qos == 1 and status.retain is False  # live delivery; retained copy below
    assert (
        read_retained(session_broker.host, session_broker.port, f"{base}mqtt")[
            f"{base}mqtt"
        ].payload
        == b"connected"
    )

    assert core.publish_event("PrintStarted", {"name": "a.gcode", "path": "a.gcode", "size": 12})
    msg = sub.wait_for(f"{base}event/PrintStarted")
    body = event_json(msg)
    assert list(body) == ["name", "path", "size", "_event", "_timestamp"]
    assert body["_event"] == "PrintStarted" and isinstance(body["_timestamp"], int)
    assert msg.qos == 0


def test_event_json_edge_cases(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    payload = OrderedDict(
        [
            ("z", 1),
            ("a", None),
            ("nan", float("nan")),
            ("inf", float("inf")),
            ("big", 2**80 + 1),
            ("neg", -(2**70)),
            (3, "int key"),
            (1.5, "float key"),
            (True, "bool key"),
            (None, "none key"),
            ("when", datetime.datetime(2024, 5, 6, 7, 8, 9)),
            ("set", {1}),
            ("bytes", b"\x00\x01"),
            ("dec", decimal.Decimal("1.10")),
            ("text", "Grüße ✓ \u2028"),
            ("nested", {"list": [1, (2, 3), {"deep": [None]}]}),
            ("obj", object),
        ]
    )
    assert core.publish_event("Custom", payload)
    raw = sub.wait_for(f"{base}event/Custom").payload
    body = json.loads(raw.decode("utf-8"))  # valid UTF-8 and valid JSON (no NaN)
    assert list(body) == [
        "z", "a", "nan", "inf", "big", "neg", "3", "1.5", "true", "null",
        "when", "set", "bytes", "dec", "text", "nested", "obj", "_event", "_timestamp",
    ]  # fmt: skip
    assert body["nan"] is None and body["inf"] is None
    assert body["big"] == 2**80 + 1 and body["neg"] == -(2**70)
    assert body["when"] == "2024-05-06 07:08:09"
    assert body["set"] == "{1}"
    assert body["dec"] == "1.10"
    assert body["text"] == "Grüße ✓ \u2028"
    assert body["nested"] == {"list": [1, [2, 3], {"deep": [None]}]}
    assert body["obj"] == str(object)


def test_integers_beyond_pythons_digit_limit_are_strings_of_their_digits(
    core_factory, session_broker, subscriber_factory
):
    # Python's int-to-str limit (4300 digits by default) makes str() raise, and Python's own
    # json.loads refuses longer numbers: up to 4300 digits a number, beyond that a string.
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    longest = 10**4300 - 1  # 4300 nines
    huge = 7**6000 + 1  # 5071 digits
    negative = -(10**5000) - 12345
    expected = {v: decimal_digits(v) for v in (longest, huge, negative)}
    assert len(expected[huge]) == 5071 and expected[negative].endswith("12345")
    payload = {"longest": longest, "huge": huge, "list": [negative, 1], huge: "huge key"}
    assert core.publish_event("Big", payload)
    body = json.loads(sub.wait_for(f"{base}event/Big").payload)  # valid JSON
    assert body["longest"] == longest
    assert body["huge"] == expected[huge]
    assert body["list"] == [expected[negative], 1]
    assert body[expected[huge]] == "huge key"
    assert list(body) == ["longest", "huge", "list", expected[huge], "_event", "_timestamp"]


def test_event_name_with_a_lone_surrogate_is_a_value_error(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    with pytest.raises(ValueError, match="surrogate") as raised:
        core.publish_event("Bad\ud800", {"a": 1})
    assert raised.type is ValueError
    assert core.publish_event("After", None)
    sub.wait_for(f"{base}event/After")
    assert [m.topic for m in sub.messages(f"{base}event/#")] == [f"{base}event/After"]


def test_none_and_empty_payloads(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    assert core.publish_event("FileDeselected", None)
    assert core.publish_event("Home", {})
    assert core.publish_event("Dwelling")
    for name in ("FileDeselected", "Home", "Dwelling"):
        body = event_json(sub.wait_for(f"{base}event/{name}"))
        assert list(body) == ["_event", "_timestamp"] and body["_event"] == name


def test_encoder_matches_python_json_for_plain_data():
    data = {"s": 'x"\\\n\t', "i": -3, "f": 0.1, "l": [True, False, None], "d": {"k": 1e-7}}
    ours = json.loads(encode_event("E", data, "_ts", 99))
    expected = dict(data, _event="E", _ts=99)
    assert ours == expected
    assert list(ours) == list(expected)


def test_payload_keys_named_like_added_fields_keep_their_place():
    body = json.loads(encode_event("E", {"_timestamp": 1, "a": 2, "_event": "x"}, "_timestamp", 7))
    assert list(body) == ["_timestamp", "a", "_event"]
    assert body == {"_timestamp": 7, "a": 2, "_event": "E"}


def test_custom_timestamp_field_and_base_topic_concatenation(
    core_factory, session_broker, subscriber_factory
):
    prefix = unique_base().rstrip("/")  # no trailing slash: joined as a plain string
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{prefix}/#")
    sub.subscribe(f"{prefix}mqtt")
    settings = settings_for(session_broker, prefix, timestamp_fieldname="ts")
    settings["publish"]["eventTopic"] = "/ev/{event}"
    core = core_factory(settings)
    wait_state(core, "connected")
    core.publish_event("Home", {"x": 1})
    body = event_json(sub.wait_for(f"{prefix}/ev/Home"))
    assert list(body) == ["x", "_event", "ts"]
    sub.wait_for(f"{prefix}mqtt")


def test_event_class_toggles_and_event_active(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"events": {"gcode": False}}
    )
    assert core.publish_event("Dwelling", {}) is False  # gcode class off
    assert core.publish_event("MovieDone", {})  # timelapse, which the classic plugin forgot
    assert core.publish_event("SomePluginEvent", {})  # unclassified
    sub.wait_for(f"{base}event/MovieDone")
    sub.wait_for(f"{base}event/SomePluginEvent")

    settings = settings_for(session_broker, base, publish={"eventActive": False})
    core.configure(settings)
    assert core.publish_event("PrintDone", {}) is False
    core.configure(settings_for(session_broker, base))
    assert core.publish_event("PrintFailed", {})
    sub.wait_for(f"{base}event/PrintFailed")
    assert not sub.messages(f"{base}event/Dwelling")
    assert not sub.messages(f"{base}event/PrintDone")


def test_retain_rule(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    for name in ("ZChange", "FirmwareData", "PrintDone", "PausedForUser"):
        core.publish_event(name, {"n": name})
    sub.wait_for(f"{base}event/PausedForUser")
    retained = read_retained(session_broker.host, session_broker.port, f"{base}event/#")
    assert set(retained) == {f"{base}event/ZChange", f"{base}event/FirmwareData"}

    # broker.retain false: nothing is retained, not even ZChange.
    base2 = unique_base()
    core2 = core_factory(settings_for(session_broker, base2, broker={"retain": False}))
    wait_state(core2, "connected")
    sub2 = subscriber_factory(session_broker.host, session_broker.port, f"{base2}#")
    core2.publish_event("ZChange", {"new": 1})
    sub2.wait_for(f"{base2}event/ZChange")
    assert not read_retained(session_broker.host, session_broker.port, f"{base2}event/#")


def test_containers_that_contain_themselves(core_factory, session_broker, subscriber_factory):
    # Python's json raises on these; the plugin writes the repeated container as its str()
    # (with Python's {...} for the cycle) and publishes the rest, at once.
    d = {"name": "x"}
    d["self"] = d
    d["again"] = d  # twice: without cycle detection, 2^100 walks before the depth limit
    loop = [1]
    loop.append(loop)
    payload = {"d": d, "l": loop}
    payload["root"] = payload
    data = json.loads(encode_event("Cyclic", payload, "_timestamp", 7))
    assert data["d"]["name"] == "x"
    assert data["d"]["self"] == data["d"]["again"] == str(d)
    assert data["l"] == [1, str(loop)]
    assert data["root"] == str(payload)
    assert list(data)[-2:] == ["_event", "_timestamp"]

    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    assert core.publish_event("Cyclic", payload) is True
    assert event_json(sub.wait_for(f"{base}event/Cyclic"))["d"]["self"] == str(d)
    assert core.publish(f"{base}helper", d) is True
    assert json.loads(sub.wait_for(f"{base}helper").payload)["again"] == str(d)


# The only events published with retain (when broker.retain is on).
RETAINED_EVENTS = {"ZChange", "FirmwareData"}


GCODE = layers_gcode(8)


def assert_event(
    message: Message, name: str, keys: frozenset[str] | set[str] = frozenset()
) -> dict:
    """Check the plugin's event JSON shape and return the decoded payload."""
    data = json.loads(message.payload)
    assert data["_event"] == name, data
    assert isinstance(data["_timestamp"], int), data
    # The plugin appends its own keys after OctoPrint's payload.
    assert list(data)[-2:] == ["_event", "_timestamp"], data
    missing = keys - data.keys()
    assert not missing, f"{name} payload lacks {missing}: {data}"
    return data


def plugin_published_status(broker_log: str, payload: bytes) -> bool:
    """True if a client itself PUBLISHed `payload` on the status topic.

    Mosquitto logs "Received PUBLISH from <client> (d0, q1, r1, m2,
    'octoprint/mqtt', ... (12 bytes))". A last will is not logged this way, so
    this tells an orderly publish apart from the broker sending the will.
    """
    pattern = re.compile(
        rf"Received PUBLISH from \S+ \(d\d, q\d, r\d, m\d+, '{re.escape(STATUS_TOPIC)}',"
        rf".*\({len(payload)} bytes\)\)"
    )
    return bool(pattern.search(broker_log))


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", ["MQTTv311", "MQTTv5"])
def test_events_reach_the_broker(broker, subscriber_factory, octoprint_factory, protocol):
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        {"broker": {"url": broker.host, "port": broker.port, "protocol": protocol}}
    )

    # Startup fires before the MQTT connection is up: the plugin must queue it.
    assert_event(sub.wait_for(event_topic("Startup"), timeout=30), "Startup")
    status = sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    assert status.qos == 1

    octoprint.connect_printer()
    assert_event(
        sub.wait_for(event_topic("Connected"), timeout=30),
        "Connected",
        {"port", "baudrate"},
    )

    octoprint.upload("e2e.gcode", GCODE, select=True, print_=True)
    assert_event(
        sub.wait_for(event_topic("FileAdded"), timeout=30),
        "FileAdded",
        {"storage", "path", "name", "type"},
    )
    assert_event(
        sub.wait_for(event_topic("PrintStarted"), timeout=30),
        "PrintStarted",
        {"name", "path", "origin", "size"},
    )
    octoprint.wait_job_done(timeout=60, name="e2e.gcode")
    done = assert_event(
        sub.wait_for(event_topic("PrintDone"), timeout=30),
        "PrintDone",
        {"name", "path", "origin", "size", "time"},
    )
    assert done["name"] == "e2e.gcode"
    z_changes = sub.messages(event_topic("ZChange"))
    assert len(z_changes) >= 3, z_changes
    for message in z_changes:
        assert_event(message, "ZChange", {"new", "old"})

    # Events are not retained, except the "current state" ones whose retain
    # flag follows broker.retain (true by default).
    retained = read_retained(broker.host, broker.port)
    retained_events = {t for t in retained if t.startswith(f"{BASE}event/")}
    assert event_topic("ZChange") in retained_events, retained_events
    assert retained_events <= {event_topic(name) for name in RETAINED_EVENTS}, retained_events
    assert retained[event_topic("ZChange")].payload == z_changes[-1].payload
    assert retained[STATUS_TOPIC].payload == b"connected"

    # Graceful shutdown: on_shutdown publishes "disconnected" itself, quickly.
    shutdown_seconds = octoprint.stop()
    assert octoprint.proc.returncode == 0, octoprint.serve_log_text()[-3000:]
    assert shutdown_seconds < 10, f"shutdown took {shutdown_seconds:.1f}s"
    sub.wait_for(STATUS_TOPIC, timeout=10, predicate=payload_is(b"disconnected"))
    assert read_retained(broker.host, broker.port)[STATUS_TOPIC].payload == b"disconnected"
    assert plugin_published_status(broker.log_text(), b"disconnected"), (
        "the plugin did not publish 'disconnected' itself (only the will?):\n"
        + broker.log_text()[-3000:]
    )

    log = octoprint.log_text()
    assert " - octoprint.plugins.mqtt - " in log, "no plugin log lines in octoprint.log"
    assert_no_traceback(log)
