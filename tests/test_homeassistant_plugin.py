"""End to end with the real OctoPrint-HomeAssistant plugin (3.7.0, the published source from
../shared/thirdparty/), pip-installed into the suite's virtualenv and loaded next to ours.

It is the best-known consumer of the MQTT helpers: it reads our settings tree for its topics,
publishes 25 retained discovery configs through mqtt_publish, subscribes to our status
topic and to its control topics through mqtt_subscribe, and publishes its discovery again
whenever it sees `connected` on our status topic.
"""

from __future__ import annotations

import re
import time

import paho.mqtt.publish as publish
import pytest
import yaml
from support.e2ekit import BASE, STATUS_TOPIC, assert_no_traceback, broker_settings, wait_until
from support.homeassistant import (
    DISCOVERY_PREFIX,
    decode_configs,
    enabled_config,
    node_id,
    start_octoprint,
    topics_of,
)
from support.mqtt_env import read_retained
from support.octoprint_env import HOMEASSISTANT_PLUGIN, deep_merge

DISCOVERY = f"{DISCOVERY_PREFIX}/#"
# Its defaults, used when our settings tree lacks a key: the classic plugin's base topic.
ITS_OWN_BASE = "octoPrint/"
# With the virtual printer's default profile (one extruder, no heated chamber), no PSU Control
# and no snapshot URL: 18 sensors and 7 controls.
CONFIG_COUNT = 25
# Mosquitto's log line for a retained QoS 0 discovery config from our client.
CONFIG_PUBLISHED = re.compile(
    rf"Received PUBLISH from octoprint-mqtt-\S+ \(d0, q0, r1, m\d+, '({DISCOVERY_PREFIX}/[^']+)'"
)


def wait_discovery_done(sub, timeout: float = 30.0) -> None:
    """Its startup publishes the printer's connection state right after the discovery configs,
    through the same ordered connection: once that arrives, the broker retains them all. The
    topic is matched under any base, so a wrong base shows up as the assertion's, not a
    timeout."""
    sub.wait_for("+/hass/Connected", timeout=timeout)


