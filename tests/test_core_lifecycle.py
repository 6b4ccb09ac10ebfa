"""Connection lifecycle against a real broker that the tests stop, restart, freeze and kill."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

from corekit import (
    event_json,
    log_lines,
    settings_for,
    unique_base,
    wait_state,
    wait_until,
)
from mqtt_env import read_retained

# The core retries 1 s after the first failure, then 2 s later. Bringing the broker up
# ~1.3 s after the first failure leaves ~1.7 s to subscribe before the core's next attempt,
# so the subscriber sees everything the core flushes on connect.
FIRST_RETRY_GAP = 1.3


def seqs(sub, topic):
    return [event_json(m)["seq"] for m in sub.messages(topic)]


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


def test_last_will_when_the_process_is_killed(broker, subscriber_factory, tmp_path):
    base = unique_base()
    script = textwrap.dedent(
        f"""
        import time
        from octoprint_mqtt._core import Core
        core = Core()
        core.configure({{"broker": {{"url": "{broker.host}", "port": {broker.port}}},
                         "publish": {{"baseTopic": "{base}"}}}})
        while not core.connected:
            time.sleep(0.01)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    sub = subscriber_factory(broker.host, broker.port, f"{base}mqtt")
    # Run outside the checkout, so it imports the installed plugin, not the source tree.
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        sub.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"connected")
        os.kill(proc.pid, signal.SIGKILL)
        will = sub.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"disconnected")
        assert will.qos == 1
    finally:
        proc.kill()
        proc.wait(10)
    retained = read_retained(broker.host, broker.port, f"{base}mqtt")
    assert retained[f"{base}mqtt"].payload == b"disconnected"


def timed_stop(core) -> float:
    start = time.monotonic()
    assert core.stop(1.0) is True
    return time.monotonic() - start


def test_clean_shutdown_publishes_disconnected(core_factory, session_broker, subscriber_factory):
    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    core = core_factory(settings_for(session_broker, base))
    wait_state(core, "connected")
    for i in range(100):
        core.publish_event("Dwelling", {"seq": i})
    assert timed_stop(core) < 1.0
    # Everything sent before stop() went out, then the status, then DISCONNECT (no will).
    sub.wait_count(f"{base}event/Dwelling", 100)
    bye = sub.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"disconnected")
    assert sub.messages()[-1] == bye
    assert core.status()["state"] == "stopped"
    assert core.publish_event("Dwelling", {}) is False


def test_shutdown_with_a_backlog_still_says_goodbye(core_factory, broker, subscriber_factory):
    # More waiting than the broker takes in the close budget: the status message and
    # DISCONNECT must still go out in time (they used to wait behind the whole backlog).
    base = unique_base()
    sub = subscriber_factory(broker.host, broker.port, f"{base}mqtt")
    core = core_factory(settings_for(broker, base, publish={"offlineQueueSize": 200_000}))
    wait_state(core, "connected")
    sub.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"connected")
    blob = b"x" * 4096
    for _ in range(100_000):
        core.publish(f"{base}bulk", blob, False, 0, False, True)
    assert core.status()["queue_depth"] > 0, "no backlog: the test proves nothing"
    assert timed_stop(core) < 1.2
    sub.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"disconnected")
    client_id = re.search(
        r"New client connected from \S+ as (octoprint-mqtt-\S+) ", broker.log_text()
    )
    assert client_id, broker.log_text()[-2000:]
    # Mosquitto forwards the status message before it reads (and logs) the DISCONNECT after it.
    wait_until(
        lambda: f"Received DISCONNECT from {client_id[1]}" in broker.log_text(),
        5.0,
        "the broker to log the plugin's DISCONNECT",
    )


def test_shutdown_is_bounded_with_a_dead_broker(core_factory, broker):
    broker.stop()
    core = core_factory(settings_for(broker))
    wait_state(core, "backing_off")
    core.publish_event("Dwelling", {})
    assert timed_stop(core) < 1.2

    broker.start()
    core2 = core_factory(settings_for(broker))
    wait_state(core2, "connected")
    broker.kill()
    core2.publish_event("Dwelling", {})
    assert timed_stop(core2) < 1.2


