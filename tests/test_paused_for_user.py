"""PausedForUser: the G-code line check, and end to end the event a real OctoPrint publishes when
the virtual printer waits for the user.
"""

from __future__ import annotations

import re
import time

import pytest
from support.e2ekit import (
    BASE,
    STATUS_TOPIC,
    assert_no_traceback,
    broker_settings,
    decode,
    event_topic,
    payload_is,
    wait_until,
)
from support.mqtt_env import read_retained

from octoprint_mqtt.plugin import is_paused_for_user


def test_paused_for_user_line_check():
    assert is_paused_for_user("echo:busy: paused for user")
    assert is_paused_for_user("echo:busy paused for user")  # OctoPrint's virtual printer
    assert not is_paused_for_user("echo:busy: processing")
    assert not is_paused_for_user("ok T:20.0 /0.0")


def paused_lines(octoprint) -> int:
    """How many "paused for user" lines OctoPrint received (serial.log)."""
    return len(re.findall(r"Recv: echo:busy:? paused for user", octoprint.serial_log_text()))


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_paused_for_user(broker, subscriber_factory, octoprint_factory):
    topic = event_topic("PausedForUser")
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        broker_settings(broker),
        extra_config={
            # serial.log shows which lines the printer sent.
            "serial": {"log": True},
            # With sendBusy, M600 makes the virtual printer send "echo:busy paused for user"
            # every busyInterval seconds (and no "ok") until M876.
            "plugins": {"virtual_printer": {"sendBusy": True, "busyInterval": 0.5}},
        },
    )
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    octoprint.connect_printer()
    octoprint.send_gcode("M600")

    message = sub.wait_for(topic, timeout=15)
    data = decode(message)
    assert list(data) == ["_event", "_timestamp"], data
    assert data["_event"] == "PausedForUser" and isinstance(data["_timestamp"], int), data
    sub.wait_count(topic, 2, timeout=10)  # one per busy line
    assert topic not in read_retained(broker.host, broker.port), "PausedForUser is retained"

    # The gcode event class off: the hook keeps running on every busy line, quietly.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"events": {"gcode": False}}}}})
    # SettingsUpdated is published after the change applied; QoS 0 from one client arrives in
    # order, so whatever comes after it was published with gcode events off.
    marker = sub.wait_for(event_topic("SettingsUpdated"), timeout=10)
    lines_before = paused_lines(octoprint)
    wait_until(
        lambda: paused_lines(octoprint) >= lines_before + 4,
        15,
        lambda: f"the printer stopped sending busy lines ({paused_lines(octoprint)})",
    )
    time.sleep(0.5)
    received = sub.messages()
    after = received[received.index(marker) + 1 :]
    assert not [m for m in after if m.topic == topic], after

    # Event publishing off altogether (the classic plugin's hook crashed then). No marker
    # event can come now: let anything in flight arrive before looking.
    octoprint.save_settings(
        {"plugins": {"mqtt": {"publish": {"eventActive": False, "events": {"gcode": True}}}}}
    )
    time.sleep(1.0)
    sub.clear()
    lines_before = paused_lines(octoprint)
    wait_until(
        lambda: paused_lines(octoprint) >= lines_before + 4,
        15,
        lambda: f"the printer stopped sending busy lines ({paused_lines(octoprint)})",
    )
    time.sleep(0.5)
    assert not sub.messages(f"{BASE}event/#"), sub.messages(f"{BASE}event/#")
    assert_no_traceback(octoprint.log_text())
