"""Events through the core to a real broker: topics, JSON shape, class toggles, retain rule."""

from __future__ import annotations

import datetime
import decimal
import json
from collections import OrderedDict

import pytest
from corekit import (
    connected_core,
    decimal_digits,
    event_json,
    log_lines,
    settings_for,
    unique_base,
    wait_state,
)
from mqtt_env import read_retained

from octoprint_mqtt._core import encode_event


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


def test_large_payload_is_not_refused(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    blob = bytes(range(256)) * 4096  # 1 MiB: far beyond rumqttc's 10 KiB default limit
    assert core.publish(f"{base}blob", blob, False, 0, False, True)
    assert sub.wait_for(f"{base}blob").payload == blob


def test_mqtt5_and_legacy_protocol_setting(
    core_factory, session_broker, subscriber_factory, caplog
):
    for protocol in ("MQTTv5", "MQTTv31"):
        base = unique_base()
        sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
        core = core_factory(settings_for(session_broker, base, broker={"protocol": protocol}))
        wait_state(core, "connected")
        assert sub.wait_for(f"{base}mqtt").payload == b"connected"
        core.publish_event("Home", {"p": protocol})
        assert event_json(sub.wait_for(f"{base}event/Home"))["p"] == protocol
    notes = [r.getMessage() for r in caplog.records if "MQTTv31" in r.getMessage()]
    assert len(notes) == 1 and "3.1.1" in notes[0]


@pytest.mark.parametrize("keepalive", [0, 2])
def test_mqtt5_with_a_keepalive_under_five_seconds(
    core_factory, session_broker, subscriber_factory, caplog, keepalive
):
    # MQTT 5 in the client library takes no keepalive under 5 s; the plugin must not die.
    core, sub, base = connected_core(
        core_factory,
        session_broker,
        subscriber_factory,
        broker={"protocol": "MQTTv5", "keepalive": keepalive},
    )
    core.publish_event("Home", {"k": keepalive})
    assert event_json(sub.wait_for(f"{base}event/Home"))["k"] == keepalive
    assert log_lines(caplog, f"broker.keepalive {keepalive} s is not possible with MQTT 5")


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


def test_an_unusable_setting_falls_back_alone(
    core_factory, session_broker, subscriber_factory, caplog
):
    # A cleared number field saves "" or None: that key gets its default, with a warning,
    # and every other setting (here the broker's port as text, the base topic) still applies.
    core, sub, base = connected_core(
        core_factory,
        session_broker,
        subscriber_factory,
        broker={"port": str(session_broker.port), "keepalive": None, "lwRetain": "sometimes"},
    )
    core.publish_event("Home", {})
    sub.wait_for(f"{base}event/Home")
    assert log_lines(caplog, "plugins.mqtt.broker.keepalive: ")
    assert log_lines(caplog, "plugins.mqtt.broker.lwRetain: ")
    assert len(log_lines(caplog, "using its default")) == 2
