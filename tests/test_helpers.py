"""The helper API other plugins call (docs/behaviour.md, helper API), against a real broker.

The helpers are the plugin's own methods; the plugin object is made without OctoPrint and its
core configured directly, so every call below runs the code OctoPrint plugins run."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import pytest
from support.corekit import (
    decimal_digits,
    log_lines,
    settings_for,
    unique_base,
    wait_state,
    wait_until,
)
from support.mqtt_env import read_retained

JPEG_SIZE = 512 * 1024


@pytest.fixture(params=["MQTTv311", "MQTTv5"])
def env(request, plugin_factory, session_broker, subscriber_factory):
    """A connected plugin (each test runs with MQTT 3.1.1 and with MQTT 5), a base topic of its
    own and a subscriber on it."""
    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    plugin = plugin_factory(settings_for(session_broker, base, broker={"protocol": request.param}))
    sub.wait_for(f"{base}mqtt")
    return plugin, sub, base


class Recorder:
    """A subscription callback that records its calls; thread-safe."""

    def __init__(self):
        self.calls = []
        self.cond = threading.Condition()

    def __call__(self, topic, payload, *args, **kwargs):
        with self.cond:
            self.calls.append((topic, payload, args, kwargs))
            self.cond.notify_all()

    def wait(self, n=1, timeout=10.0):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.calls) >= n, timeout):
                raise AssertionError(f"{len(self.calls)} calls, expected {n}: {self.calls}")
        return self.calls

    def topics(self):
        with self.cond:
            return [c[0] for c in self.calls]


# ~~ mqtt_publish


@pytest.mark.parametrize(
    "payload, raw, expected",
    [
        ("grüße", False, "grüße".encode()),
        ({"a": 1, "b": [True, None]}, False, b'{"a":1,"b":[true,null]}'),
        ([1, "x"], False, b'[1,"x"]'),
        (42, False, b"42"),
        (None, False, b"null"),
        ("grüße", True, "grüße".encode()),
        (b"\x00\xff raw", True, b"\x00\xff raw"),
        (bytearray(b"ba"), True, b"ba"),
        (42, True, b"42"),
        (1.5, True, b"1.5"),
        (None, True, b""),
    ],
)
def test_payload_encodings(env, payload, raw, expected):
    plugin, sub, base = env
    assert plugin.mqtt_publish(f"{base}p", payload, raw_data=raw) is True
    assert sub.wait_for(f"{base}p").payload == expected


def test_integers_beyond_pythons_digit_limit(env):
    # JSON: a string of the digits (Python's json.loads refuses longer numbers); raw_data:
    # the digits, where str() would raise.
    plugin, sub, base = env
    big = -(7**6000)
    digits = decimal_digits(big)
    assert plugin.mqtt_publish(f"{base}json", {"n": big, "ok": 2**70}) is True
    assert json.loads(sub.wait_for(f"{base}json").payload) == {"n": digits, "ok": 2**70}
    assert plugin.mqtt_publish(f"{base}bare", big) is True
    assert json.loads(sub.wait_for(f"{base}bare").payload) == digits
    assert plugin.mqtt_publish(f"{base}raw", big, raw_data=True) is True
    assert sub.wait_for(f"{base}raw").payload == digits.encode()
    assert plugin.mqtt_publish_with_timestamp(f"{base}ts", {"n": big}, timestamp=5) is True
    assert json.loads(sub.wait_for(f"{base}ts").payload) == {"n": digits, "_timestamp": 5}


def test_unsendable_payloads_are_type_errors(env):
    plugin, _, base = env
    with pytest.raises(TypeError, match="raw_data"):
        plugin.mqtt_publish(f"{base}p", {"a"}, raw_data=True)
    with pytest.raises(TypeError, match="raw_data=True"):
        plugin.mqtt_publish(f"{base}p", b"jpeg bytes")


def test_jpeg_sized_bytes_arrive_identical(env):
    plugin, sub, base = env
    blob = os.urandom(JPEG_SIZE)
    assert plugin.mqtt_publish(f"{base}camera", blob, retained=False, raw_data=True)
    assert sub.wait_for(f"{base}camera").payload == blob


def test_lone_surrogate_topics_are_value_errors_and_nothing_is_sent(plugin_factory, env):
    # A str that UTF-8 cannot encode: refused like any other bad topic, not sent under a
    # topic with replacement characters, and the same error for publishing and subscribing.
    plugin, sub, base = env
    offline = plugin_factory()
    rec = Recorder()
    calls = [
        lambda p: p.mqtt_publish(f"{base}a/\ud800", "x"),
        lambda p: p.mqtt_publish(f"{base}a/\udfff", b"x", raw_data=True),
        lambda p: p.mqtt_publish_with_timestamp(f"{base}a/\ud800", {}),
        lambda p: p.mqtt_subscribe(f"{base}a/\ud800", rec),
        lambda p: p.mqtt_subscribe(f"{base}\udc80/#", rec),
    ]
    for p in (plugin, offline):
        for call in calls:
            with pytest.raises(ValueError, match="surrogate") as raised:
                call(p)
            assert raised.type is ValueError, raised.value
    # Nothing of it reaches the broker or the registry: what the lossy conversion would have
    # published to and subscribed on stays silent.
    lossy = f"{base}a/\ufffd\ufffd\ufffd"
    plugin.mqtt_subscribe(f"{base}done", rec)
    time.sleep(0.2)
    plugin.mqtt_publish(lossy, "lossy", retained=False)
    plugin.mqtt_publish(f"{base}done", "marker", retained=False)
    rec.wait(1)
    sub.wait_for(f"{base}done")
    time.sleep(0.2)
    assert rec.topics() == [f"{base}done"]
    assert [m.payload for m in sub.messages(f"{base}a/#")] == [b"lossy"]
    # Unsubscribing from such a topic removes nothing, as for any topic nobody subscribed.
    plugin.mqtt_unsubscribe(rec, f"{base}a/\ud800")
    plugin.mqtt_publish(f"{base}done", "again", retained=False)
    rec.wait(2)


@pytest.mark.parametrize(
    "topic, qos",
    [
        ("a/+/b", 0),
        ("a/#", 0),
        ("", 0),
        pytest.param("x" * 65536, 0, id="65536-bytes"),
        ("a\0b", 0),
        ("ok", 3),
    ],
)
def test_bad_topics_and_qos_are_value_errors_connected_or_not(plugin_factory, env, topic, qos):
    plugin, _, _ = env
    offline = plugin_factory()  # never configured: not connected
    for p in (plugin, offline):
        with pytest.raises(ValueError):
            p.mqtt_publish(topic, "x", qos=qos)
        with pytest.raises(ValueError):
            p.mqtt_publish_with_timestamp(topic, {}, qos=qos)


def test_retained_none_follows_broker_retain(plugin_factory, session_broker, subscriber_factory):
    for broker_retain in (True, False):
        base = unique_base()
        plugin = plugin_factory(
            settings_for(session_broker, base, broker={"retain": broker_retain})
        )
        sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
        plugin.mqtt_publish(f"{base}default", "d")
        plugin.mqtt_publish(f"{base}forced", "f", retained=True)
        plugin.mqtt_publish(f"{base}never", "n", retained=False)
        sub.wait_for(f"{base}never")
        retained = read_retained(session_broker.host, session_broker.port, f"{base}#")
        expected = {f"{base}forced"} | ({f"{base}default"} if broker_retain else set())
        assert {t for t in retained if t != f"{base}mqtt"} == expected


def test_flags_take_any_truthy_value(plugin_factory, session_broker, subscriber_factory):
    # Python callers pass 1/0 or None for the flags; they mean what bool() says.
    base = unique_base()
    plugin = plugin_factory(settings_for(session_broker, base, broker={"retain": False}))
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    assert plugin.mqtt_publish(f"{base}one", "1", retained=1) is True
    assert plugin.mqtt_publish(f"{base}zero", "0", retained=0) is True
    assert plugin.mqtt_publish(f"{base}raw", 5, retained="", raw_data=1) is True
    assert sub.wait_for(f"{base}raw").payload == b"5"
    retained = read_retained(session_broker.host, session_broker.port, f"{base}#")
    assert {t for t in retained if t != f"{base}mqtt"} == {f"{base}one"}


def test_helpers_after_the_plugin_stopped(plugin_factory, session_broker):
    # Consumers' own shutdown code may run after ours: nothing raises, publishing says False.
    plugin = plugin_factory(settings_for(session_broker, unique_base()))
    plugin._core.stop(1.0)
    rec = Recorder()
    assert plugin.mqtt_publish("after/stop", "x", allow_queueing=True) is False
    assert plugin.mqtt_publish_with_timestamp("after/stop", {}) is False
    plugin.mqtt_subscribe("after/#", rec)
    plugin.mqtt_unsubscribe(rec)
    plugin.mqtt_unsubscribe(rec, "after/#")
    plugin._core.configure(settings_for(session_broker))
    assert plugin._core.status()["state"] == "stopped"


def test_offline_return_values_and_queue_keeps_each_retain_flag(
    plugin_factory, broker, subscriber_factory
):
    base = unique_base()
    broker.stop()
    plugin = plugin_factory(settings_for(broker, base), wait=False)
    wait_state(plugin._core, "backing_off")
    assert plugin.mqtt_publish(f"{base}live-only", "x") is False
    assert plugin.mqtt_publish(f"{base}r", "kept, retained", True, 1, True) is True
    assert plugin.mqtt_publish(f"{base}n", "kept, not retained", False, 1, True) is True
    assert plugin.mqtt_publish(f"{base}q2", "qos 2", False, 2, True) is True
    time.sleep(1.3)  # the core retries 1 s, then 3 s after the first failure
    broker.start()
    sub = subscriber_factory(broker.host, broker.port, f"{base}#", qos=2)
    msgs = [sub.wait_for(f"{base}{t}", timeout=15) for t in ("r", "n", "q2")]
    assert [m.payload for m in msgs] == [b"kept, retained", b"kept, not retained", b"qos 2"]
    assert msgs[2].qos == 2
    retained = read_retained(broker.host, broker.port, f"{base}#")
    assert f"{base}r" in retained and f"{base}n" not in retained
    assert not sub.messages(f"{base}live-only")


# ~~ mqtt_publish_with_timestamp


def test_with_timestamp_adds_the_field_to_the_callers_dict(env):
    plugin, sub, base = env
    data = {"state": "on"}
    before = int(time.time())
    assert plugin.mqtt_publish_with_timestamp(f"{base}ts", data)
    assert set(data) == {"state", "_timestamp"} and data["_timestamp"] >= before
    assert (
        sub.wait_for(f"{base}ts").payload
        == f'{{"state":"on","_timestamp":{data["_timestamp"]}}}'.encode()
    )

    given = {"k": 1}
    plugin.mqtt_publish_with_timestamp(f"{base}ts2", given, timestamp=1234.9)
    assert given == {"k": 1, "_timestamp": 1234}
    for falsy in (None, {}, ""):
        plugin.mqtt_publish_with_timestamp(f"{base}ts3", falsy)
    assert len(sub.wait_count(f"{base}ts3", 3)) == 3
    with pytest.raises(ValueError):
        plugin.mqtt_publish_with_timestamp(f"{base}ts4", ["not", "a", "dict"])


# ~~ mqtt_subscribe / mqtt_unsubscribe


def test_callbacks_get_bytes_args_kwargs_and_flags(env):
    plugin, _, base = env
    rec = Recorder()
    stored = {"user": "kw"}
    plugin.mqtt_subscribe(f"{base}cmd/+", rec, args=("a1", 2), kwargs=stored, qos=1)
    time.sleep(0.2)
    plugin.mqtt_publish(f"{base}cmd/power", "on", retained=False, qos=1)
    plugin.mqtt_publish(f"{base}cmd/power", "off", retained=False, qos=1)
    calls = rec.wait(2)
    topic, payload, args, kwargs = calls[0]
    assert (topic, payload, args) == (f"{base}cmd/power", b"on", ("a1", 2))
    assert isinstance(payload, bytes)
    assert kwargs == {"retained": False, "qos": 1, "user": "kw"}
    assert calls[1][1] == b"off"
    assert stored == {"user": "kw"}, "stored kwargs are never mutated"


def test_own_status_topic_reaches_own_subscriber_subscribed_before_connecting(
    plugin_factory, session_broker
):
    base = unique_base()
    plugin = plugin_factory()
    rec = Recorder()
    plugin.mqtt_subscribe(f"{base}mqtt", rec)  # before any connection, as consumers do
    plugin._core.configure(settings_for(session_broker, base, broker={"lwRetain": False}))
    rec.wait(1)
    assert rec.calls[0][1] == b"connected" and rec.calls[0][3]["retained"] is False


def test_wildcards_and_sys_topics(plugin_factory, broker_factory, subscriber_factory):
    b = broker_factory("sys_interval 1\n")
    base = unique_base()
    plugin = plugin_factory(settings_for(b, base))
    everything, sys_only, level = Recorder(), Recorder(), Recorder()
    plugin.mqtt_subscribe("#", everything)
    plugin.mqtt_subscribe("$SYS/broker/uptime", sys_only)
    plugin.mqtt_subscribe(f"{base}+/state", level)
    time.sleep(0.2)
    plugin.mqtt_publish(f"{base}lamp/state", "1", retained=False)
    plugin.mqtt_publish(f"{base}lamp/deep/state", "2", retained=False)
    sys_only.wait(1, timeout=5)
    level.wait(1)
    time.sleep(1.2)
    assert level.topics() == [f"{base}lamp/state"]
    assert not [t for t in everything.topics() if t.startswith("$")]
    assert f"{base}lamp/deep/state" in everything.topics()


def test_invalid_filters_are_value_errors(env):
    plugin, _, _ = env
    for bad in ("", "a/#/b", "a+", "x\0"):
        with pytest.raises(ValueError):
            plugin.mqtt_subscribe(bad, Recorder())
    with pytest.raises(ValueError):
        plugin.mqtt_subscribe("ok", Recorder(), qos=5)


class Consumer:
    """Bound methods are new objects on every attribute access, as in real plugins."""

    def __init__(self):
        self.rec = Recorder()

    def on_message(self, topic, payload, *args, **kwargs):
        self.rec(topic, payload, *args, **kwargs)


def test_duplicate_registration_calls_once(env):
    plugin, _, base = env
    c = Consumer()
    plugin.mqtt_subscribe(f"{base}dup", c.on_message)
    plugin.mqtt_subscribe(f"{base}dup", c.on_message)
    time.sleep(0.2)
    plugin.mqtt_publish(f"{base}dup", "x", retained=False)
    c.rec.wait(1)
    time.sleep(0.3)
    assert len(c.rec.calls) == 1


def test_unsubscribe_rules(env, subscriber_factory):
    plugin, _, base = env
    a, b = Consumer(), Consumer()
    plugin.mqtt_subscribe(f"{base}x", a.on_message)
    plugin.mqtt_subscribe(f"{base}y", a.on_message)
    plugin.mqtt_subscribe(f"{base}x", b.on_message)
    plugin.mqtt_subscribe(f"{base}z", b.on_message)
    plugin.mqtt_unsubscribe(f"{base}x")  # a topic string, not a callback: nothing happens
    plugin.mqtt_unsubscribe(a.on_message)  # an equal bound method: both of a's filters
    plugin.mqtt_unsubscribe(b.on_message, topic=f"{base}z")  # only that filter
    time.sleep(0.2)
    received = plugin._core.status()["received"]
    for t in ("x", "y", "z"):
        plugin.mqtt_publish(f"{base}{t}", t, retained=False)
    b.rec.wait(1)
    time.sleep(0.5)
    # `x` stayed subscribed at the broker because b still uses it.
    assert b.rec.topics() == [f"{base}x"]
    assert a.rec.calls == []
    # `y` and `z` were unsubscribed at the broker, not just filtered here: only `x` came in.
    assert plugin._core.status()["received"] - received == 1


def test_raising_callback_is_logged_and_the_next_one_runs(env, caplog):
    plugin, _, base = env

    def broken(topic, payload, **kwargs):
        raise RuntimeError("consumer bug")

    after = Recorder()
    plugin.mqtt_subscribe(f"{base}boom", broken)
    plugin.mqtt_subscribe(f"{base}boom", after)
    time.sleep(0.2)
    plugin.mqtt_publish(f"{base}boom", "1", retained=False)
    after.wait(1)
    records = [r for r in caplog.records if "raised an exception" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info and "consumer bug" in str(records[0].exc_info[1])
    assert "Traceback" in caplog.text
    assert plugin._core.status()["callback_errors"] == 1


def test_a_callback_failing_on_every_message_is_summarised(env, caplog):
    # One traceback, then counted: when it stops failing, one line says how often it failed.
    plugin, _, base = env
    calls = []

    def broken(topic, payload, **kwargs):
        calls.append(payload)
        if len(calls) <= 500:
            raise ValueError(f"bad payload {payload.decode()}")

    after = Recorder()
    plugin.mqtt_subscribe(f"{base}flood", broken)
    plugin.mqtt_subscribe(f"{base}flood", after)
    time.sleep(0.2)
    for i in range(500):
        plugin.mqtt_publish(f"{base}flood", str(i), retained=False)
    after.wait(500)
    assert wait_until(lambda: plugin._core.status()["callback_errors"] == 500, what="500 errors")
    plugin.mqtt_publish(f"{base}flood", "fixed", retained=False)
    after.wait(501)
    summary = wait_until(lambda: log_lines(caplog, "more times"), what="the summary line")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert "bad payload 0" in str(tracebacks[0].exc_info[1])
    assert len(summary) == 1, summary
    assert "broken" in summary[0] and f"{base}flood" in summary[0], summary
    assert "499 more times" in summary[0], summary
    assert "ValueError: bad payload 499" in summary[0], summary
    assert [c[1] for c in after.calls] == [str(i).encode() for i in range(500)] + [b"fixed"]
    assert len(calls) == 501
    assert plugin._core.status()["callback_errors"] == 500


def test_slow_callback_does_not_stall_publishing(env, session_broker, subscriber_factory):
    plugin, _, base = env
    release = threading.Event()
    entered = threading.Event()

    def slow(topic, payload, **kwargs):
        entered.set()
        release.wait(5)

    plugin.mqtt_subscribe(f"{base}slow", slow)
    time.sleep(0.2)
    plugin.mqtt_publish(f"{base}slow", "go", retained=False)
    assert entered.wait(5)
    watcher = subscriber_factory(session_broker.host, session_broker.port, f"{base}burst")
    start = time.monotonic()
    for i in range(1000):
        assert plugin.mqtt_publish(f"{base}burst", str(i), retained=False)
    watcher.wait_count(f"{base}burst", 1000, timeout=4)
    assert time.monotonic() - start < 4
    assert plugin._core.status()["state"] == "connected"
    release.set()


def test_subscriptions_are_renewed_after_a_reconnect(plugin_factory, broker):
    base = unique_base()
    plugin = plugin_factory(settings_for(broker, base))
    rec = Recorder()
    plugin.mqtt_subscribe(f"{base}cmd", rec)
    broker.restart()
    wait_until(lambda: plugin._core.status()["reconnects"] == 1, timeout=15, what="reconnect")
    time.sleep(0.3)
    plugin.mqtt_publish(f"{base}cmd", "after", retained=False)
    assert rec.wait(1)[0][1] == b"after"


def test_dispatch_overflow_is_counted_and_logged(env, caplog):
    plugin, _, base = env
    release = threading.Event()
    plugin.mqtt_subscribe(f"{base}flood", lambda *a, **k: release.wait(10))
    time.sleep(0.2)
    for i in range(10_300):
        plugin.mqtt_publish(f"{base}flood", str(i), retained=False)
    wait_until(lambda: plugin._core.status()["dispatch_dropped"] > 0, what="dispatch drops")
    wait_until(
        lambda: [r for r in caplog.records if "not keeping up" in r.getMessage()],
        what="the overflow log line",
    )
    release.set()


def test_dispatch_queue_is_bounded_in_bytes_too(plugin_factory, session_broker, caplog):
    # 100 snapshots of 1 MiB for a callback that is stuck: 64 MiB wait, the rest are dropped.
    base = unique_base()
    plugin = plugin_factory(settings_for(session_broker, base))
    release = threading.Event()
    got = []

    def stuck(topic, payload, *args, **kwargs):
        release.wait(20)
        got.append(int.from_bytes(payload[:4], "big"))

    plugin.mqtt_subscribe(f"{base}snap", stuck)
    time.sleep(0.2)
    for i in range(100):
        blob = i.to_bytes(4, "big") + bytes(1024 * 1024 - 4)
        plugin.mqtt_publish(f"{base}snap", blob, retained=False, raw_data=True)
        if i % 10 == 9:
            # Paced: the outgoing queue has a 64 MiB bound of its own.
            wait_until(lambda: plugin._core.status()["queue_depth"] == 0, 30, "sent")
    status = wait_until(
        lambda: (s := plugin._core.status())["received"] == 100 and s, 30, "100 received"
    )
    assert status["dispatch_dropped"] == 36, status
    assert [r for r in caplog.records if "or 64 MiB waiting" in r.getMessage()]
    release.set()
    wait_until(lambda: len(got) == 64, 30, "the 64 kept")
    assert got == list(range(64))


def test_before_the_first_settings_only_queueable_messages_are_kept(
    plugin_factory, session_broker, subscriber_factory
):
    # Consumers may publish before this plugin read its settings: what they are told holds.
    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    plugin = plugin_factory()
    assert plugin.mqtt_publish(f"{base}live", "x") is False
    assert plugin.mqtt_publish(f"{base}kept", "y", allow_queueing=True) is True
    plugin._core.configure(settings_for(session_broker, base))
    assert sub.wait_for(f"{base}kept").payload == b"y"
    sub.wait_for(f"{base}mqtt")
    time.sleep(0.3)
    assert sub.messages(f"{base}live") == []


# ~~ errors the plugin logs once


def test_the_memory_of_logged_errors_is_bounded(
    plugin_factory, session_broker, subscriber_factory, caplog
):
    # A flood of events whose names make invalid topics: each distinct error is logged once,
    # but only the most recent are remembered.
    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    plugin = plugin_factory(settings_for(session_broker, base))
    plugin._logger = logging.getLogger("octoprint.plugins.mqtt")
    bound = 100  # the distinct errors remembered (plugin.py)
    for i in range(2000):
        plugin.on_event(f"Bad+{i}", None)
    assert len(plugin._reported_errors) <= bound
    logged = log_lines(caplog, "Bad+")
    assert len(logged) == 2000 and "Bad+1999" in logged[-1]
    # A recent one is still remembered: not logged again.
    plugin.on_event("Bad+1999", None)
    assert len(log_lines(caplog, "Bad+")) == 2000
    # Forgotten ones are logged again, once.
    plugin.on_event("Bad+0", None)
    plugin.on_event("Bad+0", None)
    assert len(log_lines(caplog, 'Bad+0"')) == 2
    assert len(plugin._reported_errors) <= bound
    plugin.on_event("Fine", None)
    assert json.loads(sub.wait_for(f"{base}event/Fine").payload)["_event"] == "Fine"
