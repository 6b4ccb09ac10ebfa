"""Home Assistant discovery configs through the core to a real Mosquitto: what is retained
where, in which format, and that turning discovery off, another node id or prefix, and an
uninstall clear what was published. With a real Home Assistant: tests/test_homeassistant.py.
"""

from __future__ import annotations

import json

import pytest
from support.corekit import log_lines, settings_for, unique_base, wait_state, wait_until
from support.e2ekit import DISCOVERY_OBJECTS
from support.mqtt_env import read_retained

DEVICE = {
    "name": "Workshop",
    "manufacturer": "OctoPrint",
    "model": "Prusa MK3",
    "sw_version": "1.11.8",
    "configuration_url": "http://workshop.local/",
    "heaters": ["tool0", "bed"],
}
OBJECTS = DISCOVERY_OBJECTS


def configs(broker, prefix: str) -> dict[str, dict]:
    found = read_retained(broker.host, broker.port, f"{prefix}/#")
    return {t: json.loads(m.payload) for t, m in found.items()}


def core_with_discovery(core_factory, broker, **homeassistant):
    base = unique_base()
    settings = settings_for(
        broker, base, homeassistant={"discovery": True, "prefix": f"{base}ha", **homeassistant}
    )
    core = core_factory(settings)
    core.homeassistant_device(DEVICE, "octoprint-0a1b2c3d4e")
    wait_state(core, "connected")
    return core, settings, base


@pytest.mark.timeout(30)
def test_one_retained_config_per_entity(core_factory, session_broker):
    core, _, base = core_with_discovery(core_factory, session_broker)
    node = "octoprint-0a1b2c3d4e"
    wanted = {
        f"{base}ha/{component}/{node}/{obj}/config"
        for component, objects in OBJECTS.items()
        for obj in objects
    }
    found = wait_until(
        lambda: (c := configs(session_broker, f"{base}ha")) and set(c) == wanted and c,
        timeout=5,
        what="one config per entity",
    )
    unique_ids = {c["unique_id"] for c in found.values()}
    assert len(unique_ids) == len(wanted)
    for topic, c in found.items():
        assert c["state_topic"] == f"{base}state"
        assert c["availability"][0] == {
            "topic": f"{base}mqtt",
            "payload_available": "connected",
            "payload_not_available": "disconnected",
        }
        assert c["availability_mode"] == "all"
        assert c["device"] == {
            "identifiers": [node],
            "name": "Workshop",
            "manufacturer": "OctoPrint",
            "model": "Prusa MK3",
            "sw_version": "1.11.8",
            "configuration_url": "http://workshop.local/",
        }
        assert "object_id" not in c
        assert "Workshop" not in c["name"], "names do not repeat the device name"
        assert c["unique_id"] == f"{node}_{topic.split('/')[-2]}"
    by_object = {t.split("/")[-2]: c for t, c in found.items()}
    assert by_object["connected"]["device_class"] == "connectivity"
    assert by_object["printing"]["device_class"] == "running"
    assert by_object["progress"]["unit_of_measurement"] == "%"
    assert by_object["print_time_left"]["device_class"] == "duration"
    assert by_object["estimated_finish"]["device_class"] == "timestamp"
    assert by_object["bed_target"]["device_class"] == "temperature"
    assert core.homeassistant_status()["entities"] == len(wanted)


@pytest.mark.timeout(40)
def test_changes_clear_what_was_published(core_factory, session_broker):
    core, settings, base = core_with_discovery(core_factory, session_broker)
    prefix = f"{base}ha"
    wait_until(lambda: len(configs(session_broker, prefix)) == 12, timeout=5, what="12 configs")

    settings["homeassistant"]["nodeId"] = "workshop"
    core.configure(settings)
    wait_until(
        lambda: (
            (c := configs(session_broker, prefix))
            and all("/workshop/" in t for t in c)
            and len(c) == 12
        ),
        timeout=5,
        what="only the new node id's configs retained",
    )

    settings["homeassistant"]["prefix"] = f"{base}other"
    core.configure(settings)
    wait_until(
        lambda: (
            not configs(session_broker, prefix)
            and len(configs(session_broker, f"{base}other")) == 12
        ),
        timeout=5,
        what="the configs moved to the new prefix",
    )

    single = {**DEVICE, "heaters": ["tool0"]}
    core.homeassistant_device(single, "octoprint-0a1b2c3d4e")
    wait_until(
        lambda: len(configs(session_broker, f"{base}other")) == 10,
        timeout=5,
        what="the bed's sensors cleared",
    )

    settings["homeassistant"]["discovery"] = False
    core.configure(settings)
    wait_until(
        lambda: not configs(session_broker, f"{base}other"),
        timeout=5,
        what="every config cleared",
    )
    assert core.homeassistant_status()["off"] == "setting"


