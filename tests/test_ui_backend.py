"""What the settings page relies on, below the browser: the one-shot connection test against
real brokers (each outcome in words, the live connection untouched), the status pushes and
their throttle, the checks of saved values and the stored-password rule of the test API.
"""

from __future__ import annotations

import time

import pytest
from corekit import connected_core, settings_for, unique_base, wait_state, wait_until

# The TLS brokers and certificates of the TLS tests, reused as they are.
from test_tls import WRONG_NAME, certs, tls_broker, tls_settings  # noqa: F401

from octoprint_mqtt._core import test_connection as probe
from octoprint_mqtt.status_push import StatusPusher

USER, PASSWORD = "printer", "right-pw-T5q2"


@pytest.fixture
def password_broker(password_broker_factory):
    return password_broker_factory(USER, PASSWORD)


def with_user(b, password, **broker):
    return settings_for(b, broker={"username": USER, "password": password, **broker})


# --------------------------------------------------------------------------
# Test connection
# --------------------------------------------------------------------------


def test_each_outcome_in_words(password_broker):
    b = password_broker
    ok = probe(with_user(b, PASSWORD))
    assert ok["ok"] is True, ok
    assert ok["reason"] == f"connected to {b.host}:{b.port} with MQTT 3.1.1"
    assert ok["broker"] == f"{b.host}:{b.port}" and ok["elapsed"] < 2

    v5 = probe(with_user(b, PASSWORD, protocol="MQTTv5"))
    assert v5["ok"] and v5["reason"].endswith("with MQTT 5"), v5

    refused = probe(with_user(b, "wrong"))
    assert refused["ok"] is False
    assert refused["reason"] == "the broker refused the connection: not authorised", refused
    refused5 = probe(with_user(b, "wrong", protocol="MQTTv5"))
    # Mosquitto 2.0 answers "not authorised" to a bad password in both protocols.
    assert refused5["reason"] == refused["reason"], refused5

    dns = probe(settings_for(b, broker={"url": "no-such-host.invalid"}))
    assert dns["reason"].startswith("cannot resolve the broker's host name"), dns

    nothing = probe({"broker": {"url": "127.0.0.1", "port": b.port + 1 if b.port < 65535 else 1}})
    assert nothing["reason"].startswith("connection refused by 127.0.0.1:"), nothing

    assert probe({})["reason"].startswith("no broker host is set")
    # Read as the live connection reads it: the default port, and a warning saying so.
    far = probe(settings_for(b, broker={"port": 70000}))
    assert far["broker"].endswith(":1883") and "65535" in far["warnings"][0], far


def test_a_silent_broker_times_out_within_the_limit(broker):
    broker.pause()  # the kernel still accepts the TCP connection; nobody answers
    started = time.monotonic()
    out = probe(settings_for(broker), 1.0)
    elapsed = time.monotonic() - started
    assert out["ok"] is False
    assert (
        out["reason"]
        == f"timed out connecting to {broker.host}:{broker.port} (no answer within 1 s)"
    )
    assert 0.9 < elapsed < 2.5, elapsed


def test_tls_name_mismatch(tls_broker, certs):  # noqa: F811
    tb = tls_broker(certs.server_wrong_name)
    out = probe(tls_settings(tb, ca=certs.ca))
    assert not out["ok"] and out["reason"].startswith(WRONG_NAME), out
    good = probe(tls_settings(tb, ca=certs.ca, insecure=True))
    assert good["ok"], good


def test_the_live_connection_is_not_touched(core_factory, session_broker, subscriber_factory):
    # Same client id as the live client: the broker would drop one of them if the test used it.
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, client={"client_id": "printer-7"}
    )
    settings = settings_for(session_broker, base, client={"client_id": "printer-7"})
    for _ in range(3):
        assert probe(settings)["ok"]
    time.sleep(0.5)
    status = core.status()
    assert status["state"] == "connected" and status["reconnects"] == 0, status
    # No `disconnected` (no last will, no status message) and no second `connected`.
    assert [m.payload for m in sub.messages(f"{base}mqtt")] == [b"connected"]
    assert "printer-7-test" in session_broker.log_text()


# --------------------------------------------------------------------------
# Status pushes
# --------------------------------------------------------------------------


class Recorder:
    """Collects what the pusher sends, with the time it was sent."""

    def __init__(self):
        self.sent = []

    def __call__(self, status):
        self.sent.append((time.monotonic(), dict(status)))

    def states(self):
        return [s["state"] for _, s in self.sent]


def test_state_changes_are_pushed_at_once(core_factory, broker):
    core = core_factory()
    rec = Recorder()
    pusher = StatusPusher(core, rec, interval=1.0)
    pusher.start()
    try:
        wait_until(lambda: rec.sent, 2, "the first status")
        core.configure(settings_for(broker))
        wait_until(lambda: "connected" in rec.states(), 5, "connected pushed")
        broker.stop()
        stopped_at = time.monotonic()
        wait_until(lambda: rec.states()[-1] == "backing_off", 5, "backing_off pushed")
        assert rec.sent[-1][0] - stopped_at < 1.0
        assert rec.sent[-1][1]["last_error"]
        broker.start()
        wait_state(core, "connected", timeout=10)
        wait_until(lambda: rec.states()[-1] == "connected", 2, "back to connected pushed")
    finally:
        pusher.stop(timeout=2)


