"""End to end: a real OctoPrint with the installed plugin talks to a real Mosquitto.

These tests need the plugin pip-installed in the interpreter running pytest,
because the OctoPrint server is started from that same environment.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import time
from pathlib import Path

import pytest

try:
    import octoprint_mqtt  # noqa: F401
except ImportError as exc:
    pytest.skip(
        f"octoprint_mqtt is not importable ({exc}); pip-install the plugin "
        "into this interpreter to run the end-to-end tests",
        allow_module_level=True,
    )

# Walks every distribution: entry_points(group=...) needs Python 3.10, the suite runs on 3.8.
if not any(
    ep.group == "octoprint.plugin" and ep.name == "mqtt"
    for dist in importlib.metadata.distributions()
    for ep in dist.entry_points
):
    pytest.skip(
        "no 'mqtt' entry point in group 'octoprint.plugin': the plugin is not "
        "installed, so OctoPrint would not load it",
        allow_module_level=True,
    )

from mqtt_env import Message, read_retained

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BASE = "octoprint/"
STATUS_TOPIC = f"{BASE}mqtt"
SECRET = "s3cr3t-pw-XYZ"
# The only events published with retain (when broker.retain is on).
RETAINED_EVENTS = {"ZChange", "FirmwareData"}

# Moves at several heights so that OctoPrint fires ZChange; a high feed rate
# keeps the virtual printer from simulating slow moves.
GCODE = "\n".join(
    ["G21", "G90", "G28"]
    + [
        line
        for z in (0.3, 0.5, 0.7)
        for line in [f"G1 Z{z} F6000"]
        + [f"G1 X{10 + 5 * i} Y{10 + 3 * i} F60000" for i in range(8)]
    ]
    + ["G1 Z5 F6000", "M84", ""]
)


def event_topic(name: str) -> str:
    return f"{BASE}event/{name}"


def payload_is(expected: bytes):
    return lambda message: message.payload == expected


def assert_event(
    message: Message, name: str, keys: frozenset[str] | set[str] = frozenset()
) -> dict:
    """Check the plugin's event JSON shape and return the decoded payload."""
    data = json.loads(message.payload)
    assert data["_event"] == name, data
    assert isinstance(data["_timestamp"], int), data
    # The plugin appends its own keys after OctoPrint's payload.
    assert list(data)[-2:] == ["_event", "_timestamp"], data
    missing = keys - data.keys()
    assert not missing, f"{name} payload lacks {missing}: {data}"
    return data


def assert_no_traceback(log: str) -> None:
    index = log.find("Traceback")
    assert index < 0, "octoprint.log has a traceback:\n" + log[max(0, index - 2000) : index + 3000]


def plugin_published_status(broker_log: str, payload: bytes) -> bool:
    """True if a client itself PUBLISHed `payload` on the status topic.

    Mosquitto logs "Received PUBLISH from <client> (d0, q1, r1, m2,
    'octoprint/mqtt', ... (12 bytes))". A last will is not logged this way, so
    this tells an orderly publish apart from the broker sending the will.
    """
    pattern = re.compile(
        rf"Received PUBLISH from \S+ \(d\d, q\d, r\d, m\d+, '{re.escape(STATUS_TOPIC)}',"
        rf".*\({len(payload)} bytes\)\)"
    )
    return bool(pattern.search(broker_log))