@pytest.mark.timeout(30)
def test_uninstall_clears_and_keeps_it_off(core_factory, session_broker):
    core, settings, base = core_with_discovery(core_factory, session_broker)
    prefix = f"{base}ha"
    wait_until(lambda: len(configs(session_broker, prefix)) == 12, timeout=5, what="12 configs")
    assert core.homeassistant_uninstall() == 12
    wait_until(lambda: not configs(session_broker, prefix), timeout=5, what="all cleared")
    core.configure(settings)
    core.homeassistant_device(DEVICE, "octoprint-0a1b2c3d4e")
    assert core.homeassistant_status()["off"] == "uninstalling"
    assert not configs(session_broker, prefix)


@pytest.mark.timeout(30)
def test_other_plugin_or_no_state_topic_keep_it_off(core_factory, session_broker):
    base = unique_base()
    settings = settings_for(
        session_broker, base, homeassistant={"discovery": True, "prefix": f"{base}ha"}
    )
    core = core_factory(settings)
    wait_state(core, "connected")
    assert core.homeassistant_device(DEVICE, "n", "OctoPrint-HomeAssistant") == 0
    status = core.homeassistant_status()
    assert (status["off"], status["other_plugin"]) == ("other_plugin", "OctoPrint-HomeAssistant")
    assert core.homeassistant_device(DEVICE, "n") == 12
    settings["publish"]["stateActive"] = False
    core.configure(settings)
    assert core.homeassistant_status() | {"topics": None} == {
        "node_id": "n",
        "entities": 0,
        "off": "no_state_topic",
        "other_plugin": None,
        "topics": None,
    }
    wait_until(lambda: not configs(session_broker, f"{base}ha"), timeout=5, what="cleared")


@pytest.mark.timeout(30)
def test_unusable_settings_fall_back_with_a_warning(core_factory, broker, caplog):
    # A broker of its own: the fallback prefix is the shared "homeassistant".
    base = unique_base()
    core = core_factory(
        settings_for(
            broker,
            base,
            homeassistant={
                "discovery": True,
                "nodeId": "my printer",
                "prefix": "ha/#",
                "birthTopic": "ha/+",
            },
        )
    )
    core.homeassistant_device(DEVICE, "generated-1")
    status = core.homeassistant_status()
    assert status["node_id"] == "generated-1"
    warnings = log_lines(caplog, "plugins.mqtt.homeassistant.")
    assert any("nodeId" in w and "using the id generated" in w for w in warnings), warnings
    assert any("prefix" in w and 'using "homeassistant"' in w for w in warnings), warnings
    assert any("birthTopic" in w and 'using "homeassistant/status"' in w for w in warnings)


@pytest.mark.timeout(40)
def test_every_broker_gets_the_configs(core_factory, broker_factory):
    """Configs are not queued: each connect publishes those in force, so a broker set later
    (the plugin idle until then) and a broker changed to both get them."""
    first, second = broker_factory(), broker_factory()
    base = unique_base()
    homeassistant = {"discovery": True, "prefix": f"{base}ha"}
    idle = {"broker": {"url": ""}, "publish": {"baseTopic": base}, "homeassistant": homeassistant}
    core = core_factory(idle)
    core.homeassistant_device(DEVICE, "octoprint-0a1b2c3d4e")
    wait_state(core, "idle")
    assert core.status()["refused"] == 0, "nothing offered while offline"
    for b in (first, second):
        core.configure(settings_for(b, base, homeassistant=homeassistant))
        wait_until(
            lambda b=b: len(configs(b, f"{base}ha")) == 12,
            timeout=10,
            what=f"12 configs at {b.port}",
        )