def retained_configs(broker) -> dict[str, dict]:
    return decode_configs(read_retained(broker.host, broker.port, DISCOVERY).values())


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_its_availability_topic_is_ours(
    homeassistant_installed, broker, subscriber_factory, octoprint_factory
):
    sub = subscriber_factory(broker.host, broker.port)
    # Only the broker is stored for us, nothing for it: both read defaults, as on a fresh install.
    octoprint = start_octoprint(octoprint_factory, broker_settings(broker))
    wait_discovery_done(sub)
    # What it stored is only the ids it made up for itself.
    stored = octoprint.read_config()["plugins"][HOMEASSISTANT_PLUGIN]
    assert set(stored) <= {"unique_id", "node_id", "_config_version"}, stored

    configs = retained_configs(broker)
    node = node_id(octoprint)
    assert len(configs) == CONFIG_COUNT, sorted(configs)
    for topic, config in configs.items():
        assert re.fullmatch(rf"{DISCOVERY_PREFIX}/\w+/{node}_\w+/config", topic), topic
        assert config["~"] == BASE, (topic, config)
        # Its own availability entry comes last, after any of the sensor's own.
        availability = config["avty"][-1]
        assert topics_of(config)[f"avty[{len(config['avty']) - 1}]"] == STATUS_TOPIC, config
        assert availability["pl_avail"] == "connected", config
        assert availability["pl_not_avail"] == "disconnected", config
        for key, named in topics_of(config).items():
            assert named.startswith(BASE), (topic, key, named)

    # The topics our plugin publishes, as its sensors name them: our templates, our base.
    def state_topic(suffix: str) -> str:
        return topics_of(configs[f"{DISCOVERY_PREFIX}/sensor/{node}_{suffix}/config"])["stat_t"]

    assert state_topic("EVENT") == f"{BASE}event/+"
    assert state_topic("PRINTING_P") == f"{BASE}progress/printing"
    assert state_topic("SLICING_P") == f"{BASE}progress/slicing"
    assert state_topic("TOOL0") == f"{BASE}temperature/tool0"
    assert state_topic("BED") == f"{BASE}temperature/bed"

    # It subscribed to our status topic (and nothing under its own base), and what it
    # published outside discovery went under our base too.
    log = broker.log_text()
    assert re.search(rf"^\S+: \t{re.escape(STATUS_TOPIC)} \(QoS \d\)$", log, re.M), log[-3000:]
    assert ITS_OWN_BASE not in log, log[-3000:]
    assert not [m for m in sub.messages() if m.topic.startswith(ITS_OWN_BASE)]
    assert sub.wait_for(f"{BASE}hass/Connected").payload == b"Disconnected"
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_goodbye_is_clean_with_the_plugin_loaded(
    homeassistant_installed, broker, subscriber_factory, octoprint_factory
):
    # Its subscriptions include our status topic, so the broker is sending our own goodbye
    # back to us while we close: the case where an unread socket used to end in a reset and
    # the broker's last will (test_shutdown.py has it without OctoPrint).
    status = subscriber_factory(broker.host, broker.port, STATUS_TOPIC)
    discovery = subscriber_factory(broker.host, broker.port, "+/hass/Connected")
    octoprint = start_octoprint(octoprint_factory, broker_settings(broker), start=False)
    # A round takes 5 s here, 9 s on a busy machine (the first one more: it creates the
    # basedir); the reset happened in some rounds only, so as many as fit in a minute or so.
    rounds = 10
    for round_ in range(rounds):
        started = time.monotonic()
        discovery.clear()
        octoprint.start()
        wait_discovery_done(discovery)
        status.wait_for(STATUS_TOPIC, predicate=lambda m: m.payload == b"connected")
        up = time.monotonic() - started
        status.clear()
        took = octoprint.stop()
        assert not octoprint.running
        bye = status.wait_for(STATUS_TOPIC, predicate=lambda m: m.payload == b"disconnected")
        time.sleep(0.5)  # a last will follows the lost connection at once
        goodbyes = [m for m in status.messages(STATUS_TOPIC) if m.payload == b"disconnected"]
        assert goodbyes == [bye], f"round {round_}: {goodbyes}"
        trouble = broker_trouble(broker)
        assert not trouble, f"round {round_}:\n" + "\n".join(trouble)
        # The goodbye the broker saw, not just the absence of trouble: one DISCONNECT a round.
        disconnects = re.findall(r"Received DISCONNECT from octoprint-mqtt-", broker.log_text())
        assert len(disconnects) == round_ + 1, f"round {round_}: {broker.log_text()[-3000:]}"
        print(f"round {round_}: up in {up:.1f}s, stopped in {took:.1f}s")
    assert_no_traceback(octoprint.log_text())


def broker_trouble(broker) -> list[str]:
    """Mosquitto's lines on our clients losing their connection other than by DISCONNECT,
    and any out-of-memory line."""
    return [
        line
        for line in broker.log_text().splitlines()
        if (
            "octoprint-mqtt" in line
            and ("disconnected due to" in line or "exceeded timeout" in line)
        )
        or "out of memory" in line.lower()
    ]


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_it_announces_again_when_it_sees_connected(
    homeassistant_installed, broker, subscriber_factory, octoprint_factory
):
    """A broker restart without persistence forgets every retained config. Our plugin
    reconnects and publishes `connected` on the status topic; the Home Assistant plugin, which
    subscribed to it, publishes all its configs again."""
    octoprint, before = announced(broker, subscriber_factory, octoprint_factory)

    broker.restart()

    def all_back():
        return len(retained_configs(broker)) == CONFIG_COUNT

    wait_until(all_back, 30, lambda: f"retained again: {sorted(retained_configs(broker))}")
    assert retained_configs(broker) == before
    # Published anew, not kept: the restarted broker (its log goes on in the same file)
    # received each config once.
    since_restart = re.split(r"mosquitto version \S+ running", broker.log_text())[-1]
    republished = CONFIG_PUBLISHED.findall(since_restart)
    assert sorted(republished) == sorted(before), republished
    # Mosquitto, stopping, sends our last will to its subscribers, its callback among them:
    # ignored, only `connected` makes it announce.
    assert status_seen(octoprint).count("connected") == 3, status_seen(octoprint)
    assert_no_traceback(octoprint.log_text())


