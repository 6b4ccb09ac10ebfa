"""Messages a broker refuses, and the bounds on what waits for it, against real Mosquitto
brokers: one bad message never stops the others, and the counters say what happened.
"""

from __future__ import annotations

import logging
import time

import pytest
from support.corekit import (
    connected_core,
    log_lines,
    settings_for,
    unique_base,
    wait_state,
    wait_until,
)
from support.mqtt_env import Broker, free_port, read_retained

# AWS IoT's limit, and a camera snapshot well over it.
BROKER_LIMIT = 128 * 1024
SNAPSHOT = b"\xff\xd8" + b"\0" * (512 * 1024 - 2)


# MQTT header bytes besides topic and payload that the documented limit leaves room for.
MESSAGE_MAX = 64 * 1024 * 1024 - 10
LONG_TOPIC = 60_000


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def warnings(caplog, contains: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and contains in r.getMessage()
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["MQTTv311", "MQTTv5"])
def test_a_snapshot_over_the_brokers_limit_never_stops_the_messages_after_it(
    plugin_factory, broker_factory, subscriber_factory, caplog, protocol
):
    b = broker_factory(f"max_packet_size {BROKER_LIMIT}\n")
    base = unique_base()
    sub = subscriber_factory(b.host, b.port, f"{base}#")
    plugin = plugin_factory(settings_for(b, base, broker={"protocol": protocol}))
    wait_state(plugin._core, "connected")
    sub.wait_for(f"{base}mqtt")

    accepted = plugin.mqtt_publish(
        f"{base}cam", SNAPSHOT, qos=1, allow_queueing=True, raw_data=True
    )
    # MQTT 5: the broker announced its limit, so the helper refuses at once. 3.1.1 cannot know
    # it before the broker drops the connection once.
    assert accepted is (protocol == "MQTTv311")
    for i in range(1000):
        assert plugin.mqtt_publish(f"{base}n", str(i), qos=1, allow_queueing=True)

    received = sub.wait_count(f"{base}n", 1000, timeout=30)
    assert [int(m.payload) for m in received] == list(range(1000))
    told = [m for m in log_lines(caplog, f"{base}cam") if "bytes" in m]
    assert len(told) == 1, told
    assert "524" in told[0]  # its size
    assert "broker" in told[0]

    # Later snapshots are refused at once: no new disconnect, no new log line.
    assert plugin.mqtt_publish(f"{base}cam", SNAPSHOT, qos=1, raw_data=True) is False
    # And a message within the limit still goes out.
    assert plugin.mqtt_publish(f"{base}small", b"x" * 1000, qos=1, raw_data=True)
    sub.wait_for(f"{base}small")
    time.sleep(1)
    statuses = [m.payload for m in sub.messages(f"{base}mqtt")]
    # MQTT 5: not one bounce. 3.1.1: the broker's two drops (a first one may be a broker
    # restarting, so the message goes once more), then never again.
    assert statuses.count(b"disconnected") == (2 if protocol == "MQTTv311" else 0), statuses
    assert not sub.messages(f"{base}cam")
    status = plugin._core.status()
    assert status["rejected"] == 2, status
    assert status["state"] == "connected" and status["queue_depth"] == 0, status
    assert len([m for m in log_lines(caplog, f"{base}cam") if "bytes" in m]) == 1
    assert not log_lines(caplog, "same client id")


@pytest.mark.timeout(60)
def test_mqtt5_publish_refused_with_a_reason_is_dropped_and_counted(
    core_factory, broker_factory, subscriber_factory, caplog
):
    # Mosquitto answers a message over message_size_limit with "packet too large" in its
    # PUBACK (MQTT 5), which rumqttc cannot read and ends the connection on: sending the message
    # again would get the same answer.
    b = broker_factory("message_size_limit 100000\n")
    base = unique_base()
    sub = subscriber_factory(b.host, b.port, f"{base}#")
    core = core_factory(settings_for(b, base, broker={"protocol": "MQTTv5"}))
    wait_state(core, "connected")
    sub.wait_for(f"{base}mqtt")
    assert core.publish(f"{base}big", b"\0" * 200_000, False, 1, True, True)
    for i in range(100):
        assert core.publish(f"{base}n", str(i), False, 1, True)

    # Counting messages is not enough: the re-sent ones arrive twice, so 100 may be counted
    # while the last ones are still on their way.
    def first_seen() -> list[int]:
        return list(dict.fromkeys(int(m.payload) for m in sub.messages(f"{base}n")))

    wait_until(lambda: len(first_seen()) == 100, what="all 100 distinct")
    wait_until(lambda: core.status()["queue_depth"] == 0, what="all sent")
    # At least once, in order: the ones unacknowledged when the connection ended come again.
    assert first_seen() == list(range(100)), first_seen()
    status = wait_until(lambda: (s := core.status())["rejected"] == 1 and s, what="rejected")
    assert status["reconnects"] <= 1 and status["queue_depth"] == 0, status
    told = warnings(caplog, f"{base}big")
    assert len(told) == 1 and "refused" in told[0] and "200" in told[0], told


