"""Helpers of the end-to-end tests: a real OctoPrint (support/octoprint_env.py) with the
installed plugin, talking to a real Mosquitto, checked by what the broker delivers.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from support.mqtt_env import Message, Subscriber

BASE = "octoprint/"
STATUS_TOPIC = f"{BASE}mqtt"
STATE_TOPIC = f"{BASE}state"
# Our Home Assistant discovery's entities (docs/behaviour.md §3.14) with the virtual printer's
# heaters, by component.
DISCOVERY_OBJECTS = {
    "binary_sensor": ["connected", "printing"],
    "sensor": [
        "state",
        "progress",
        "print_time",
        "print_time_left",
        "estimated_finish",
        "file",
        "tool0_temperature",
        "tool0_target",
        "bed_temperature",
        "bed_target",
    ],
}
BED_TARGET = 45.0
TOOL_TARGET = 70.0


def broker_settings(broker, **extra) -> dict:
    """plugins.mqtt settings pointing at `broker`, with extra top-level sections."""
    return {"broker": {"url": broker.host, "port": broker.port}, **extra}


def event_topic(name: str, base: str = BASE) -> str:
    return f"{base}event/{name}"


def payload_is(expected: bytes) -> Callable[[Message], bool]:
    return lambda message: message.payload == expected


def json_field_is(key: str, value) -> Callable[[Message], bool]:
    return lambda message: json.loads(message.payload).get(key) == value


def decode(message: Message) -> dict:
    data = json.loads(message.payload)
    assert isinstance(data, dict), message
    return data


def wait_until(check: Callable[[], object], timeout: float, describe: Callable[[], str]):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {describe()}")
        time.sleep(0.2)


def assert_no_traceback(log: str) -> None:
    index = log.find("Traceback")
    assert index < 0, "octoprint.log has a traceback:\n" + log[max(0, index - 2000) : index + 3000]


def heating_print_gcode(moves: int, dwell_ms: int) -> str:
    """Heats bed and hotend (waiting for both), then extrudes `moves` short moves, each
    followed by a dwell: the print takes about moves * dwell_ms plus the heating time.
    Extrusion is what gives OctoPrint's analysis an estimated print time and printing area."""
    lines = [
        "G21",
        "G90",
        "M82",
        f"M140 S{BED_TARGET:g}",
        f"M104 S{TOOL_TARGET:g}",
        f"M190 S{BED_TARGET:g}",
        f"M109 S{TOOL_TARGET:g}",
        "G28",
        "G92 E0",
        "G1 Z0.3 F3000",
    ]
    for i in range(moves):
        lines.append(f"G1 X{20 + i} Y{20 + i % 7} E{0.05 * (i + 1):.2f} F3000")
        lines.append(f"G4 P{dwell_ms}")
    lines += ["M104 S0", "M140 S0", "M84", ""]
    return "\n".join(lines)


def layers_gcode(moves_per_layer: int, before_end: tuple[str, ...] = ()) -> str:
    """Moves at three heights, so that OctoPrint fires ZChange at each; a high feed rate keeps
    the virtual printer from simulating slow moves. `before_end`: lines before the last lift."""
    return "\n".join(
        ["G21", "G90", "G28"]
        + [
            line
            for z in (0.3, 0.5, 0.7)
            for line in [f"G1 Z{z} F6000"]
            + [f"G1 X{10 + 5 * i} Y{10 + 3 * i} F60000" for i in range(moves_per_layer)]
        ]
        + [*before_end, "G1 Z5 F6000", "M84", ""]
    )


QUICK_GCODE = "\n".join(
    ["G21", "G90", "G28", "G92 E0"]
    + [f"G1 X{10 + i} Y{10 + i} E{0.1 * (i + 1):.1f} F6000\nG4 P100" for i in range(15)]
    + ["M84", ""]
)


