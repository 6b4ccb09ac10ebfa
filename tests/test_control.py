"""Remote control end to end: a real OctoPrint with its virtual printer and the plugin as
installed, requests over MQTT 3.1.1 and MQTT 5 from a real client, and what OctoPrint's REST
API, its own PositionUpdate events and the state topic report afterwards. Every error answer
comes from the real printer's state. The core-level rules (answers, duplicates, retained
requests, threads) are in tests/test_control_requests.py.

One OctoPrint per protocol runs the whole sequence: each start costs seconds.
"""

from __future__ import annotations

import json
import re
import time

import paho.mqtt.client as mqtt
import paho.mqtt.publish as mqtt_publish
import pytest
from support.control import ALL_COMMANDS, Requester, control_settings
from support.e2ekit import BASE, broker_settings, event_topic, read_state, wait_until

pytestmark = pytest.mark.e2e

PAUSE_TOPIC = f"{BASE}control/pause"
RESPONSE_TOPIC = f"{BASE}control/response"
RETAINED_WARNING = f'Ignored a retained remote control request on "{PAUSE_TOPIC}"'
# Payload contents the log must never show (docs/behaviour.md §5.11, Log): a G-code line no
# other part of OctoPrint writes to octoprint.log, and a file name only the payload holds.
MARKER_GCODE = "M117 payload-marker-5e1d"
MARKER_FILE = "remote-7c41.gcode"
# What a request could make look like a line of OctoPrint's own in octoprint.log.
FORGED_LINE = "2026-01-01 00:00:00,000 - octoprint.server - INFO - forged.gcode"
# Long enough that nothing but our requests ends it: 600 dwells of 0.1 s.
LONG_GCODE = "G28\n" + "G4 P100\n" * 600


def targets(octoprint) -> dict:
    t = octoprint.get("/api/printer")["temperature"]
    return {heater: (t.get(heater) or {}).get("target") for heater in ("tool0", "bed")}


def job_state(octoprint) -> str:
    return octoprint.job_state()["state"]


def wait_for(what, check, describe, timeout=20):
    return wait_until(check, timeout, lambda: f"{what}: {describe()}")


def wait_job(octoprint, state: str, timeout: float = 20):
    wait_for(state, lambda: job_state(octoprint) == state, lambda: job_state(octoprint), timeout)


def done(req, command, payload=None, **kw) -> dict:
    """Requests `command` and checks that the answer says it was done, in the answer's shape."""
    answer = req.request(command, payload, **kw)
    expected = {"id", "command", "ok"} | ({"result"} if command == "status" else set())
    assert answer["ok"] is True and set(answer) == expected, answer
    assert answer["command"] == command, answer
    return answer


def refused(req, command, payload=None) -> str:
    answer = req.request(command, payload)
    assert answer["ok"] is False, answer
    assert set(answer) == {"id", "command", "ok", "error"}, answer
    assert answer["command"] == command, answer
    return answer["error"]


def wait_error(req, text: str) -> dict:
    """The body of the first refusal whose error says `text`."""
    found = wait_until(
        lambda: [a.body for a in req.answers(ok=False) if text in a.body["error"]],
        10,
        lambda: f"no error {text!r} in {[a.body for a in req.answers()]}",
    )
    return found[0]


def position(sub, req) -> dict:
    """The position OctoPrint reports for an M114 sent now (its PositionUpdate event, which
    the plugin publishes)."""
    since = time.monotonic()
    done(req, "gcode", {"commands": ["M400", "M114"]})
    msg = sub.wait_for(
        event_topic("PositionUpdate"), timeout=15, predicate=lambda m: m.received_at > since
    )
    return json.loads(msg.payload)


def without_timestamp(state: dict) -> dict:
    return {key: value for key, value in state.items() if key != "_timestamp"}


def assert_status_is_the_state_topic(req, broker, text: str) -> dict:
    """`status`'s result equals what the broker holds on the state topic, but for the
    timestamp. Asked again while they differ: the state topic carries progress and
    temperatures at most once a second (publish.stateInterval), so for a moment the status,
    made from the newest values, may be ahead of it."""
    seen = []

    def same():
        result = done(req, "status")["result"]
        retained = read_state(broker)
        seen.append((result, retained))
        assert isinstance(result.get("_timestamp"), int), result
        return retained is not None and without_timestamp(result) == without_timestamp(retained)

    wait_for("status = state topic", same, lambda: seen[-1], timeout=10)
    result = seen[-1][0]
    assert result["state"]["text"] == text, result
    return result