@pytest.mark.timeout(90)
def test_the_documented_size_limit_is_delivered_and_one_byte_more_is_a_value_error(
    core_factory, session_broker, subscriber_factory
):
    base = unique_base()
    topic = f"{base}huge"
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    core = core_factory(settings_for(session_broker, base))
    wait_state(core, "connected")
    largest = b"\x01" * (MESSAGE_MAX - len(topic))
    with pytest.raises(ValueError, match="67108854"):
        core.publish(topic, largest + b"\x01", False, 1, True, True)
    assert core.publish(topic, largest, False, 1, True, True)
    got = sub.wait_for(topic, timeout=60)
    assert len(got.payload) == len(largest) and got.payload == largest
    assert core.status()["reconnects"] == 0


@pytest.mark.timeout(90)
def test_the_offline_queue_counts_topic_bytes(core_factory, caplog):
    port = free_port()
    base = unique_base()
    core = core_factory(
        {"broker": {"url": "127.0.0.1", "port": port}, "publish": {"baseTopic": base}}
    )
    wait_state(core, "backing_off")
    topic = base + "t" * (LONG_TOPIC - len(base))
    before = rss_mib()
    for i in range(10_000):
        assert core.publish(topic, str(i), False, 1, True)
    status = wait_until(
        lambda: (s := core.status())["queued"] == 10_000 and s, what="all 10,000 accepted"
    )
    grown = rss_mib() - before
    # 64 MiB of topics and payloads: about 1,118 of them.
    assert status["queue_depth"] <= (64 << 20) // LONG_TOPIC + 1, status
    assert status["dropped"] == 10_000 - status["queue_depth"], status
    assert grown < 200, f"RSS grew by {grown:.0f} MiB"
    assert warnings(caplog, "The offline queue is full")


@pytest.mark.timeout(120)
def test_a_frozen_connected_broker_bounds_what_is_in_transit_and_counts_truthfully(
    core_factory, broker, subscriber_factory, caplog
):
    base = unique_base()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    core = core_factory(settings_for(broker, base, broker={"keepalive": 60}))
    wait_state(core, "connected")
    sub.wait_for(f"{base}mqtt")
    topic = base + "t" * (LONG_TOPIC - len(base))
    time.sleep(0.3)  # the status message is acknowledged
    broker.pause()
    try:
        # QoS 1 messages stuck in transit count as waiting.
        for i in range(10):
            assert core.publish(f"{base}q", str(i), False, 1, True)
        wait_until(lambda: core.status()["queue_depth"] == 10, 5, "10 in transit")
        before = rss_mib()
        for i in range(20_000):
            core.publish(topic, str(i), False, 0, True)
        time.sleep(1)
        status = core.status()
        grown = rss_mib() - before
        assert status["state"] == "connected", status
        assert grown < 250, f"RSS grew by {grown:.0f} MiB with 20,000 60 KB topics in transit"
        assert status["dropped"] > 15_000, status
        assert warnings(caplog, "published faster than the MQTT broker takes them")
        assert not warnings(caplog, "unreachable")
    finally:
        broker.resume()
    sub.wait_count(f"{base}q", 10, timeout=30)
    # The burst is over: how many it cost is told, as a burst.
    told = wait_until(
        lambda: warnings(caplog, "were dropped while connected"), 30, "the burst's drop count"
    )
    assert int(told[0].split()[0]) > 15_000, told
    assert not warnings(caplog, "unreachable")

    # The next outage's overflow is told too, not taken for the burst's.
    caplog.clear()
    broker.stop()
    wait_state(core, "backing_off", timeout=10)
    core.configure(
        settings_for(broker, base, broker={"keepalive": 60}, publish={"offlineQueueSize": 5})
    )
    for i in range(20):
        core.publish(f"{base}o", str(i), False, 1, True)
    wait_until(lambda: warnings(caplog, "The offline queue is full"), 5, "the outage's warning")