@pytest.mark.parametrize("protocol", ["MQTTv311", "MQTTv5"])
def test_events_reach_the_broker(broker, subscriber_factory, octoprint_factory, protocol):
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        {"broker": {"url": broker.host, "port": broker.port, "protocol": protocol}}
    )

    # Startup fires before the MQTT connection is up: the plugin must queue it.
    assert_event(sub.wait_for(event_topic("Startup"), timeout=30), "Startup")
    status = sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    assert status.qos == 1

    octoprint.connect_printer()
    assert_event(
        sub.wait_for(event_topic("Connected"), timeout=30),
        "Connected",
        {"port", "baudrate"},
    )

    octoprint.upload("e2e.gcode", GCODE, select=True, print_=True)
    assert_event(
        sub.wait_for(event_topic("FileAdded"), timeout=30),
        "FileAdded",
        {"storage", "path", "name", "type"},
    )
    assert_event(
        sub.wait_for(event_topic("PrintStarted"), timeout=30),
        "PrintStarted",
        {"name", "path", "origin", "size"},
    )
    octoprint.wait_job_done(timeout=60, name="e2e.gcode")
    done = assert_event(
        sub.wait_for(event_topic("PrintDone"), timeout=30),
        "PrintDone",
        {"name", "path", "origin", "size", "time"},
    )
    assert done["name"] == "e2e.gcode"
    z_changes = sub.messages(event_topic("ZChange"))
    assert len(z_changes) >= 3, z_changes
    for message in z_changes:
        assert_event(message, "ZChange", {"new", "old"})

    # Events are not retained, except the "current state" ones whose retain
    # flag follows broker.retain (true by default).
    retained = read_retained(broker.host, broker.port)
    retained_events = {t for t in retained if t.startswith(f"{BASE}event/")}
    assert event_topic("ZChange") in retained_events, retained_events
    assert retained_events <= {event_topic(name) for name in RETAINED_EVENTS}, retained_events
    assert retained[event_topic("ZChange")].payload == z_changes[-1].payload
    assert retained[STATUS_TOPIC].payload == b"connected"

    # Graceful shutdown: on_shutdown publishes "disconnected" itself, quickly.
    shutdown_seconds = octoprint.stop()
    assert octoprint.proc.returncode == 0, octoprint.serve_log_text()[-3000:]
    assert shutdown_seconds < 10, f"shutdown took {shutdown_seconds:.1f}s"
    sub.wait_for(STATUS_TOPIC, timeout=10, predicate=payload_is(b"disconnected"))
    assert read_retained(broker.host, broker.port)[STATUS_TOPIC].payload == b"disconnected"
    assert plugin_published_status(broker.log_text(), b"disconnected"), (
        "the plugin did not publish 'disconnected' itself (only the will?):\n"
        + broker.log_text()[-3000:]
    )

    log = octoprint.log_text()
    assert " - octoprint.plugins.mqtt - " in log, "no plugin log lines in octoprint.log"
    assert_no_traceback(log)


def test_password_is_never_logged(broker, subscriber_factory, octoprint_factory):
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        {
            "broker": {
                "url": broker.host,
                "port": broker.port,
                "username": "e2e-user",
                "password": SECRET,
            }
        },
        # Debug logging, so that a password in a debug line is caught too.
        log_levels={"octoprint.plugins.mqtt": "DEBUG"},
    )
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    # The broker allows anonymous clients but logs the username it was given.
    assert "u'e2e-user'" in broker.log_text(), broker.log_text()[-3000:]

    # A settings round trip through the API exercises the plugin's save path.
    assert "mqtt" in octoprint.settings()["plugins"]
    octoprint.save_settings({"plugins": {"mqtt": {"broker": {"password": SECRET}}}})
    octoprint.stop()

    logs = [octoprint.serve_log_path, *Path(octoprint.basedir, "logs").glob("*")]
    for path in logs:
        assert SECRET not in path.read_text(errors="replace"), f"password in {path}"
    assert " - octoprint.plugins.mqtt - " in octoprint.log_text()


def test_a_native_module_that_cannot_load_disables_the_plugin(
    broker, subscriber_factory, octoprint_factory, tmp_path
):
    # A copy of the installed package without its compiled module, first on the server's
    # path: what a user sees after installing a build for another platform or Python.
    installed = Path(octoprint_mqtt.__file__).parent
    shadow = tmp_path / "shadow"
    shutil.copytree(
        installed, shadow / "octoprint_mqtt", ignore=shutil.ignore_patterns("_core*", "__pycache__")
    )
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        {"broker": {"url": broker.host, "port": broker.port}}, env={"PYTHONPATH": str(shadow)}
    )
    # OctoPrint came up (start() waits for its API) and keeps serving.
    assert octoprint.get("/api/version")["server"].startswith("1.")
    log = octoprint.log_text()
    assert "The MQTT plugin is disabled: its native module cannot be loaded" in log, log[-3000:]
    # (Only the shadow copy lacks the module, so that line also proves it was the one loaded.)
    assert re.search(r"Plugin MQTT \(.+\) did not pass check, not loading", log)
    # Nothing connected to the broker on the plugin's behalf.
    time.sleep(2)
    assert sub.messages(f"{BASE}#") == []
    octoprint.stop()
    assert octoprint.proc.returncode == 0, octoprint.serve_log_text()[-3000:]
