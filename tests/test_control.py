"""Remote control end to end: a real OctoPrint with its virtual printer and the plugin as
installed, requests over MQTT 3.1.1 and MQTT 5 from a real client, and what OctoPrint's REST
API (and its own PositionUpdate events) report afterwards. Every error answer comes from the
real printer's state. The core-level rules (answers, duplicates, retained requests, threads)
are in tests/test_control_requests.py.
"""

from __future__ import annotations

import json
import time

import paho.mqtt.publish as mqtt_publish
import pytest
from support.control import ALL_COMMANDS, Requester, control_settings
from support.e2ekit import BASE, broker_settings, event_topic, wait_until

pytestmark = pytest.mark.e2e

TOOL, BED = 185.0, 55.0


def targets(octoprint) -> dict:
    t = octoprint.get("/api/printer")["temperature"]
    return {heater: (t.get(heater) or {}).get("target") for heater in ("tool0", "bed")}


def job_state(octoprint) -> str:
    return octoprint.job_state()["state"]


def position(sub, requester, since: float) -> dict:
    """The position OctoPrint reports for an M114 sent now (its PositionUpdate event)."""
    assert requester.request("gcode", {"commands": ["M400", "M114"]})["ok"] is True
    msg = sub.wait_for(
        event_topic("PositionUpdate"),
        timeout=15,
        predicate=lambda m: m.received_at > since,
    )
    return json.loads(msg.payload)


def refused(requester, command, payload=None) -> str:
    answer = requester.request(command, payload)
    assert answer["ok"] is False, answer
    assert set(answer) == {"id", "command", "ok", "error"}, answer
    return answer["error"]


def wait_job(octoprint, state: str, timeout: float = 20):
    wait_until(lambda: job_state(octoprint) == state, timeout, lambda: job_state(octoprint))


def wait_for(what, check, describe, timeout=20):
    return wait_until(check, timeout, lambda: f"{what}: {describe()}")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", [4, 5])