@pytest.mark.timeout(60)
def test_qos0_messages_lost_in_a_frozen_connection_are_counted(
    core_factory, broker, subscriber_factory, caplog
):
    base = unique_base()
    core = core_factory(settings_for(broker, base, broker={"keepalive": 2}))
    wait_state(core, "connected")
    time.sleep(0.5)
    published = core.status()["published"]
    broker.pause()
    try:
        for i in range(50):
            assert core.publish(f"{base}z", str(i), False, 0, False)
        status = wait_state(core, "backing_off", timeout=10)
    finally:
        broker.resume()
    assert status["dropped"] == 50, status
    assert status["published"] == published, status
    assert warnings(caplog, "50 QoS 0 messages written after the MQTT broker last answered")


@pytest.mark.timeout(60)
def test_a_broker_restart_soon_after_connecting_is_no_client_id_clash_and_resets_the_backoff(
    core_factory, tmp_path, caplog
):
    b = Broker(workdir=tmp_path / "broker")
    core = core_factory(settings_for(b, unique_base()))
    # Attempts at 0, 1 and 3 s fail: the next waits 4 s, and the one after that 8 s.
    wait_until(lambda: core.status()["last_error"], what="a failed attempt")
    time.sleep(3.5)
    b.start()
    try:
        wait_state(core, "connected", timeout=10)
        time.sleep(1)
        b.restart()
        restarted = time.monotonic()
        wait_until(lambda: core.status()["state"] != "connected", 5, "the loss")
        wait_state(core, "connected", timeout=15)
        back_after = time.monotonic() - restarted
        # A first quick loss starts the backoff from 1 s again.
        assert back_after < 4, back_after
        assert not log_lines(caplog, "same client id")
        assert log_lines(caplog, "Lost the connection")
    finally:
        b.stop()


@pytest.mark.timeout(60)
def test_a_broker_restart_right_after_a_large_message_does_not_lose_it(
    core_factory, broker, caplog
):
    base = unique_base()
    core = core_factory(settings_for(broker, base))
    wait_state(core, "connected")
    time.sleep(0.3)
    broker.pause()
    # Written to the socket, never read: the broker dies with it.
    assert core.publish(f"{base}cam", SNAPSHOT, True, 1, True, True)
    time.sleep(0.3)
    broker.kill()
    broker.start()
    wait_until(lambda: core.status()["reconnects"] >= 1, 15, "the reconnect")
    wait_until(lambda: core.status()["queue_depth"] == 0, 15, "sent again")
    retained = read_retained(broker.host, broker.port, f"{base}#")
    assert retained[f"{base}cam"].payload == SNAPSHOT
    assert core.status()["rejected"] == 0
    assert not warnings(caplog, "dropped and is not sent again")


@pytest.mark.timeout(60)
def test_mqtt5_publish_the_acl_refuses_is_dropped_once_and_the_rest_flows(
    core_factory, broker_factory, subscriber_factory, tmp_path, caplog
):
    base = f"ok/{unique_base()}"
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ok/#\ntopic read no/#\n")
    acl.chmod(0o644)
    b = broker_factory(f"acl_file {acl}\n")
    sub = subscriber_factory(b.host, b.port, f"{base}#")
    core = core_factory(settings_for(b, base, broker={"protocol": "MQTTv5"}))
    wait_state(core, "connected")
    sub.wait_for(f"{base}mqtt")
    for round_ in range(2):
        assert core.publish("no/entry", "x", False, 1, True)
        for i in range(50):
            assert core.publish(f"{base}n", f"{round_}-{i}", False, 1, True)
    received = sub.wait_count(f"{base}n", 100)
    assert [m.payload.decode() for m in received] == [
        f"{r}-{i}" for r in range(2) for i in range(50)
    ]
    status = wait_until(
        lambda: (s := core.status())["queue_depth"] == 0 and s, what="all acknowledged"
    )
    assert status["rejected"] == 2 and status["reconnects"] == 0, status
    told = warnings(caplog, '"no/entry"')
    assert len(told) == 1 and "not authorised" in told[0], told


def test_large_payload_is_not_refused(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    blob = bytes(range(256)) * 4096  # 1 MiB: far beyond rumqttc's 10 KiB default limit
    assert core.publish(f"{base}blob", blob, False, 0, False, True)
    assert sub.wait_for(f"{base}blob").payload == blob
