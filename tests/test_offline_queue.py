"""The offline queue: switched off, bounded in messages and in bytes (dropping the oldest and
saying so), and a burst while connected not cut to its bound.
"""

from __future__ import annotations

import time

from support.corekit import (
    FIRST_RETRY_GAP,
    log_lines,
    seqs,
    settings_for,
    unique_base,
    wait_state,
    wait_until,
)


def test_queue_while_offline_can_be_switched_off(core_factory, broker, subscriber_factory):
    base = unique_base()
    broker.stop()
    core = core_factory(settings_for(broker, base, publish={"queueWhileOffline": False}))
    wait_state(core, "backing_off")
    assert core.publish_event("Dwelling", {"seq": 0}) is False
    time.sleep(FIRST_RETRY_GAP)
    broker.start()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    wait_state(core, "connected", timeout=15)
    assert core.publish_event("Dwelling", {"seq": 1}) is True
    sub.wait_for(f"{base}event/Dwelling")
    assert seqs(sub, f"{base}event/Dwelling") == [1]
    assert core.status()["refused"] == 1


def test_offline_queue_is_bounded_drops_oldest_and_says_so(
    core_factory, broker, subscriber_factory, caplog
):
    base = unique_base()
    broker.stop()
    core = core_factory(settings_for(broker, base, publish={"offlineQueueSize": 5}))
    wait_state(core, "backing_off")
    for i in range(20):
        core.publish_event("Dwelling", {"seq": i})
    wait_until(lambda: core.status()["dropped"] == 15, what="15 drops")
    time.sleep(FIRST_RETRY_GAP)
    broker.start()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    sub.wait_count(f"{base}event/Dwelling", 5, timeout=15)
    time.sleep(0.3)
    assert seqs(sub, f"{base}event/Dwelling") == list(range(15, 20))
    assert len(log_lines(caplog, "offline queue is full")) == 1
    assert log_lines(caplog, "15 messages were dropped")


def test_offline_queue_is_bounded_in_bytes_too(core_factory, broker, subscriber_factory, caplog):
    # 100 camera snapshots of 1 MiB while the broker is down: the newest 64 MiB are kept.
    base = unique_base()
    broker.stop()
    core = core_factory(settings_for(broker, base))
    wait_state(core, "backing_off")
    topic = f"{base}snap"
    for i in range(100):
        # Each costs a little less than 1 MiB with its topic (the bound counts topics too), so
        # that 64 and the status message sent at connect fit, and 65 do not.
        blob = i.to_bytes(4, "big") + bytes(1024 * 1024 - 64 - 4 - len(topic))
        assert core.publish(topic, blob, False, 1, True, True) is True
    wait_until(lambda: core.status()["dropped"] == 36, what="36 drops")
    time.sleep(FIRST_RETRY_GAP)
    broker.start()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    got = sub.wait_count(f"{base}snap", 64, timeout=30)
    assert [int.from_bytes(m.payload[:4], "big") for m in got] == list(range(36, 100))
    assert log_lines(
        caplog, "offline queue is full (10000 messages or 64 MiB of topics and payloads)"
    )


def test_a_burst_while_connected_is_not_cut_to_the_offline_bound(
    core_factory, session_broker, subscriber_factory
):
    from support.corekit import connected_core

    core, _, _ = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"offlineQueueSize": 10}
    )
    for i in range(20_000):
        assert core.publish_event("Dwelling", {"seq": i})
    # +1: the `connected` status message.
    wait_until(lambda: core.status()["published"] == 20_001, timeout=30, what="all written")
    assert core.status()["dropped"] == 0