def publish_retained(broker, topic: str, payload: bytes | str, protocol: int) -> None:
    mqtt_publish.single(
        topic,
        payload,
        qos=1,
        retain=True,
        hostname=broker.host,
        port=broker.port,
        protocol=mqtt.MQTTv5 if protocol == 5 else mqtt.MQTTv311,
    )


def retained_pause_deliveries(broker) -> int:
    """How often the broker sent the retained pause from its store (at a subscribe)."""
    return len(
        re.findall(
            r"Sending PUBLISH to \S+ \(d0, q1, r1, m\d+, 'octoprint/control/pause'",
            broker.log_text(),
        )
    )


def plugin_log_lines(octoprint) -> list[str]:
    return [
        line for line in octoprint.log_text().splitlines() if " octoprint.plugins.mqtt " in line
    ]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("protocol", [4, 5], ids=["mqtt311", "mqtt5"])
def test_remote_control_drives_a_real_octoprint(
    broker, octoprint_factory, subscriber_factory, protocol
):
    # Published before this OctoPrint exists: it must never run, neither when the plugin first
    # subscribes (the printer offline) nor when it subscribes again in the middle of a print.
    publish_retained(broker, PAUSE_TOPIC, json.dumps({"id": "stale"}), protocol)
    settings = broker_settings(broker, control=control_settings(*ALL_COMMANDS))
    if protocol == 5:
        settings["broker"]["protocol"] = "MQTTv5"
    sub = subscriber_factory(broker.host, broker.port, f"{BASE}#")
    req = Requester(broker.host, broker.port, BASE, protocol=protocol)
    try:
        # serial.log: what OctoPrint sends the printer, to see a fractional target go out.
        octoprint = octoprint_factory(settings, extra_config={"serial": {"log": True}})
        wait_for(
            "the request filter subscribed",
            lambda: f"{BASE}control/+ (QoS 1)" in broker.log_text(),
            lambda: "no SUBSCRIBE",
        )
        wait_for(
            "the retained pause ignored at startup",
            lambda: RETAINED_WARNING in octoprint.log_text(),
            lambda: "no warning",
        )

        # ~~ Offline: the state, and every command that needs a printer.
        assert_status_is_the_state_topic(req, broker, "Offline")
        assert "not printing (it is Offline)" in refused(req, "pause")
        for command, payload in [
            ("gcode", {"commands": "M105"}),
            ("temperature", {"tool0": 100}),
            ("home", None),
            ("jog", {"x": 1}),
            ("start", {"path": "any.gcode"}),
        ]:
            assert "not operational (it is Offline)" in refused(req, command, payload), command
        assert "not connected" in refused(req, "disconnect")
        assert "no serial port 'COM9'" in refused(req, "connect", {"port": "COM9"})
        assert "baudrate must be" in refused(req, "connect", {"baudrate": "fast"})

        # ~~ connect: operational; a second one is refused.
        done(req, "connect", {"port": "VIRTUAL", "baudrate": 115200})
        wait_for(
            "operational",
            lambda: octoprint.connection_state() == "Operational",
            octoprint.connection_state,
        )
        assert "already connected" in refused(req, "connect")
        assert "not printing (it is Operational)" in refused(req, "pause")
        assert "not printing (it is Operational)" in refused(req, "cancel")
        assert "not paused (the printer is Operational)" in refused(req, "resume")
        assert_status_is_the_state_topic(req, broker, "Operational")

        # ~~ jog, then home two axes: the positions OctoPrint reads back from the printer.
        done(req, "jog", {"x": 12.5, "y": 4, "z": 2, "speed": 3000})
        moved = position(sub, req)
        assert (moved["x"], moved["y"], moved["z"]) == (12.5, 4, 2), moved
        done(req, "home", {"axes": ["x", "z"]})
        homed = position(sub, req)
        assert (homed["x"], homed["y"], homed["z"]) == (0, 4, 0), homed
        assert "unknown field" in refused(req, "jog", {"x": 1, "spede": 100})
        assert "at least one of x, y, z" in refused(req, "jog", {"speed": 100})
        assert "axes must be" in refused(req, "home", {"axes": ["e"]})

        # ~~ start: the job OctoPrint reports.
        assert "path is required" in refused(req, "start")
        assert "file not found: nothing.gcode" in refused(req, "start", {"path": "nothing.gcode"})
        # The reason quotes the path to the requester; in the log it must stay on one line.
        error = refused(req, "start", {"path": f"missing\n{FORGED_LINE}"})
        assert error == f"file not found: missing\n{FORGED_LINE}", error
        assert "origin must be" in refused(req, "start", {"path": MARKER_FILE, "origin": "usb"})
        octoprint.upload(MARKER_FILE, LONG_GCODE, select=False, print_=False)
        done(req, "start", {"path": MARKER_FILE})
        wait_job(octoprint, "Printing")
        file = octoprint.job_state()["job"]["file"]
        assert (file["name"], file["origin"]) == (MARKER_FILE, "local"), file

        # ~~ While printing, what must not pause it.
        # A reconnect (a changed keepalive) subscribes again: the broker sends the retained
        # pause once more, now while a print would be paused by it.
        before = retained_pause_deliveries(broker)
        since = time.monotonic()
        octoprint.save_settings({"plugins": {"mqtt": {"broker": {"keepalive": 45}}}})
        wait_for(
            "the retained pause sent again",
            lambda: retained_pause_deliveries(broker) > before,
            lambda: f"{retained_pause_deliveries(broker)} deliveries",
        )
        if protocol == 5:
            # Retain As Published: a retained request published while OctoPrint runs is
            # recognised too (3.1.1 brokers clear the flag on live deliveries).
            publish_retained(broker, PAUSE_TOPIC, json.dumps({"id": "live-retained"}), 5)
        # Zero bytes clear a retained message; they are no request either.
        publish_retained(broker, PAUSE_TOPIC, b"", protocol)
        req.send("pause", b"")
        time.sleep(3.0)
        assert job_state(octoprint) == "Printing"
        late = [a.body for a in req.answers(command="pause") if a.received_at > since]
        assert late == [], late
        assert octoprint.log_text().count(RETAINED_WARNING) == 1
        assert read_state(broker, PAUSE_TOPIC) is None

        assert "busy with a print (it is Printing)" in refused(req, "start", {"path": MARKER_FILE})
        assert "busy with a print" in refused(req, "jog", {"x": 1})
        assert "busy with a print" in refused(req, "home")
        assert "not paused (the printer is Printing)" in refused(req, "resume")

        # ~~ pause, resume, cancel.
        since = time.monotonic()
        done(req, "pause")
        wait_job(octoprint, "Paused")
        sub.wait_for(event_topic("PrintPaused"), 10, predicate=lambda m: m.received_at > since)
        assert "not printing (it is Paused)" in refused(req, "pause")
        paused = assert_status_is_the_state_topic(req, broker, "Paused")
        assert paused["job"]["name"] == MARKER_FILE, paused
        done(req, "resume")
        wait_job(octoprint, "Printing")
        since = time.monotonic()
        done(req, "cancel")
        sub.wait_for(event_topic("PrintCancelled"), 30, predicate=lambda m: m.received_at > since)
        wait_job(octoprint, "Operational", timeout=30)
        assert "not printing (it is Operational)" in refused(req, "cancel")

        # ~~ temperature and gcode: the targets OctoPrint reports.
        done(req, "temperature", {"tool0": 185, "bed": 55})
        wait_for(
            "targets set",
            lambda: targets(octoprint) == {"tool0": 185.0, "bed": 55.0},
            lambda: targets(octoprint),
        )
        # A fraction goes to the printer as given. Seen in serial.log: the virtual printer
        # reads only a target's whole degrees, and its next temperature report would replace
        # the 55.5 OctoPrint shows with 55.0.
        done(req, "temperature", {"bed": 55.5})
        wait_for(
            "M140 S55.5 sent",
            lambda: re.search(r"Send: (N\d+ )?M140 S55\.5\b", octoprint.serial_log_text()),
            lambda: octoprint.serial_log_text()[-500:],
        )
        assert "no heater tool3 (it has tool0, bed)" in refused(req, "temperature", {"tool3": 100})
        assert "from 0 to 500" in refused(req, "temperature", {"tool0": 900})
        assert "not a heater name" in refused(req, "temperature", {"nozzle": 200})
        done(req, "gcode", {"commands": f"M104 S175\n\nM140 S50\n{MARKER_GCODE}"})
        wait_for(
            "targets from G-code",
            lambda: targets(octoprint) == {"tool0": 175.0, "bed": 50.0},
            lambda: targets(octoprint),
        )
        assert "holds no G-code" in refused(req, "gcode", {"commands": " \n"})
        assert "commands must be" in refused(req, "gcode", {"commands": [104]})
        assert "commands is required" in refused(req, "gcode")

        # ~~ A duplicate id (a number) is answered again, not executed again.
        first = done(req, "gcode", {"id": 4242, "commands": ["M104 S160"]})
        wait_for("160", lambda: targets(octoprint)["tool0"] == 160.0, lambda: targets(octoprint))
        octoprint.post("/api/printer/tool", {"command": "target", "targets": {"tool0": 150}})
        wait_for("150", lambda: targets(octoprint)["tool0"] == 150.0, lambda: targets(octoprint))
        req.send("gcode", {"id": 4242, "commands": ["M104 S160"]})
        wait_until(lambda: len(req.answers(id=4242)) == 2, 10, lambda: "the second answer")
        assert req.answers(id=4242)[1].body == first
        time.sleep(2.0)
        assert targets(octoprint)["tool0"] == 150.0

        # ~~ A command an admin disallows (saved through OctoPrint's settings API).
        octoprint.save_settings({"plugins": {"mqtt": {"control": {"commands": {"jog": False}}}}})
        wait_for(
            "jog disallowed",
            lambda: "not allowed" in req.request("jog", {"x": 1}).get("error", ""),
            lambda: "jog still allowed",
        )
        assert "control.commands.jog" in refused(req, "jog", {"x": 1})

        # ~~ Requests that are not well-formed: answered with a null id.
        for payload, error in [("[1]", "not a JSON object"), ("{", "not JSON")]:
            req.send("pause", payload)
            assert error in wait_error(req, error)["error"]
        req.send("pause", {"id": True})
        assert wait_error(req, "id must be a string or a number")["id"] is None
        assert 'unknown command "dance"' in refused(req, "dance")

        if protocol == 5:
            # Answered on the request's own Response Topic, with its Correlation Data.
            status = req.request("status", response_topic=req.own_topic, correlation=b"\x00corr-1")
            answer = req.answers(id=status["id"])
            assert [(a.topic, a.correlation) for a in answer] == [(req.own_topic, b"\x00corr-1")], (
                answer
            )
            # A Response Topic under the base topic would let a client overwrite the plugin's
            # own topics: answered on the response topic instead.
            status = req.request("status", response_topic=f"{BASE}state", correlation=b"c2")
            answer = req.answers(id=status["id"])
            assert [(a.topic, a.correlation) for a in answer] == [(RESPONSE_TOPIC, b"c2")]

        # ~~ disconnect: closed; what needs a printer is refused again.
        done(req, "disconnect")
        wait_for(
            "offline",
            lambda: octoprint.connection_state() in ("Offline", "Closed"),
            octoprint.connection_state,
        )
        assert "not operational" in refused(req, "gcode", {"commands": "M105"})
        assert "not printing" in refused(req, "pause")

        # ~~ Every answer went out at QoS 1, not retained.
        sent = re.findall(
            r"Received PUBLISH from \S+ \(d\d, q(\d), r(\d), m\d+, '([^']+)'", broker.log_text()
        )
        answers = [(qos, retain) for qos, retain, topic in sent if topic == RESPONSE_TOPIC]
        assert answers and set(answers) == {("1", "0")}, answers
        assert read_state(broker, RESPONSE_TOPIC) is None

        # ~~ The log: each command done at INFO with its id, never the payload.
        lines = plugin_log_lines(octoprint)
        done_answers = [a.body for a in req.answers(ok=True)]
        for answer in done_answers:
            line = (
                f"- INFO - Remote control: {answer['command']} (id {json.dumps(answer['id'])}) done"
            )
            assert any(line in entry for entry in lines), line
        assert {a["command"] for a in done_answers} == set(ALL_COMMANDS)
        for secret in (MARKER_GCODE, MARKER_FILE, "M104", "payload-marker"):
            leaked = [line for line in lines if secret in line]
            assert not leaked, leaked
        forged = [line for line in octoprint.log_text().splitlines() if line == FORGED_LINE]
        assert not forged, "a request wrote a line of its own into octoprint.log"
    finally:
        publish_retained(broker, PAUSE_TOPIC, b"", protocol)
        req.close()


@pytest.mark.timeout(120)
def test_off_by_default_nothing_is_subscribed_and_requests_do_nothing(broker, octoprint_factory):
    octoprint = octoprint_factory(broker_settings(broker))
    octoprint.connect_printer()
    req = Requester(broker.host, broker.port, BASE)
    try:
        req.send("status", {"id": 1})
        # Would close the printer's connection, were it taken.
        req.send("disconnect", {"id": 2})
        time.sleep(2.0)
        assert req.answers() == []
        assert octoprint.connection_state() == "Operational"
        assert "control/+" not in broker.log_text()
        assert "Remote control" not in octoprint.log_text()
    finally:
        req.close()
