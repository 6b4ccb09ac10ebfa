"""MQTT 3.1.1 and MQTT 5: the protocol setting, its legacy values, and MQTT 5 with a short
keepalive, through the core to a real broker.
"""

from __future__ import annotations

import pytest
from support.corekit import (
    connected_core,
    event_json,
    log_lines,
    settings_for,
    unique_base,
    wait_state,
)


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