def test_counter_updates_are_throttled(core_factory, session_broker):
    core = core_factory(settings_for(session_broker, unique_base()))
    wait_state(core, "connected")
    rec = Recorder()
    pusher = StatusPusher(core, rec, interval=1.0)
    pusher.start()
    try:
        wait_until(lambda: rec.sent, 2, "the first status")
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # events all the time for 3 s
            for _ in range(50):
                core.publish_event("Dwelling", {"n": 1})
            time.sleep(0.01)
        time.sleep(1.5)
    finally:
        pusher.stop(timeout=2)
    during = [t for t, _ in rec.sent if t > started]
    # About one per second while counters move, and the final count after they stopped.
    assert 2 <= len(during) <= 6, during
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert all(g > 0.9 for g in gaps), gaps
    assert rec.sent[-1][1]["published"] == core.status()["published"]


# --------------------------------------------------------------------------
# Saved values and the stored password
# --------------------------------------------------------------------------


def test_bad_values_are_named_and_good_ones_pass():
    from octoprint_mqtt import validation
    from octoprint_mqtt.plugin import settings_defaults

    merged = settings_defaults()
    bad = {
        "broker": {"port": "70000", "keepalive": -1, "url": "mqtt://host"},
        "publish": {
            "eventTopic": "event/+/{event}",
            "offlineQueueSize": "many",
            "temperatureThreshold": -1,
        },
    }
    found = validation.problems(bad, merged)
    assert set(found) == {
        ("broker", "port"),
        ("broker", "keepalive"),
        ("broker", "url"),
        ("publish", "eventTopic"),
        ("publish", "offlineQueueSize"),
        ("publish", "temperatureThreshold"),
    }, found
    assert "wildcard" in found[("publish", "eventTopic")] or "+" in found[("publish", "eventTopic")]
    assert validation.problems({"publish": {"baseTopic": "a/#/"}}, merged)
    good = {"broker": {"port": "1884", "url": "mqtt.local"}, "publish": {"baseTopic": "x/"}}
    assert validation.problems(good, merged) == {}
    validation.drop(bad, found)
    assert bad == {"broker": {}, "publish": {}}
    typed = {
        "broker": {"port": " 1884", "keepalive": "60"},
        "publish": {"temperatureThreshold": "0.5"},
    }
    validation.normalise(typed)
    assert typed == {
        "broker": {"port": 1884, "keepalive": 60},
        "publish": {"temperatureThreshold": 0.5},
    }


def test_the_saved_password_goes_only_to_its_own_broker():
    from octoprint_mqtt.api import settings_to_test

    stored = {"broker": {"url": "10.0.0.5", "port": 1883, "username": "u", "password": "s3cret"}}
    same = settings_to_test(stored, {"broker": {"url": "10.0.0.5", "port": "1883", "password": ""}})
    assert same["broker"]["password"] == "s3cret"
    elsewhere = settings_to_test(stored, {"broker": {"url": "evil.example", "password": ""}})
    assert elsewhere["broker"]["password"] is None
    other_user = settings_to_test(stored, {"broker": {"username": "v", "password": None}})
    assert other_user["broker"]["password"] is None
    typed = settings_to_test(stored, {"broker": {"url": "evil.example", "password": "typed"}})
    assert typed["broker"]["password"] == "typed"
    assert stored["broker"]["password"] == "s3cret"
    # The same host, port and user, reached another way: no saved password either.
    for change in [
        {"tls_active": True},
        {"transport": "websockets"},
    ]:
        other_way = settings_to_test(stored, {"broker": {**change, "password": ""}})
        assert other_way["broker"]["password"] is None, change
    saved_tls = {"broker": {**stored["broker"], "tls_active": True, "tls": {"ca_certs": "/ca"}}}
    for change in [{"tls": {"ca_certs": "/mine.pem"}}, {"tls_insecure": True}]:
        other_way = settings_to_test(saved_tls, {"broker": {**change, "password": ""}})
        assert other_way["broker"]["password"] is None, change
    # TLS files do not matter while TLS is off: they are not used.
    files_only = settings_to_test(stored, {"broker": {"tls": {"ca_certs": "/x"}, "password": ""}})
    assert files_only["broker"]["password"] == "s3cret"
    saved_ws = {"broker": {**stored["broker"], "transport": "websockets", "ws_path": "/mqtt"}}
    other_path = settings_to_test(saved_ws, {"broker": {"ws_path": "/other", "password": ""}})
    assert other_path["broker"]["password"] is None
    # The path as the connection reads it: "mqtt" is "/mqtt".
    same_path = settings_to_test(saved_ws, {"broker": {"ws_path": "mqtt", "password": ""}})
    assert same_path["broker"]["password"] == "s3cret"
