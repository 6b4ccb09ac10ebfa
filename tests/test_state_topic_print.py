"""The retained printer-state topic end to end: a real OctoPrint with its virtual printer,
watched only through what Mosquitto keeps for a late subscriber and compared with OctoPrint's
own account (its PrinterStateChanged events, /api/printer and /api/job). The core-level rules
(pacing, key order, reconnects) are in tests/test_state_topic.py.
"""

from __future__ import annotations

import time

import pytest
from support.e2ekit import (
    BASE,
    OFFLINE_FLAGS,
    STATE_TOPIC,
    assert_no_traceback,
    broker_settings,
    collapse,
    decode,
    event_topic,
    read_state,
    rest_job,
    rest_state,
    rest_view,
    state_text,
    state_view,
    upload_analysed,
    wait_retained_state,
    wait_until,
)
from support.mqtt_env import read_retained_v5
from support.octoprint_env import deep_merge

STATE_EVENTS = event_topic("PrinterStateChanged")
TOOL_SET = 60.0
BED_SET = 40.0


def print_gcode(moves: int, dwell_ms: int) -> str:
    """Sets both heaters' targets without waiting for them (so that the print starts at once
    and the state shows targets while printing), then `moves` extruding moves with a dwell
    each: about moves * dwell_ms of printing."""
    lines = ["G21", "G90", "M82", f"M104 S{TOOL_SET:g}", f"M140 S{BED_SET:g}", "G28", "G92 E0"]
    for i in range(moves):
        lines.append(f"G1 X{10 + i % 50} Y{10 + i % 7} E{0.05 * (i + 1):.2f} F6000")
        lines.append(f"G4 P{dwell_ms}")
    lines += ["M104 S0", "M140 S0", "M84", ""]
    return "\n".join(lines)


def watched_octoprint(broker, subscriber_factory, octoprint_factory):
    """An OctoPrint with the default settings on `broker`, and a subscriber to every topic
    that has seen its first state message."""
    live = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(broker_settings(broker))
    live.wait_for(STATE_TOPIC, timeout=30)
    return live, octoprint


def live_states(sub) -> list[dict]:
    return [decode(m) for m in sub.messages(STATE_TOPIC)]


def event_states(sub) -> list[str]:
    return [decode(m)["state_string"] for m in sub.messages(STATE_EVENTS)]


def assert_one_message_per_state(sub, first: str) -> list[str]:
    """Every state OctoPrint announced is on the state topic, in order, none coalesced away;
    `first` is the state at connect, which no event announces. Returns the sequence."""
    texts = collapse([state_text(s) for s in live_states(sub)])
    assert texts == [first, *event_states(sub)], (texts, event_states(sub))
    return texts


