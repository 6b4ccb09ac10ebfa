"""The settings tree other plugins read with its defaults (docs/behaviour.md, settings
tree): key names, values and types are public API, so they are compared with the contract's
table as written."""

from __future__ import annotations

from support.control import ALL_COMMANDS as CONTROL_COMMANDS

from octoprint_mqtt.plugin import settings_defaults

EVENT_CLASSES = (
    "server comm files printjob gcode position timelapse slicing settings unclassified".split()
)

# docs/behaviour.md, settings tree, key by key.
CONTRACT = {
    "broker.url": None,
    "broker.port": 1883,
    "broker.username": None,
    "broker.password": None,
    "broker.keepalive": 60,
    "broker.tls_active": False,
    "broker.tls_insecure": False,
    "broker.protocol": "MQTTv311",
    "broker.retain": True,
    "broker.lwRetain": True,
    "broker.clean_session": True,
    "client.client_id": None,
    "publish.baseTopic": "octoprint/",
    "publish.eventTopic": "event/{event}",
    "publish.eventActive": True,
    **{f"publish.events.{c}": True for c in EVENT_CLASSES},
    "publish.printerData": False,
    "publish.progressTopic": "progress/{progress}",
    "publish.progressActive": True,
    "publish.temperatureTopic": "temperature/{temp}",
    "publish.temperatureActive": True,
    "publish.temperatureThreshold": 0.1,
    "publish.metadataTopic": "metadata/{key}",
    "publish.metadataActive": False,
    "publish.metadataKeys": "",
    "publish.lwTopic": "mqtt",
    "publish.lwActive": True,
    "timestamp_fieldname": "_timestamp",
}

# Keys added since (new keys may be added, none removed or renamed).
ADDED = {
    "broker.transport": "tcp",
    "broker.ws_path": "/mqtt",
    "broker.failover": [],
    "publish.queueWhileOffline": True,
    "publish.offlineQueueSize": 10000,
    "publish.eventExclude": [],
    "publish.temperatureInterval": 0.0,
    "publish.stateTopic": "state",
    "publish.stateActive": True,
    "publish.stateInterval": 1.0,
    "publish.stateExpiry": 0,
    "homeassistant.birthTopic": "homeassistant/status",
    "homeassistant.discovery": False,
    "homeassistant.prefix": "homeassistant",
    "homeassistant.nodeId": None,
    "control.active": False,
    "control.topic": "control/{command}",
    "control.responseTopic": "control/response",
    **{f"control.commands.{c}": False for c in CONTROL_COMMANDS},
}


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_defaults_are_the_contracts():
    flat = flatten(settings_defaults())
    for key, value in CONTRACT.items():
        assert key in flat, f"{key} missing from the defaults"
        assert flat[key] == value and type(flat[key]) is type(value), (key, flat[key], value)
    for key, value in ADDED.items():
        assert flat[key] == value, (key, flat[key])
    tls = {k for k in flat if k.startswith("broker.tls.")}
    assert tls <= {f"broker.tls.{k}" for k in ("ca_certs", "certfile", "keyfile", "ciphers")}
    unexplained = set(flat) - set(CONTRACT) - set(ADDED) - tls
    assert not unexplained, f"keys neither in the contract nor listed as added: {unexplained}"