def test_each_command_acts_on_octoprint_and_each_refusal_says_why(
    broker, octoprint_factory, subscriber_factory, protocol
):
    settings = broker_settings(broker, control=control_settings(*ALL_COMMANDS))
    if protocol == 5:
        settings["broker"]["protocol"] = "MQTTv5"
    octoprint = octoprint_factory(settings)
    sub = subscriber_factory(broker.host, broker.port, f"{BASE}#")
    req = Requester(broker.host, broker.port, BASE, protocol=protocol)
    try:
        wait_for(
            "the request filter subscribed",
            lambda: f"{BASE}control/+ (QoS 1)" in broker.log_text(),
            lambda: "no SUBSCRIBE",
        )
        # Offline: the state, and what needs a printer.
        status = req.request("status")
        assert status["ok"] is True and status["result"]["state"]["text"] == "Offline", status
        assert "not printing" in refused(req, "pause")
        assert "not operational" in refused(req, "gcode", {"commands": "M105"})
        assert "not connected" in refused(req, "disconnect")
        assert "no serial port 'COM9'" in refused(req, "connect", {"port": "COM9"})

        # connect: operational; a second one is refused.
        connected = req.request("connect", {"port": "VIRTUAL", "baudrate": 115200})
        assert connected["ok"] is True, connected
        wait_for(
            "operational",
            lambda: octoprint.connection_state() == "Operational",
            octoprint.connection_state,
        )
        assert "already connected" in refused(req, "connect")

        # temperature and gcode: the targets OctoPrint reports.
        assert req.request("temperature", {"tool0": TOOL, "bed": BED})["ok"] is True
        wait_for(
            "targets set",
            lambda: targets(octoprint) == {"tool0": TOOL, "bed": BED},
            lambda: targets(octoprint),
        )
        assert "no heater tool3" in refused(req, "temperature", {"tool3": 100})
        assert "from 0 to 500" in refused(req, "temperature", {"tool0": 900})
        assert req.request("gcode", {"commands": "M104 S175\nM140 S50"})["ok"] is True
        wait_for(
            "targets from G-code",
            lambda: targets(octoprint) == {"tool0": 175.0, "bed": 50.0},
            lambda: targets(octoprint),
        )

        # home and jog: the position OctoPrint reads back from the printer.
        assert req.request("home", {"axes": ["x", "y"]})["ok"] is True
        now = time.monotonic()
        home = position(sub, req, now)
        assert (home["x"], home["y"]) == (0, 0), home
        now = time.monotonic()
        assert req.request("jog", {"x": 12.5, "y": 4, "speed": 3000})["ok"] is True
        moved = position(sub, req, now)
        assert (moved["x"], moved["y"]) == (12.5, 4), moved
        assert "unknown field" in refused(req, "jog", {"x": 1, "spede": 100})

        # The status result is the state topic's content.
        status = req.request("status")["result"]
        assert status["state"]["text"] == "Operational"
        assert status["temperatures"]["tool0"]["target"] == 175.0

        # start, pause, resume, cancel: the job OctoPrint reports.
        assert "file not found: nothing.gcode" in refused(req, "start", {"path": "nothing.gcode"})
        assert "path is required" in refused(req, "start")
        octoprint.upload("remote.gcode", "G28\n" + "G4 P100\n" * 600, select=False, print_=False)
        assert req.request("start", {"path": "remote.gcode"})["ok"] is True
        wait_job(octoprint, "Printing")
        assert octoprint.job_state()["job"]["file"]["name"] == "remote.gcode"
        assert "busy with a print" in refused(req, "start", {"path": "remote.gcode"})
        assert "busy with a print" in refused(req, "jog", {"x": 1})
        assert "not paused" in refused(req, "resume")
        assert req.request("pause")["ok"] is True
        wait_job(octoprint, "Paused")
        assert "not printing" in refused(req, "pause")
        assert req.request("resume")["ok"] is True
        wait_job(octoprint, "Printing")
        assert req.request("cancel")["ok"] is True
        wait_for(
            "cancelled",
            lambda: job_state(octoprint) == "Operational",
            lambda: job_state(octoprint),
            timeout=30,
        )
        assert "not printing" in refused(req, "cancel")

        # A duplicate id is answered again, not executed again.
        first = req.request("gcode", {"id": "once", "commands": "M104 S160"})
        wait_for("160", lambda: targets(octoprint)["tool0"] == 160.0, lambda: targets(octoprint))
        octoprint.post("/api/printer/tool", {"command": "target", "targets": {"tool0": 150}})
        wait_for("150", lambda: targets(octoprint)["tool0"] == 150.0, lambda: targets(octoprint))
        req.send("gcode", {"id": "once", "commands": "M104 S160"})
        wait_until(lambda: len(req.answers(id="once")) == 2, 10, lambda: "the second answer")
        assert req.answers(id="once")[1].body == first
        time.sleep(2.0)
        assert targets(octoprint)["tool0"] == 150.0

        # Malformed requests.
        req.send("pause", "[1]")
        assert "not a JSON object" in req.wait_answer(id=None, ok=False).body["error"]
        assert "unknown command" in refused(req, "dance")

        # disconnect: closed.
        assert req.request("disconnect")["ok"] is True
        wait_for(
            "offline",
            lambda: octoprint.connection_state() in ("Offline", "Closed"),
            octoprint.connection_state,
        )

        log = octoprint.log_text()
        assert "Remote control: connect" in log and " done" in log
        control_lines = [line for line in log.splitlines() if "Remote control:" in line]
        assert not [line for line in control_lines if "M104" in line or "remote.gcode" in line]
    finally:
        req.close()


@pytest.mark.timeout(120)
def test_a_retained_pause_from_before_the_start_does_nothing(broker, octoprint_factory):
    # Published (retained) before this OctoPrint exists.
    mqtt_publish.single(
        f"{BASE}control/pause",
        json.dumps({"id": "stale"}),
        qos=1,
        retain=True,
        hostname=broker.host,
        port=broker.port,
    )
    req = Requester(broker.host, broker.port, BASE)
    try:
        octoprint = octoprint_factory(broker_settings(broker, control=control_settings("pause")))
        octoprint.connect_printer()
        octoprint.upload("long.gcode", "G28\n" + "G4 P100\n" * 900)
        wait_until(lambda: job_state(octoprint) == "Printing", 20, lambda: job_state(octoprint))
        time.sleep(3.0)
        assert job_state(octoprint) == "Printing"
        assert req.answers() == []
        assert "Ignored a retained remote control request" in octoprint.log_text()
        # A live request on that topic works.
        assert req.request("pause")["ok"] is True
        wait_until(lambda: job_state(octoprint) == "Paused", 15, lambda: job_state(octoprint))
    finally:
        mqtt_publish.single(
            f"{BASE}control/pause", b"", retain=True, hostname=broker.host, port=broker.port
        )
        req.close()


@pytest.mark.timeout(120)
def test_off_by_default_no_subscription_and_no_answer(broker, octoprint_factory):
    octoprint = octoprint_factory(broker_settings(broker))
    octoprint.connect_printer()
    req = Requester(broker.host, broker.port, BASE)
    try:
        req.send("status", {"id": 1})
        req.send("connect", {"id": 2})
        time.sleep(2.0)
        assert req.answers() == []
        assert "control/+" not in broker.log_text()
        assert "Remote control" not in octoprint.log_text()
    finally:
        req.close()
