"""`broker.failover` with plain Mosquitto brokers (no cluster): the core stays on the node it
has, goes to the next one at once when that connection fails or is refused (wrapping around,
the backoff only after a whole round failed), says which node it uses, and re-sends to the next
node what the dead one had not acknowledged. The clustered broker: tests/test_nats_failover.py.
"""

from __future__ import annotations

import time

import pytest
from support.corekit import settings_for, unique_base, wait_state, wait_until
from support.mqtt_env import free_port


@pytest.mark.timeout(60)
def test_a_dead_node_hands_over_to_the_next_and_nothing_unacknowledged_is_lost(
    core_factory, broker_factory, subscriber_factory, caplog
):
    a, b = broker_factory(), broker_factory()
    base = unique_base()
    settings = settings_for(a, base)
    settings["broker"]["failover"] = [f"{b.host}:{b.port}"]
    core = core_factory(settings)
    status = wait_state(core, "connected")
    assert status["broker"] == f"{a.host}:{a.port}"
    sub_b = subscriber_factory(b.host, b.port, f"{base}#")

    # A freezes: what is published now stays unacknowledged there; then it dies.
    a.pause()
    for i in range(50):
        assert core.publish(f"{base}seq", str(i), qos=1, allow_queueing=True)
    time.sleep(0.5)
    a.kill()
    died = time.monotonic()
    # Until the core notices, it still reports the dead node.
    wait_until(
        lambda: (
            (s := core.status())["state"] == "connected" and s["broker"] == f"{b.host}:{b.port}"
        ),
        10,
        "connected to the next node",
    )
    sub_b.wait_for(f"{base}mqtt", timeout=10)
    took = time.monotonic() - died
    assert took < 5, f"{took:.1f} s to the next node"
    wanted = set(map(str, range(50)))
    got = wait_until(
        lambda: (
            {m.payload.decode() for m in sub_b.messages(f"{base}seq")} >= wanted
            and sub_b.messages(f"{base}seq")
        ),
        10,
        "every unacknowledged message on the next node",
    )
    assert len(got) >= 50
    assert f"trying {b.host}:{b.port} now" in caplog.text


@pytest.mark.timeout(60)
def test_a_refused_first_node_is_passed_over_at_once_and_a_dead_round_backs_off(
    core_factory, broker_factory, caplog
):
    b = broker_factory()
    dead = free_port()
    settings = settings_for(b, unique_base())
    settings["broker"]["port"] = dead
    settings["broker"]["failover"] = f"{b.host}:{b.port}"
    started = time.monotonic()
    core = core_factory(settings)
    status = wait_state(core, "connected", timeout=10)
    assert time.monotonic() - started < 2, "the second node was not tried at once"
    assert status["broker"] == f"{b.host}:{b.port}"
    assert f"Connecting to the MQTT broker at 127.0.0.1:{dead} (then {b.host}:{b.port})" in (
        caplog.text
    )

    # Both down: after a round the backoff applies (no busy loop), and it comes back.
    b.stop()
    wait_until(lambda: core.status()["state"] != "connected", 10, "the loss")
    before = len(caplog.records)
    time.sleep(3)
    attempts = [r for r in caplog.records[before:] if "onnect to" in r.getMessage()]
    assert len(attempts) < 10, [r.getMessage() for r in attempts]
    b.start()
    status = wait_state(core, "connected", timeout=15)
    assert status["broker"] == f"{b.host}:{b.port}"
