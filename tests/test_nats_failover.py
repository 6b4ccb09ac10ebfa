"""Failover on a real distributed broker: a 3-node NATS cluster (support/nats_env.py), the plugin
given all three MQTT addresses, a persistent session (`clean_session: false`, a client id of its
own). The node it is connected to is SIGKILLed in the middle of a QoS 1 stream: the plugin moves
to another node, every message arrives, and its subscriptions live on in the cluster's session.

Which node dies matters to NATS itself. When it led the JetStream meta group or the stream that
holds the MQTT sessions, no node accepts a persistent session until the survivors have elected
a new leader (5 to 8 s here, NATS's fixed election timeouts). The test kills that node, the
worst case, and gives the plugin 10 s from the moment the cluster has its leaders again.
"""

from __future__ import annotations

import threading
import time

import pytest
from support.corekit import settings_for, unique_base, wait_until
from support.nats_env import wait_while_arriving

TOTAL = 5_000


def farm_settings(first, others, base: str) -> dict:
    return settings_for(
        first,
        base,
        broker={
            "failover": [n.address for n in others],
            "clean_session": False,
            # NATS speaks MQTT 3.1.1 only.
            "protocol": "MQTTv311",
        },
        client={"client_id": f"farm-{base[:-1]}"},
    )


def recovered_at(cluster, killed) -> float | None:
    """When the survivors had a leader for the meta group and every MQTT stream again (None
    within 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            leaders = cluster.leaders()
        except OSError:
            leaders = {}
        wanted = ("meta", "$MQTT_sess", "$MQTT_msgs", "$MQTT_rmsgs")
        if all(leaders.get(k) not in (None, killed.name) for k in wanted):
            return time.monotonic()
        time.sleep(0.1)
    return None


@pytest.mark.timeout(300)
def test_killing_the_connected_node_loses_no_qos1_message_and_keeps_the_session(
    nats_cluster, plugin_factory, subscriber_factory, caplog
):
    # The worst case: the node the plugin is on leads the stream that holds the sessions.
    leaders = nats_cluster.leaders()
    first = nats_cluster.node(leaders["$MQTT_sess"])
    second, third = (n for n in nats_cluster.nodes if n is not first)
    base = unique_base()
    # The watcher is on a node that stays up, with a session of its own.
    sub = subscriber_factory(
        third.host, third.port, f"{base}#", client_id=f"watcher-{base[:-1]}", clean_session=False
    )
    plugin = plugin_factory(farm_settings(first, (second, third), base))
    assert plugin._core.status()["broker"] == first.address
    sub.wait_for(f"{base}mqtt", 20, lambda m: m.payload == b"connected")

    commands: list[bytes] = []
    heard = threading.Condition()

    def on_command(topic, payload, *args, **kwargs):
        with heard:
            commands.append(payload)
            heard.notify_all()

    plugin.mqtt_subscribe(f"{base}command", on_command, qos=1)
    # The subscription works before the kill (published on another node).
    wait_until(
        lambda: sub.publish(f"{base}command", b"before", qos=1) and b"before" in commands,
        20,
        "a command before the kill",
        interval=1.0,
    )

    def publish_all():
        for i in range(TOTAL):
            # Not retained: NATS writes each retained message to a stream of its own first,
            # ten times slower (docs/farms.md).
            assert plugin.mqtt_publish(
                f"{base}seq", str(i), retained=False, qos=1, allow_queueing=True
            )
            if i % 50 == 0:
                time.sleep(0.02)  # a print's pace, roughly, not a flood

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    wait_until(lambda: len(sub.messages(f"{base}seq")) > TOTAL // 3, 60, "a third delivered")
    connected_before = len(sub.messages(f"{base}mqtt"))
    first.kill()
    killed = time.monotonic()
    recovery: list[float | None] = []
    watcher = threading.Thread(target=lambda: recovery.append(recovered_at(nats_cluster, first)))
    watcher.start()
    publisher.join(60)
    assert not publisher.is_alive()

    # The status topic says `connected` again (published by the plugin on its new node).
    back = sub.wait_for(
        f"{base}mqtt", 30, lambda m: m.payload == b"connected" and m.received_at > killed
    )
    took = back.received_at - killed
    watcher.join(60)
    cluster_back = recovery[0]
    assert cluster_back is not None, "the cluster never elected new leaders"
    # Until NATS has new leaders no client gets its session back; from then on, 10 s at most.
    assert back.received_at - cluster_back < 10, (took, cluster_back - killed)
    status = plugin._core.status()
    assert status["state"] == "connected" and status["broker"] in (second.address, third.address)
    assert len(sub.messages(f"{base}mqtt")) > connected_before

    def missing() -> list[int]:
        return sorted(set(range(TOTAL)) - {int(m.payload) for m in sub.messages(f"{base}seq")})

    # NATS stores every QoS 1 message in a replicated stream before it is delivered: a few
    # hundred a second on a 2-core machine running three nodes. So the rule is progress, not a
    # deadline: failing only once nothing has arrived for 30 s.
    wait_while_arriving(lambda: TOTAL - len(missing()), TOTAL, stall=30)
    left = missing()
    if left:
        pytest.fail(f"{len(left)} of {TOTAL} never arrived, e.g. {left[:10]}; {status}")
    seq = sub.messages(f"{base}seq")
    print(
        f"{TOTAL} in {seq[-1].received_at - seq[0].received_at:.1f} s,"
        f" {len(seq) - TOTAL} duplicates"
    )
    after = plugin._core.status()
    # Elections close connections too, but nothing is refused for it.
    assert after["dropped"] == 0 and after["rejected"] == 0, after

    # The subscription made before the kill still receives (the session kept it, and the
    # plugin renews its subscriptions at every connect anyway).
    wait_until(
        lambda: sub.publish(f"{base}command", b"after", qos=1) and b"after" in commands,
        20,
        "a command after the kill",
        interval=1.0,
    )
    print(
        f"killed {first.name} (leaders: {leaders}); cluster leaders again after"
        f" {cluster_back - killed:.1f} s, `connected` after {took:.1f} s"
    )
    assert f"trying {second.address} now" in caplog.text or f"trying {third.address}" in (
        caplog.text
    )


@pytest.mark.timeout(120)
def test_a_message_the_broker_closes_the_connection_for_is_dropped_after_three_tries(
    nats_cluster, core_factory, subscriber_factory, caplog
):
    # NATS ends the connection of a client that publishes on a topic holding a '.': sent again
    # after every reconnect, that message would hold up everything behind it for ever.
    node = nats_cluster.nodes[0]
    base = unique_base()
    sub = subscriber_factory(node.host, node.port, f"{base}#")
    core = core_factory(settings_for(node, base, broker={"protocol": "MQTTv311"}))
    wait_until(lambda: core.status()["state"] == "connected", 20, "connected")
    assert core.publish(f"{base}file.gcode", "x", False, 1, True)
    for i in range(5):
        assert core.publish(f"{base}after", str(i), False, 1, True)
    got = wait_until(
        lambda: len(sub.messages(f"{base}after")) >= 5 and sub.messages(f"{base}after"),
        60,
        "the rest",
    )
    assert [m.payload for m in got][:5] == [b"0", b"1", b"2", b"3", b"4"]
    status = wait_until(lambda: (s := core.status())["state"] == "connected" and s, 20, "connected")
    assert status["rejected"] == 1 and status["queue_depth"] == 0, status
    told = [
        r.getMessage() for r in caplog.records if "closed the connection 3 times" in r.getMessage()
    ]
    assert len(told) == 1 and f'"{base}file.gcode"' in told[0], told
