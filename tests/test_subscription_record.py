"""The one record of subscriptions against a real broker: registrations are atomic, broker
commands follow registry changes in order, and the broker's QoS follows the subscribers."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from support.corekit import settings_for, unique_base, wait_state, wait_until


class SlowEq:
    """A callback whose `==` is Python code that lets other threads run (as `__eq__` of a
    plugin's own callable object may)."""

    def __init__(self, name):
        self.name = name
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, topic, payload, *args, **kwargs):
        with self.lock:
            self.calls.append((topic, payload, kwargs.get("qos")))

    def __eq__(self, other):
        time.sleep(0.02)
        return isinstance(other, SlowEq) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


def publish_from_outside(broker, topic, payload, qos=1):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=qos).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def connected(core_factory, session_broker):
    """A connected core under a base topic of its own: (core, base)."""
    base = unique_base()
    core = core_factory(settings_for(session_broker, base))
    wait_state(core, "connected")
    return core, base


@pytest.mark.timeout(60)
def test_the_same_callback_registered_from_many_threads_at_once_is_called_once(
    connected, session_broker
):
    core, base = connected
    # A first registration, so that every later one compares (slowly) against it.
    core.subscribe(f"{base}a", SlowEq("first"))
    same = [SlowEq("dup") for _ in range(8)]
    threads = [threading.Thread(target=core.subscribe, args=(f"{base}a", cb)) for cb in same]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    time.sleep(0.3)
    publish_from_outside(session_broker, f"{base}a", b"once")
    wait_until(lambda: any(cb.calls for cb in same), what="a delivery")
    time.sleep(0.5)
    assert sum(len(cb.calls) for cb in same) == 1, [len(cb.calls) for cb in same]


@pytest.mark.timeout(60)
def test_the_brokers_qos_follows_the_highest_remaining_subscriber(connected, session_broker):
    core, base = connected
    high, low = SlowEq("high"), SlowEq("low")
    core.subscribe(f"{base}q", high, qos=1)
    core.subscribe(f"{base}q", low, qos=0)
    time.sleep(0.3)
    publish_from_outside(session_broker, f"{base}q", b"1")
    wait_until(lambda: low.calls, what="the first delivery")
    assert low.calls[-1][2] == 1  # delivered at the subscription's QoS 1
    core.unsubscribe(high)
    time.sleep(0.5)  # the broker took the new SUBSCRIBE
    publish_from_outside(session_broker, f"{base}q", b"2")
    wait_until(lambda: len(low.calls) == 2, what="the second delivery")
    assert low.calls[-1][2] == 0, low.calls


@pytest.mark.timeout(90)
def test_subscribe_and_unsubscribe_racing_leave_the_broker_with_what_the_registry_says(
    connected, session_broker
):
    core, base = connected
    topic = f"{base}r"

    def churn(n):
        cb = SlowEq(f"c{n}")
        for _ in range(15):
            core.subscribe(topic, cb)
            core.unsubscribe(cb)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    time.sleep(0.5)
    received = core.status()["received"]
    publish_from_outside(session_broker, topic, b"nobody listens")
    time.sleep(1)
    # Unsubscribed at the broker, not just filtered here.
    assert core.status()["received"] == received


@pytest.mark.timeout(60)
def test_a_filter_subscribed_while_connecting_gets_its_retained_message_once(
    core_factory, session_broker
):
    # A subscription made just as the connection comes up is in the registry when the connect
    # subscribes everything, and its own SUBSCRIBE follows: sent twice, the broker delivers the
    # retained message twice (a consumer plugin saw a retained command twice).
    base = unique_base()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect(session_broker.host, session_broker.port)
    publisher.loop_start()
    topics = [f"{base}cmd/{i}" for i in range(40)]
    for t in topics:
        publisher.publish(t, b"on", qos=1, retain=True).wait_for_publish(5)
    publisher.loop_stop()
    publisher.disconnect()
    for round_ in range(5):
        got: list[str] = []
        core = core_factory()
        core.configure(settings_for(session_broker, base))
        # Subscribing all along the connect, so that some land right as it happens.
        for t in topics:
            core.subscribe(t, lambda topic, payload, got=got, **kw: got.append(topic))
            time.sleep(0.0005)
        wait_state(core, "connected")
        wait_until(lambda got=got: len(set(got)) == len(topics), 10, "every retained message")
        time.sleep(0.3)
        twice = sorted(t for t in set(got) if got.count(t) > 1)
        assert not twice, f"round {round_}: delivered more than once: {twice}"
        core.stop(1.0)