def test_shutdown_is_bounded_with_a_frozen_broker(core_factory, broker):
    core = core_factory(settings_for(broker))
    wait_state(core, "connected")
    broker.pause()
    try:
        for i in range(1000):
            core.publish_event("Dwelling", {"seq": i, "pad": "x" * 500})
        assert timed_stop(core) < 1.2
    finally:
        broker.resume()


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
        # Each costs 1 MiB with its topic: the bound counts topics too.
        blob = i.to_bytes(4, "big") + bytes(1024 * 1024 - 4 - len(topic))
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


def test_idle_without_a_broker_says_so_once(core_factory, caplog):
    core = core_factory({"broker": {"url": None}})
    wait_state(core, "idle")
    core.configure({"broker": {"url": ""}, "publish": {"eventActive": True}})
    assert core.publish_event("Dwelling", {}) is False
    time.sleep(0.2)
    assert len(log_lines(caplog, "No MQTT broker is configured")) == 1


def test_connection_settings_change_reconnects_other_changes_do_not(
    core_factory, broker_factory, subscriber_factory
):
    a, b = broker_factory(), broker_factory()
    base = unique_base()
    sub_a = subscriber_factory(a.host, a.port, f"{base}#")
    sub_b = subscriber_factory(b.host, b.port, f"{base}#")
    core = core_factory(settings_for(a, base))
    wait_state(core, "connected")
    sub_a.wait_for(f"{base}mqtt")

    # Topic and filter changes apply live.
    core.configure(settings_for(a, base, publish={"eventTopic": "ev/{event}"}))
    core.publish_event("Home", {})
    sub_a.wait_for(f"{base}ev/Home")
    assert [m.payload for m in sub_a.messages(f"{base}mqtt")] == [b"connected"]

    # A broker change: `disconnected` on the old broker, `connected` on the new one.
    core.configure(settings_for(b, base))
    sub_a.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"disconnected")
    sub_b.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"connected")
    core.publish_event("Home", {"to": "b"})
    assert event_json(sub_b.wait_for(f"{base}event/Home"))["to"] == "b"


def test_status_topic_change_says_disconnected_on_the_old_topic(
    core_factory, session_broker, subscriber_factory
):
    old, new = unique_base(), unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, "#")
    core = core_factory(settings_for(session_broker, old))
    wait_state(core, "connected")
    sub.wait_for(f"{old}mqtt", predicate=lambda m: m.payload == b"connected")
    core.configure(settings_for(session_broker, old, publish={"lwTopic": "status"}))
    sub.wait_for(f"{old}mqtt", predicate=lambda m: m.payload == b"disconnected")
    sub.wait_for(f"{old}status", predicate=lambda m: m.payload == b"connected")
    core.configure(settings_for(session_broker, new, publish={"lwTopic": "status"}))
    sub.wait_for(f"{old}status", predicate=lambda m: m.payload == b"disconnected")
    sub.wait_for(f"{new}status", predicate=lambda m: m.payload == b"connected")
    retained = read_retained(session_broker.host, session_broker.port)
    assert retained[f"{old}mqtt"].payload == b"disconnected"
    assert retained[f"{old}status"].payload == b"disconnected"
    assert retained[f"{new}status"].payload == b"connected"
    # The new status topic: `disconnected` arrives after `connected`, in order.
    assert [m.payload for m in sub.messages(f"{old}status")] == [b"connected", b"disconnected"]


def test_credentials_refused_with_a_clear_reason_and_no_password_in_logs(
    core_factory, password_broker_factory, caplog
):
    b = password_broker_factory("printer", "right-pw", anonymous=False)
    secret = "wr0ng-S3CRET-pw"
    core = core_factory(settings_for(b, broker={"username": "printer", "password": secret}))
    status = wait_state(core, "backing_off")
    assert "refused" in status["last_error"]
    assert any(w in status["last_error"] for w in ("user name or password", "not authorised"))
    core.configure(settings_for(b, broker={"username": "printer", "password": "right-pw"}))
    wait_state(core, "connected", timeout=10)
    assert secret not in caplog.text and "right-pw" not in caplog.text


def test_a_burst_while_connected_is_not_cut_to_the_offline_bound(
    core_factory, session_broker, subscriber_factory
):
    from corekit import connected_core

    core, _, _ = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"offlineQueueSize": 10}
    )
    for i in range(20_000):
        assert core.publish_event("Dwelling", {"seq": i})
    # +1: the `connected` status message.
    wait_until(lambda: core.status()["published"] == 20_001, timeout=30, what="all written")
    assert core.status()["dropped"] == 0
