"""MQTT over WebSockets (ws and wss) against a real Mosquitto WebSocket listener."""

from __future__ import annotations

import pytest
from support.corekit import event_json, settings_for, unique_base, wait_state
from support.mqtt_env import free_port
from support.tls_certs import make_certs


def ws_broker(broker_factory, tls_lines: str = ""):
    """A broker with its plain listener (for the test's subscriber) and a WebSocket one."""
    ws_port = free_port()
    b = broker_factory(f"listener {ws_port} 127.0.0.1\nprotocol websockets\n{tls_lines}")
    return b, ws_port


@pytest.mark.parametrize("protocol", ["MQTTv311", "MQTTv5"])
def test_websockets(core_factory, broker_factory, subscriber_factory, protocol):
    b, ws_port = ws_broker(broker_factory)
    base = unique_base()
    sub = subscriber_factory(b.host, b.port, f"{base}#")
    settings = settings_for(
        b, base, broker={"port": ws_port, "transport": "websockets", "protocol": protocol}
    )
    core = core_factory(settings)
    wait_state(core, "connected")
    assert sub.wait_for(f"{base}mqtt").payload == b"connected"
    core.publish_event("Home", {"via": "ws"})
    assert event_json(sub.wait_for(f"{base}event/Home"))["via"] == "ws"


def test_secure_websockets(core_factory, broker_factory, subscriber_factory, tmp_path):
    certs = make_certs(tmp_path)
    b, ws_port = ws_broker(
        broker_factory,
        f"cafile {certs.ca}\ncertfile {certs.server.cert}\nkeyfile {certs.server.key}\n",
    )
    base = unique_base()
    sub = subscriber_factory(b.host, b.port, f"{base}#")
    settings = settings_for(
        b,
        base,
        broker={
            "url": "localhost",
            "port": ws_port,
            "transport": "websockets",
            "tls_active": True,
            "tls": {"ca_certs": str(certs.ca)},
        },
    )
    core = core_factory(settings)
    wait_state(core, "connected")
    assert sub.wait_for(f"{base}mqtt").payload == b"connected"


def test_websockets_to_a_plain_mqtt_port_says_so(core_factory, broker_factory):
    b, _ = ws_broker(broker_factory)
    core = core_factory(settings_for(b, broker={"transport": "websockets"}))  # plain port
    status = wait_state(core, "backing_off")
    assert status["last_error"].startswith("WebSocket:") or "closed" in status["last_error"]
