"""File metadata: values, nesting, clearing, huge integers and the switch (off by default),
through the core to a real broker.
"""

from __future__ import annotations

import json

from support.corekit import (
    connected_core,
    decimal_digits,
    wait_until,
)
from support.mqtt_env import read_retained

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
