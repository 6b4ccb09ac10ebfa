"""Losing the broker and getting it back: down at start, restarted mid-stream, frozen, killed
under load, or shared with a client of the same id, against real brokers the tests stop,
restart, freeze and kill. Nothing published is lost, callers never block, and each failure
reason is logged once.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from support.corekit import (
    FIRST_RETRY_GAP,
    event_json,
    gil_held_between_waits,
    log_lines,
    seqs,
    settings_for,
    timed_call,
    unique_base,
    wait_state,
    wait_until,
)


def test_events_while_broker_down_at_start_arrive_in_order(
    core_factory, broker, subscriber_factory
):
    base = unique_base()
    broker.stop()
    core = core_factory(settings_for(broker, base))
    wait_state(core, "backing_off")
    stamps = []
    for i in range(50):
        assert core.publish_event("Startup" if i == 0 else "Dwelling", {"seq": i}) is True
        stamps.append(int(time.time()))
    wait_until(lambda: core.status()["queue_depth"] == 50, what="50 queued")
    time.sleep(FIRST_RETRY_GAP)
    broker.start()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    sub.wait_count(f"{base}event/+", 50, timeout=15)
    msgs = sub.messages()
    assert msgs[0].topic == f"{base}mqtt" and msgs[0].payload == b"connected"
    events = [event_json(m) for m in msgs if "/event/" in m.topic]
    assert [e["seq"] for e in events] == list(range(50))
    assert events[0]["_event"] == "Startup"
    # Each keeps the timestamp of when it happened, not of when it was delivered.
    assert [e["_timestamp"] for e in events] == stamps
    assert core.status()["queued"] == 50 and core.status()["dropped"] == 0


def test_broker_restart_mid_stream_reconnects_and_keeps_messages(
    core_factory, broker, subscriber_factory, caplog
):
    base = unique_base()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    core = core_factory(settings_for(broker, base))
    wait_state(core, "connected")
    for i in range(10):
        core.publish_event("Dwelling", {"seq": i})
    sub.wait_count(f"{base}event/Dwelling", 10)
    sub.close()

    broker.stop()
    wait_state(core, "backing_off")
    for i in range(10, 20):
        assert core.publish_event("Dwelling", {"seq": i})
    time.sleep(FIRST_RETRY_GAP)
    broker.start()
    sub2 = subscriber_factory(broker.host, broker.port, f"{base}#")
    sub2.wait_count(f"{base}event/Dwelling", 10, timeout=15)
    assert sub2.messages()[0].payload == b"connected"
    assert seqs(sub2, f"{base}event/Dwelling") == list(range(10, 20))
    assert core.status()["reconnects"] == 1
    assert log_lines(caplog, "Lost the connection to the MQTT broker")
    assert log_lines(caplog, "Reconnected to the MQTT broker")


def test_failure_reason_is_logged_once_while_it_stays_the_same(core_factory, broker, caplog):
    broker.stop()
    core = core_factory(settings_for(broker))
    wait_state(core, "backing_off")
    time.sleep(3.5)  # attempts at 0, 1 and 3 s
    status = core.status()
    assert "connection refused" in status["last_error"]
    lines = log_lines(caplog, "Cannot connect to the MQTT broker")
    assert len(lines) == 1, lines
    assert f"{broker.host}:{broker.port}" in lines[0] and "connection refused" in lines[0]


def test_idle_without_a_broker_says_so_once(core_factory, caplog):
    core = core_factory({"broker": {"url": None}})
    wait_state(core, "idle")
    core.configure({"broker": {"url": ""}, "publish": {"eventActive": True}})
    assert core.publish_event("Dwelling", {}) is False
    time.sleep(0.2)
    assert len(log_lines(caplog, "No MQTT broker is configured")) == 1


# Keepalive of 2 s: the core gives up on a silent link after 3 s.
KEEPALIVE = 2


def publish_timed(core, topic, payload, durations):
    accepted, took = timed_call(core.publish, topic, payload, False, 1, True)
    durations.append(took)
    return accepted


@pytest.mark.timeout(90)
def test_frozen_broker_never_blocks_callers_is_detected_and_loses_nothing(
    core_factory, broker, subscriber_factory, caplog
):
    base = unique_base()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#")
    core = core_factory(settings_for(broker, base, broker={"keepalive": KEEPALIVE}))
    wait_state(core, "connected")
    durations = []
    with gil_held_between_waits():
        for i in range(100):
            assert publish_timed(core, f"{base}m", str(i), durations)
    sub.wait_count(f"{base}m", 100)

    broker.pause()
    frozen_at = time.monotonic()
    try:
        with gil_held_between_waits():
            for i in range(100, 400):
                assert publish_timed(core, f"{base}m", str(i), durations)
                time.sleep(0.01)
            status = wait_state(core, "backing_off", timeout=3 * KEEPALIVE + 2)
            detected_after = time.monotonic() - frozen_at
            assert "stopped answering" in status["last_error"]
            for i in range(400, 500):
                assert publish_timed(core, f"{base}m", str(i), durations)
        time.sleep(max(0.0, 10 - (time.monotonic() - frozen_at)))
    finally:
        broker.resume()

    received = wait_until(
        lambda: len({m.payload for m in sub.messages(f"{base}m")}) == 500 and sub.messages(),
        timeout=40,
        what="all 500 messages after the broker thawed",
    )
    assert {int(m.payload) for m in received if m.topic == f"{base}m"} == set(range(500))
    # The watchdog fires 1.5 keepalives after the last packet from the broker.
    assert detected_after < 1.5 * KEEPALIVE + 2.5, detected_after
    blocked = [d for d in durations if d.blocked_longer_than(0.005)]
    slowest = max(d.seconds for d in durations)
    assert not blocked, f"helper calls waited over 5 ms: {blocked} (slowest {slowest * 1e3:.1f} ms)"
    wait_state(core, "connected", timeout=15)
    assert log_lines(caplog, "Lost the connection")


@pytest.mark.timeout(120)
def test_broker_killed_mid_burst_every_qos1_message_arrives(
    core_factory, broker_factory, subscriber_factory, tmp_path
):
    # The broker persists sessions (saved after every change, not once a second: a message it
    # acknowledged must survive the kill, or it is lost inside the broker whatever a client
    # does) so that the subscriber's session and what is queued for it survive the kill;
    # nothing limits its queue.
    b = broker_factory(
        f"persistence true\npersistence_location {tmp_path}/\n"
        "autosave_interval 1\nautosave_on_changes true\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
    )
    base = unique_base()
    sub = subscriber_factory(
        b.host, b.port, f"{base}#", client_id=f"keeper-{base[:-1]}", clean_session=False
    )
    core = core_factory(settings_for(b, base))
    wait_state(core, "connected")
    time.sleep(1.5)  # the subscription is in the persistence file
    total, threads = 10_000, 4

    # Paced (about 1,000/s in all) so that the broker is not sitting on a backlog for the
    # Python subscriber when it dies. What a killed broker acknowledged but had neither
    # delivered nor saved is lost inside the broker, whatever a client does: only messages
    # published in the last moment before the kill may be missing, a handful at most.
    # Everything else (sent during the outage, unacknowledged, queued) must arrive.
    sent_at: dict[int, float] = {}

    def publisher(n):
        for i in range(n, total, threads):
            sent_at[i] = time.monotonic()
            assert core.publish(f"{base}q", str(i), False, 1, True)
            time.sleep(0.004)

    workers = [threading.Thread(target=publisher, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    wait_until(lambda: len(sub.messages(f"{base}q")) > 3000, timeout=30, what="a third")
    killed_at = time.monotonic()
    b.kill()
    for w in workers:
        w.join(30)
    time.sleep(0.5)
    b.start()

    def missing() -> list[int]:
        ids = {int(m.payload) for m in sub.messages(f"{base}q")}
        return sorted(set(range(total)) - ids)

    def only_the_last_moment() -> bool:
        return all(killed_at - 0.5 <= sent_at[i] <= killed_at for i in missing())

    # How many the broker loses depends on how far its last save was behind (11 were seen on a
    # 2-core machine), so the rule is when they were sent, not how many.
    try:
        wait_until(only_the_last_moment, 60, "all but what the killed broker lost")
    except AssertionError:
        lost = missing()
        pytest.fail(f"{len(lost)} never arrived, e.g. {lost[:10]}; core: {core.status()}")
    time.sleep(1.0)  # stragglers
    lost = missing()
    assert len(lost) <= 100, lost
    # (id, seconds between its publish and the kill): only the last moment's may be missing.
    late = [(i, round(killed_at - sent_at[i], 3)) for i in lost]
    assert all(killed_at - 0.5 <= sent_at[i] <= killed_at for i in lost), late
    status = core.status()
    assert status["reconnects"] >= 1 and status["dropped"] == 0


def test_two_clients_with_one_client_id_back_off_and_say_so_once(core_factory, broker, caplog):
    # Two printers configured with the same client id: the broker drops each as the other
    # connects. Without care both reconnect every second and log every time.
    settings = settings_for(broker, unique_base(), client={"client_id": "same-id-twice"})
    core_factory(settings)
    core_factory(settings)
    time.sleep(9)
    connects = broker.log_text().count("as same-id-twice")
    # Backoff 1, 2, 4 s for each core: about 4 connects each in 9 s, not 9 or more.
    assert 3 <= connects <= 12, connects
    told = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([m for m in told if "reconnecting with growing delays" in m]) <= 2, told
    assert len([m for m in told if "Reconnected to the MQTT broker" in m]) <= 2, told