def watch_print(broker, octoprint, timeout: float) -> list[tuple[dict, dict]]:
    """(retained state, rest_view) read back to back for as long as the retained state says
    Printing, from its first Printing."""
    seen: list[tuple[dict, dict]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(broker)
        rest = rest_view(octoprint)
        if state_text(state) == "Printing":
            seen.append((state, rest))
        elif seen:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"the print did not end within {timeout}s: {seen[-1:]}")


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_a_print_from_connect_to_done_through_the_retained_state(
    broker, subscriber_factory, octoprint_factory
):
    name = "state-print.gcode"
    live, octoprint = watched_octoprint(broker, subscriber_factory, octoprint_factory)

    offline = read_state(broker)
    assert offline is not None, "no retained state after startup"
    assert offline["state"] == {"text": "Offline", "flags": OFFLINE_FLAGS, "error": ""}
    assert offline["state"] == rest_state(octoprint)
    assert (offline["job"], offline["progress"]) == (None, None), offline

    octoprint.connect_printer()
    ready = wait_retained_state(
        broker, lambda s: state_text(s) == "Operational", 10, "Operational after connecting"
    )
    assert ready["state"] == rest_state(octoprint)
    flags = ready["state"]["flags"]
    assert flags["operational"] and flags["ready"] and not flags["closedOrError"], flags
    assert (ready["job"], ready["progress"]) == (None, None), ready

    info = upload_analysed(octoprint, live, name, print_gcode(moves=40, dwell_ms=150))
    octoprint.print_file(name)
    printing = watch_print(broker, octoprint, timeout=40)

    job = printing[0][0]["job"]
    assert job == {
        "name": name,
        "path": name,
        "origin": "local",
        "size": info["size"],
        "estimatedPrintTime": info["gcodeAnalysis"]["estimatedPrintTime"],
        "user": "admin",
    }, job
    for state, rest in printing:
        flags = state["state"]["flags"]
        assert flags["printing"] and flags["operational"] and not flags["ready"], state
        assert state["job"] == job == rest["job"], (state, rest)
        # The states of the last moments of a print are OctoPrint's, not the topic's.
        if rest["state"]["text"] == "Printing":
            assert state["state"] == rest["state"], (state, rest)
    progress = [s["progress"] for s, _ in printing if (s["progress"] or {}).get("completion")]
    completions = [p["completion"] for p in progress]
    assert completions == sorted(completions) and len(set(completions)) >= 3, completions
    assert [p["percent"] for p in progress] == [round(c) for c in completions], progress
    heated = [
        s["temperatures"]
        for s, _ in printing
        if s["temperatures"].get("tool0", {}).get("target") == TOOL_SET
        and s["temperatures"].get("bed", {}).get("target") == BED_SET
    ]
    assert heated, [s["temperatures"] for s, _ in printing]
    assert all(isinstance(t["tool0"]["actual"], float) for t in heated), heated

    octoprint.wait_job_done(timeout=30, name=name)
    done = wait_retained_state(
        broker,
        lambda s: state_text(s) == "Operational" and (s["progress"] or {}).get("completion") == 100,
        10,
        "Operational at 100 %",
    )
    assert done["progress"]["percent"] == 100, done
    assert done["state"] == rest_state(octoprint)
    # OctoPrint keeps the file selected after the print.
    assert done["job"] == job == rest_job(octoprint), (done["job"], rest_job(octoprint))

    sequence = assert_one_message_per_state(live, "Offline")
    # OctoPrint 1.11's states of a print: the short-lived ones must not be coalesced away.
    assert sequence[-5:] == ["Operational", "Starting", "Printing", "Finishing", "Operational"], (
        sequence
    )
    for state in live_states(live):
        if state_text(state) in ("Starting", "Printing", "Finishing"):
            assert state["job"] == job and state["state"]["flags"]["printing"], state
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_cancelled_print_through_the_retained_state(
    broker, subscriber_factory, octoprint_factory
):
    name = "state-cancel.gcode"
    live, octoprint = watched_octoprint(broker, subscriber_factory, octoprint_factory)
    octoprint.connect_printer()
    upload_analysed(octoprint, live, name, print_gcode(moves=150, dwell_ms=100))
    octoprint.print_file(name)
    printing = wait_retained_state(
        broker,
        lambda s: state_text(s) == "Printing" and (s["progress"] or {}).get("completion"),
        20,
        "Printing with progress",
    )
    assert printing["job"] == rest_job(octoprint), (printing["job"], rest_job(octoprint))

    octoprint.post("/api/job", {"command": "cancel"})
    wait_retained_state(
        broker, lambda s: state_text(s) == "Operational", 20, "Operational after cancelling"
    )
    sequence = assert_one_message_per_state(live, "Offline")
    assert sequence[-3:] == ["Printing", "Cancelling", "Operational"], sequence
    cancelling = [s for s in live_states(live) if state_text(s) == "Cancelling"]
    assert len(cancelling) == 1, cancelling
    flags = cancelling[0]["state"]["flags"]
    assert flags["cancelling"] and flags["printing"] and flags["operational"], flags
    assert not flags["ready"] and not flags["paused"], flags
    assert cancelling[0]["job"] == printing["job"], cancelling[0]

    # OctoPrint keeps the file selected and forgets the progress of the cancelled print; the
    # state's progress follows within an interval.
    after = wait_retained_state(
        broker,
        lambda s: state_text(s) == "Operational" and state_view(s) == rest_view(octoprint),
        5,
        f"the state OctoPrint reports: {rest_view(octoprint)}",
    )
    assert after["job"] == printing["job"], after
    assert after["state"]["flags"]["ready"] and not after["state"]["flags"]["cancelling"], after
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_a_disconnected_printer_is_offline_without_job(
    broker, subscriber_factory, octoprint_factory
):
    name = "state-selected.gcode"
    live, octoprint = watched_octoprint(broker, subscriber_factory, octoprint_factory)
    octoprint.connect_printer()
    # A selected file: the job and its (empty) progress the disconnect must clear.
    octoprint.upload(name, print_gcode(moves=5, dwell_ms=10), select=True, print_=False)
    # The job changes once more when the file's analysis ends (estimatedPrintTime).
    selected = wait_retained_state(
        broker,
        lambda s: (s["job"] or {}).get("name") == name and state_view(s) == rest_view(octoprint),
        10,
        f"the selected file as OctoPrint reports it: {rest_view(octoprint)}",
    )
    assert selected["progress"] is not None, selected

    octoprint.post("/api/connection", {"command": "disconnect"})
    offline = wait_retained_state(
        broker, lambda s: state_text(s) == "Offline", 10, "Offline after disconnecting"
    )
    assert offline["state"] == {"text": "Offline", "flags": OFFLINE_FLAGS, "error": ""}
    assert (offline["job"], offline["progress"]) == (None, None), offline
    assert offline["state"] == rest_state(octoprint)
    # OctoPrint's last temperature sample after a disconnect has no heaters.
    wait_retained_state(broker, lambda s: s["temperatures"] == {}, 5, "no temperatures")
    sequence = assert_one_message_per_state(live, "Offline")
    assert sequence[-2:] == ["Operational", "Offline"], sequence
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_the_temperature_interval_ends_with_octoprints_last_sample(
    broker, subscriber_factory, octoprint_factory
):
    interval = 3.0
    targets = {"tool0": 80.0, "bed": 50.0}
    topics = {heater: f"{BASE}temperature/{heater}" for heater in targets}
    live = subscriber_factory(broker.host, broker.port, f"{BASE}temperature/#")
    octoprint = octoprint_factory(
        # The virtual printer reports hundredths and creeps the last few of them to the
        # target: the default threshold (0.1) would, by design, keep 79.98 as the last
        # message of 80.0. A threshold of one hundredth leaves only the interval to test.
        broker_settings(
            broker, publish={"temperatureInterval": interval, "temperatureThreshold": 0.01}
        ),
        # A sample a second (the virtual printer's M155 autoreport): three per interval.
        extra_config={"serial": {"timeout": {"temperatureAutoreport": 1}}},
    )
    octoprint.connect_printer()
    live.wait_for(topics["tool0"], timeout=10)
    octoprint.send_gcode(f"M104 S{targets['tool0']:g}", f"M140 S{targets['bed']:g}")

    # The virtual printer ramps at 10 °C/s and then holds the target exactly.
    def at_targets():
        now = octoprint.get("/api/printer")["temperature"]
        return all(now[h]["actual"] == t and now[h]["target"] == t for h, t in targets.items())

    wait_until(at_targets, 20, lambda: f"not at {targets}: {octoprint.get('/api/printer')}")
    # What waits is sent when its interval ends: at most one interval after the last change.
    time.sleep(interval + 1.0)
    printer = octoprint.get("/api/printer?history=true")["temperature"]
    history = printer.pop("history")
    for heater, target in targets.items():
        messages = live.messages(topics[heater])
        arrivals = [m.received_at for m in messages]
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        assert all(g >= interval - 0.2 for g in gaps), (heater, gaps)
        readings = collapse(
            [(s[heater]["actual"], s[heater]["target"]) for s in history if heater in s]
        )
        assert len(messages) < len(readings), f"{heater}: nothing coalesced: {readings}"
        last = decode(messages[-1])
        assert (last["actual"], last["target"]) == (target, target), (heater, last)
        assert (last["actual"], last["target"]) == readings[-1], (heater, last, readings)
        assert last == {
            "actual": printer[heater]["actual"],
            "target": printer[heater]["target"],
            # The sample the value first arrived in; later ones repeat it.
            "_timestamp": next(
                s["time"] for s in history if s.get(heater, {}).get("actual") == target
            ),
        }, (heater, last, history)
    state = read_state(broker)
    assert state["temperatures"] == {
        heater: {"actual": values["actual"], "target": values["target"]}
        for heater, values in printer.items()
    }, (state, printer)
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_mqtt5_expiry_removes_a_killed_octoprints_state(
    broker, subscriber_factory, octoprint_factory
):
    expiry = 3
    live = subscriber_factory(broker.host, broker.port, STATE_TOPIC)
    octoprint = octoprint_factory(
        deep_merge(
            broker_settings(broker, publish={"stateExpiry": expiry}),
            {"broker": {"protocol": "MQTTv5"}},
        )
    )
    live.wait_for(STATE_TOPIC, timeout=30)
    octoprint.connect_printer()
    live.wait_for(
        STATE_TOPIC, timeout=10, predicate=lambda m: state_text(decode(m)) == "Operational"
    )
    retained = read_retained_v5(broker.host, broker.port, STATE_TOPIC)
    assert retained is not None, "no retained state"
    remaining = getattr(retained.properties, "MessageExpiryInterval", None)
    assert remaining is not None and 0 < remaining <= expiry, retained.properties

    # No goodbye: nothing clears or republishes the state; only its expiry can remove it.
    octoprint.kill()
    last_sent = live.messages(STATE_TOPIC)[-1].received_at
    kept = read_retained_v5(broker.host, broker.port, STATE_TOPIC, timeout=1.0)
    if time.monotonic() < last_sent + expiry - 0.5:
        assert kept is not None, "the state went with OctoPrint before its expiry"
    time.sleep(max(0.0, last_sent + expiry + 1.0 - time.monotonic()))
    gone = read_retained_v5(broker.host, broker.port, STATE_TOPIC, timeout=1.0)
    assert gone is None, f"still retained after its expiry: {gone.payload!r}"