def announced(broker, subscriber_factory, octoprint_factory):
    """An OctoPrint with the plugin, its startup announcements over. Returns it and the
    retained configs."""
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = start_octoprint(octoprint_factory, broker_settings(broker))
    wait_discovery_done(sub)
    before = retained_configs(broker)
    assert len(before) == CONFIG_COUNT, sorted(before)
    # At startup it saw `connected` twice: ours, replayed as retained when it subscribed, and
    # its own, which it publishes on our status topic too. Waited for, so that a late one
    # cannot pass for the reaction to what the test does next.
    wait_until(
        lambda: status_seen(octoprint) == ["connected"] * 2, 10, lambda: str(status_seen(octoprint))
    )
    return octoprint, before


def status_seen(octoprint) -> list[str]:
    """The payloads of our status topic its callback, the one that re-announces, got so far:
    it logs the topic and then the payload, each on a line of its own."""
    lines = octoprint.log_text().splitlines()
    return [
        after.partition(" - INFO - ")[2]
        for line, after in zip(lines, lines[1:])
        if line.endswith(f" - INFO - Received MQTT message from {STATUS_TOPIC}")
    ]


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_its_configs_come_back_after_a_birth_message(
    homeassistant_installed, broker, subscriber_factory, octoprint_factory
):
    """Home Assistant restarted against a broker that lost the configs (cleared here): its
    birth message makes our plugin say `connected` again, and that makes the Home Assistant
    plugin publish all its configs anew."""
    octoprint, before = announced(broker, subscriber_factory, octoprint_factory)
    for topic in before:
        publish.single(topic, b"", retain=True, hostname=broker.host, port=broker.port)
    wait_until(lambda: not retained_configs(broker), 10, lambda: "the configs cleared")

    publish.single("homeassistant/status", "online", hostname=broker.host, port=broker.port)
    wait_until(
        lambda: len(retained_configs(broker)) == CONFIG_COUNT,
        10,
        lambda: f"retained again: {sorted(retained_configs(broker))}",
    )
    assert retained_configs(broker) == before
    assert status_seen(octoprint).count("connected") == 3, status_seen(octoprint)
    assert "Home Assistant said online" in octoprint.log_text()
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_our_configs_are_cleared_when_the_plugin_comes_while_octoprint_is_stopped(
    homeassistant_installed, broker, octoprint_factory
):
    """Our discovery on, then the Home Assistant plugin enabled while OctoPrint is stopped:
    at the next start ours stays off and clears the configs the earlier run published (it
    keeps their topics in its data folder), so no entity appears twice."""
    ours = f"{DISCOVERY_PREFIX}/+/ours_1/+/config"
    octoprint = octoprint_factory(
        broker_settings(broker, homeassistant={"discovery": True, "nodeId": "ours_1"})
    )
    wait_until(
        lambda: len(read_retained(broker.host, broker.port, ours)) == 12,
        15,
        lambda: f"our configs: {sorted(read_retained(broker.host, broker.port, ours))}",
    )
    octoprint.stop()
    config_path = octoprint.basedir / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config = deep_merge(config, enabled_config())
    config_path.write_text(yaml.safe_dump(config))
    octoprint.start()
    assert octoprint.get("/api/plugin/mqtt")["homeassistant"]["off"] == "other_plugin"
    wait_until(
        lambda: not read_retained(broker.host, broker.port, ours),
        15,
        lambda: f"still retained: {sorted(read_retained(broker.host, broker.port, ours))}",
    )
    assert decode_configs(read_retained(broker.host, broker.port, DISCOVERY).values())
    assert_no_traceback(octoprint.log_text())