def upload_analysed(octoprint, sub, name: str, gcode: str, base: str = BASE) -> dict:
    """Upload without printing and wait for OctoPrint's analysis, so that the file's metadata
    is complete when the print starts (OctoPrint pauses analysis while printing)."""
    octoprint.upload(name, gcode, select=False, print_=False)
    sub.wait_for(
        event_topic("MetadataAnalysisFinished", base),
        timeout=30,
        predicate=json_field_is("name", name),
    )
    return octoprint.file_info(name)


def sub_topics(sub, topic_filter: str, base: str = BASE) -> set[str]:
    """The topics under `base` matching `topic_filter` that `sub` received so far."""
    return {m.topic for m in sub.messages(f"{base}{topic_filter}")}


def mqtt_config(octoprint) -> dict:
    return (octoprint.read_config().get("plugins") or {}).get("mqtt") or {}


# The state topic's flags: each is also one of /api/printer's state.flags.
STATE_FLAGS = [
    "operational",
    "printing",
    "paused",
    "error",
    "ready",
    "cancelling",
    "pausing",
    "closedOrError",
]
OFFLINE_FLAGS = {flag: flag == "closedOrError" for flag in STATE_FLAGS}


def read_state(broker, topic: str = STATE_TOPIC, timeout: float = 1.0) -> dict | None:
    """The retained state as a late subscriber gets it, or None when the broker keeps none.
    Returns as soon as the retained copy arrives; `timeout` is only spent when there is none."""
    sub = Subscriber(broker.host, broker.port, topic)
    try:
        try:
            message = sub.wait_for(topic, timeout=timeout, predicate=lambda m: m.retain)
        except AssertionError:
            return None
        return decode(message)
    finally:
        sub.close()


def wait_retained_state(
    broker, check: Callable[[dict], object], timeout: float, what: str, topic: str = STATE_TOPIC
) -> dict:
    """Polls the retained state (a late subscriber each time) until `check` accepts it."""
    seen: list = []

    def accepted():
        state = read_state(broker, topic)
        seen.append(state)
        return state if state is not None and check(state) else None

    return wait_until(accepted, timeout, lambda: f"{what}; last retained state: {seen[-1:]}")


def state_text(state: dict | None) -> str | None:
    return ((state or {}).get("state") or {}).get("text")


def collapse(items: list) -> list:
    """`items` without consecutive repeats."""
    return [item for i, item in enumerate(items) if i == 0 or items[i - 1] != item]


def rest_state(octoprint) -> dict:
    """/api/printer's state with only the flags the state topic has; the state while the
    printer is offline (when OctoPrint answers 409 there)."""
    response = octoprint.get_response("/api/printer")
    if response.status_code == 409:
        return {"text": "Offline", "flags": dict(OFFLINE_FLAGS), "error": ""}
    response.raise_for_status()
    state = response.json()["state"]
    return {
        "text": state["text"],
        "flags": {flag: state["flags"][flag] for flag in STATE_FLAGS},
        "error": state["error"],
    }


def rest_job(octoprint) -> dict | None:
    """/api/job's job in the state topic's shape, or None when no file is selected."""
    job = octoprint.job_state()["job"]
    file = job.get("file") or {}
    if file.get("path") is None:
        return None
    return {
        "name": file["name"],
        "path": file["path"],
        "origin": file["origin"],
        "size": file["size"],
        "estimatedPrintTime": job.get("estimatedPrintTime"),
        "user": job.get("user"),
    }


def rest_view(octoprint) -> dict:
    """What OctoPrint's REST API says of the state topic's state, job and progress (progress
    without `percent`, the plugin's own)."""
    job = rest_job(octoprint)
    progress = None
    if job is not None:
        reported = octoprint.job_state()["progress"] or {}
        progress = {key: reported.get(key) for key in PROGRESS_FIELDS}
    return {"state": rest_state(octoprint), "job": job, "progress": progress}


PROGRESS_FIELDS = ["completion", "printTime", "printTimeLeft", "printTimeLeftOrigin"]


def state_view(state: dict) -> dict:
    """The parts of a state message that rest_view has."""
    progress = state["progress"]
    if progress is not None:
        progress = {key: progress[key] for key in PROGRESS_FIELDS}
    return {"state": state["state"], "job": state["job"], "progress": progress}
