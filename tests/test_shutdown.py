"""Shutting down: the last will when the process is killed, a clean goodbye (with a backlog
too), and a bounded stop with a dead or frozen broker.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import paho.mqtt.client as mqtt
from support.corekit import settings_for, unique_base, wait_state, wait_until
from support.mqtt_env import read_retained


def test_last_will_when_the_process_is_killed(broker, subscriber_factory, tmp_path):
    base = unique_base()
    script = textwrap.dedent(
        f"""
        import time
        from octoprint_mqtt_core._core import Core
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


def test_goodbye_is_clean_while_the_broker_is_still_sending(
    core_factory, broker, subscriber_factory
):
    # A subscription that keeps receiving while the plugin says goodbye: closing the socket
    # with the broker's messages unread made the kernel answer with a reset, and Mosquitto,
    # reading that before the DISCONNECT, fired the last will ("disconnected due to ..."): a
    # second `disconnected`, and a will where there should be none. Repeated, because it
    # happened in some runs only.
    base = unique_base()
    sub = subscriber_factory(broker.host, broker.port, f"{base}mqtt")
    feeder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    feeder.connect(broker.host, broker.port)
    feeder.loop_start()
    stop_feeding = False

    def feed():
        while not stop_feeding:
            feeder.publish(f"{base}feed/x", b"y" * 2048, qos=0)
            time.sleep(0.0002)

    feeding = threading.Thread(target=feed, daemon=True)
    feeding.start()
    received = []
    try:
        for round_ in range(10):
            core = core_factory(settings_for(broker, base))
            core.subscribe(f"{base}feed/#", lambda topic, payload, **kw: received.append(1))
            wait_state(core, "connected")
            wait_until(lambda c=core: c.status()["received"] > 100, 5.0, "the feed to arrive")
            sub.clear()
            assert timed_stop(core) < 1.2
            bye = sub.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"disconnected")
            time.sleep(0.3)  # a last will would follow at once
            goodbyes = [m for m in sub.messages(f"{base}mqtt") if m.payload == b"disconnected"]
            assert goodbyes == [bye], f"round {round_}: {goodbyes}"
            log = broker.log_text()
            assert "disconnected due to" not in log, log[-3000:]
            assert "Socket error on client octoprint-mqtt" not in log, log[-3000:]
    finally:
        stop_feeding = True
        feeding.join(5)
        feeder.loop_stop()
        feeder.disconnect()
