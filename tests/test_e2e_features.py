"""End to end, feature by feature: progress, temperatures, metadata, PausedForUser, settings
migration, live settings changes and the broker password, in a real OctoPrint (virtual printer)
talking to a real Mosquitto. Every assertion is about what the broker delivers, what OctoPrint
wrote to config.yaml or what it answers on its REST API.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

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

BASE = "octoprint/"
STATUS_TOPIC = f"{BASE}mqtt"
PRINTING_TOPIC = f"{BASE}progress/printing"
SLICING_TOPIC = f"{BASE}progress/slicing"
PROGRESS_KEYS = ["location", "path", "progress", "_timestamp"]
SLICING_KEYS = [
    "slicer",
    "source_location",
    "source_path",
    "destination_location",
    "destination_path",
    "progress",
    "_timestamp",
]
TEMPERATURE_KEYS = ["actual", "target", "_timestamp"]
BED_TARGET = 45.0
TOOL_TARGET = 70.0


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# 1. Progress, temperatures and metadata during a real print
# --------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_print_progress_temperatures_and_metadata(broker, subscriber_factory, octoprint_factory):
    name = "heated.gcode"
    keys = {
        "hash": f"{BASE}metadata/hash",
        "analysis.estimatedPrintTime": f"{BASE}metadata/analysis.estimatedPrintTime",
        "analysis.printingArea": f"{BASE}metadata/analysis.printingArea",
        "analysis.noSuchKey": f"{BASE}metadata/analysis.noSuchKey",
    }
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        broker_settings(
            broker,
            publish={"metadataActive": True, "metadataKeys": ",".join(keys)},
        )
    )

    # Startup: `connected`, then (only events in between) the reset of both progress topics.
    sub.wait_for(SLICING_TOPIC, timeout=30)
    startup = sub.messages()
    assert startup[0].topic == STATUS_TOPIC and startup[0].payload == b"connected", startup[:3]
    not_events = [m for m in startup[1:] if not m.topic.startswith(f"{BASE}event/")]
    assert [m.topic for m in not_events[:2]] == [PRINTING_TOPIC, SLICING_TOPIC], not_events
    reset = decode(not_events[0])
    assert list(reset) == PROGRESS_KEYS, reset
    assert (reset["location"], reset["path"], reset["progress"]) == ("", "", 0), reset
    slicing_reset = decode(not_events[1])
    assert list(slicing_reset) == SLICING_KEYS, slicing_reset
    assert [slicing_reset[k] for k in SLICING_KEYS[:-1]] == ["", "", "", "", "", 0]
    assert isinstance(slicing_reset["_timestamp"], int), slicing_reset

    octoprint.connect_printer()
    info = upload_analysed(octoprint, sub, name, heating_print_gcode(moves=60, dwell_ms=250))
    analysis = info["gcodeAnalysis"]
    assert isinstance(analysis.get("estimatedPrintTime"), (int, float)), analysis
    assert analysis["printingArea"]["maxX"] > 0, analysis

    octoprint.print_file(name)
    sub.wait_for(event_topic("PrintStarted"), timeout=15)

    # Metadata at PrintStarted: scalars as plain text, dicts as JSON text, retained.
    has_payload = lambda m: m.payload != b""  # noqa: E731
    hash_msg = sub.wait_for(keys["hash"], timeout=10, predicate=has_payload)
    assert hash_msg.payload == info["hash"].encode(), hash_msg
    time_msg = sub.wait_for(keys["analysis.estimatedPrintTime"], timeout=10, predicate=has_payload)
    assert json.loads(time_msg.payload) == pytest.approx(analysis["estimatedPrintTime"])
    area_msg = sub.wait_for(keys["analysis.printingArea"], timeout=10, predicate=has_payload)
    assert json.loads(area_msg.payload) == analysis["printingArea"], area_msg
    retained = read_retained(broker.host, broker.port, f"{BASE}metadata/#")
    assert set(retained) == {
        keys["hash"],
        keys["analysis.estimatedPrintTime"],
        keys["analysis.printingArea"],
    }, retained
    for topic, message in retained.items():
        assert message.payload == sub.messages(topic)[0].payload, (topic, message)

    # The print runs ~20 s; the progress check runs every 5 s.
    octoprint.wait_job_done(timeout=90, name=name)
    sub.wait_for(event_topic("PrintDone"), timeout=10)
    sub.wait_for(PRINTING_TOPIC, timeout=15, predicate=json_field_is("progress", 100))

    # Progress: 0 .. 100, non-decreasing, several steps, exact key order.
    progress = [decode(m) for m in sub.messages(PRINTING_TOPIC)]
    progress = [p for p in progress if p["path"] == name]
    for p in progress:
        assert list(p) == PROGRESS_KEYS, p
        assert p["location"] == "local", p
        assert type(p["progress"]) is int and type(p["_timestamp"]) is int, p
    values = [p["progress"] for p in progress]
    assert values == sorted(values), values
    # The first check runs when OctoPrint announces FileSelected, which it does while the
    # print is already starting: OctoPrint's completion (file position) may be 1-2 % by then.
    assert values[0] <= 5 and values[-1] == 100, values
    assert len(set(values)) >= 4, f"too few progress steps: {values}"

    # Metadata cleared at PrintDone: an empty (retained-clearing) payload per key, and the
    # missing key was never published with a value.
    for key in list(keys)[:3]:
        sub.wait_for(keys[key], timeout=10, predicate=payload_is(b""))
    assert not [m for m in sub.messages(keys["analysis.noSuchKey"]) if m.payload], sub.messages(
        keys["analysis.noSuchKey"]
    )

    # Temperatures keep coming while the printer cools down: note how many had arrived.
    temperature_counts = {t: len(sub.messages(t)) for t in sub_topics(sub, "temperature/#")}
    retained = read_retained(broker.host, broker.port)
    assert not [t for t in retained if t.startswith(f"{BASE}metadata/")], retained
    assert decode(retained[PRINTING_TOPIC]) == progress[-1], retained[PRINTING_TOPIC]

    # Temperatures: per heater, exact keys, rising while heating, retained. The virtual
    # printer has no chamber, and heaters without readings are not published.
    heaters = set(temperature_counts)
    assert heaters == {f"{BASE}temperature/bed", f"{BASE}temperature/tool0"}, heaters
    for heater, target in (("bed", BED_TARGET), ("tool0", TOOL_TARGET)):
        topic = f"{BASE}temperature/{heater}"
        samples = [decode(m) for m in sub.messages(topic)]
        for sample in samples:
            assert list(sample) == TEMPERATURE_KEYS, sample
            assert isinstance(sample["_timestamp"], int), sample
        assert any(s["target"] == target for s in samples), samples
        heating = [s["actual"] for s in samples if s["target"] == target and s["actual"]]
        reached = next((i for i, a in enumerate(heating) if a >= target - 1), None)
        assert reached is not None, f"{heater} never reached {target}: {heating}"
        rising = heating[: reached + 1]
        assert rising == sorted(rising) and len(set(rising)) >= 2, (heater, heating)
        assert rising[0] < target - 5, (heater, heating)
        assert topic in retained, f"{topic} not retained: {sorted(retained)}"
        assert list(decode(retained[topic])) == TEMPERATURE_KEYS, retained[topic]
        # The broker keeps the last sample published before the read.
        recent = [m.payload for m in sub.messages(topic)][temperature_counts[topic] - 1 :]
        assert retained[topic].payload in recent, (retained[topic], recent)

    assert_no_traceback(octoprint.log_text())


# --------------------------------------------------------------------------
# 2. publish.printerData
# --------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_progress_carries_printer_data(broker, subscriber_factory, octoprint_factory):
    name = "printer-data.gcode"
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(broker_settings(broker, publish={"printerData": True}))
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    octoprint.connect_printer()
    octoprint.upload(name, QUICK_GCODE, select=True, print_=True)
    message = sub.wait_for(PRINTING_TOPIC, timeout=20, predicate=json_field_is("path", name))

    data = decode(message)
    assert list(data) == ["location", "path", "progress", "printer_data", "_timestamp"], data
    printer_data = data["printer_data"]
    assert isinstance(printer_data, dict), printer_data
    assert {"state", "job", "progress"} <= printer_data.keys(), printer_data
    assert isinstance(printer_data["state"]["text"], str), printer_data["state"]
    assert printer_data["job"]["file"]["name"] == name, printer_data["job"]
    assert "completion" in printer_data["progress"], printer_data["progress"]
    octoprint.wait_job_done(timeout=60, name=name)
    assert_no_traceback(octoprint.log_text())


# --------------------------------------------------------------------------
# 3. PausedForUser from the G-code hook
# --------------------------------------------------------------------------


def paused_lines(octoprint) -> int:
    """How many "paused for user" lines OctoPrint received (serial.log)."""
    path = Path(octoprint.basedir, "logs", "serial.log")
    text = path.read_text(errors="replace") if path.exists() else ""
    return len(re.findall(r"Recv: echo:busy:? paused for user", text))


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_paused_for_user(broker, subscriber_factory, octoprint_factory):
    topic = event_topic("PausedForUser")
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        broker_settings(broker),
        extra_config={
            # serial.log shows which lines the printer sent.
            "serial": {"log": True},
            # With sendBusy, M600 makes the virtual printer send "echo:busy paused for user"
            # every busyInterval seconds (and no "ok") until M876.
            "plugins": {"virtual_printer": {"sendBusy": True, "busyInterval": 0.5}},
        },
    )
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    octoprint.connect_printer()
    octoprint.send_gcode("M600")

    message = sub.wait_for(topic, timeout=15)
    data = decode(message)
    assert list(data) == ["_event", "_timestamp"], data
    assert data["_event"] == "PausedForUser" and isinstance(data["_timestamp"], int), data
    sub.wait_count(topic, 2, timeout=10)  # one per busy line
    assert topic not in read_retained(broker.host, broker.port), "PausedForUser is retained"

    # The gcode event class off: the hook keeps running on every busy line, quietly.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"events": {"gcode": False}}}}})
    # SettingsUpdated is published after the change applied; QoS 0 from one client arrives in
    # order, so whatever comes after it was published with gcode events off.
    marker = sub.wait_for(event_topic("SettingsUpdated"), timeout=10)
    lines_before = paused_lines(octoprint)
    wait_until(
        lambda: paused_lines(octoprint) >= lines_before + 4,
        15,
        lambda: f"the printer stopped sending busy lines ({paused_lines(octoprint)})",
    )
    time.sleep(0.5)
    received = sub.messages()
    after = received[received.index(marker) + 1 :]
    assert not [m for m in after if m.topic == topic], after

    # Event publishing off altogether (the classic plugin's hook crashed then). No marker
    # event can come now: let anything in flight arrive before looking.
    octoprint.save_settings(
        {"plugins": {"mqtt": {"publish": {"eventActive": False, "events": {"gcode": True}}}}}
    )
    time.sleep(1.0)
    sub.clear()
    lines_before = paused_lines(octoprint)
    wait_until(
        lambda: paused_lines(octoprint) >= lines_before + 4,
        15,
        lambda: f"the printer stopped sending busy lines ({paused_lines(octoprint)})",
    )
    time.sleep(0.5)
    assert not sub.messages(f"{BASE}event/#"), sub.messages(f"{BASE}event/#")
    assert_no_traceback(octoprint.log_text())


# --------------------------------------------------------------------------
# 4. Settings migration from the classic plugin, and a fresh install
# --------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("stored_base", "expected_base"),
    [(None, "octoPrint/"), ("farm/p1/", "farm/p1/")],
    ids=["classic-default-base", "classic-explicit-base"],
)
def test_classic_settings_migration(
    broker, subscriber_factory, octoprint_factory, stored_base, expected_base
):
    sub = subscriber_factory(broker.host, broker.port)
    settings = broker_settings(broker)
    if stored_base is not None:
        settings["publish"] = {"baseTopic": stored_base}
    octoprint = octoprint_factory(settings, classic_config=True)

    sub.wait_for(f"{expected_base}mqtt", timeout=30, predicate=payload_is(b"connected"))
    sub.wait_for(event_topic("Startup", expected_base), timeout=10)
    assert octoprint.settings()["plugins"]["mqtt"]["publish"]["baseTopic"] == expected_base
    # A later save through the API (OctoPrint then stores only what differs from the
    # defaults) keeps the base topic.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"temperatureThreshold": 0.5}}}})
    sub.wait_for(event_topic("SettingsUpdated", expected_base), timeout=10)
    octoprint.stop()
    stray = [m.topic for m in sub.messages() if not m.topic.startswith(expected_base)]
    assert not stray, f"published outside {expected_base}: {stray}"

    stored = mqtt_config(octoprint)
    assert stored["publish"]["baseTopic"] == expected_base, stored
    assert stored.get("_config_version") == 1, stored
    assert stored["broker"] == {"url": broker.host, "port": broker.port}, stored
    assert stored["publish"]["temperatureThreshold"] == 0.5, stored
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_fresh_install_uses_lowercase_base(broker, subscriber_factory, octoprint_factory):
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory({}, write_mqtt_section=False)
    assert octoprint.settings()["plugins"]["mqtt"]["publish"]["baseTopic"] == BASE

    octoprint.save_settings(
        {"plugins": {"mqtt": {"broker": {"url": broker.host, "port": broker.port}}}}
    )
    sub.wait_for(STATUS_TOPIC, timeout=20, predicate=payload_is(b"connected"))
    octoprint.upload("fresh.gcode", QUICK_GCODE, select=False, print_=False)
    sub.wait_for(event_topic("FileAdded"), timeout=10)
    octoprint.stop()
    stray = [m.topic for m in sub.messages() if not m.topic.startswith(BASE)]
    assert not stray, f"published outside {BASE}: {stray}"

    stored = mqtt_config(octoprint)
    assert stored["broker"] == {"url": broker.host, "port": broker.port}, stored
    assert "baseTopic" not in (stored.get("publish") or {}), stored
    assert_no_traceback(octoprint.log_text())


# --------------------------------------------------------------------------
# 5. Live settings changes
# --------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_live_settings_changes(broker_factory, subscriber_factory, octoprint_factory):
    first, second = broker_factory(), broker_factory()
    sub = subscriber_factory(first.host, first.port)
    status_sub = subscriber_factory(first.host, first.port, STATUS_TOPIC)  # never cleared
    foreign = {"hassTopic": "homeassistant", "controlTopic": "ctl"}
    octoprint = octoprint_factory(broker_settings(first, publish=dict(foreign)))
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    octoprint.connect_printer()
    sub.wait_for(event_topic("Connected"), timeout=15)

    # A new event topic: applies at once, events move.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"eventTopic": "evt/{event}"}}}})
    sub.wait_for(f"{BASE}evt/SettingsUpdated", timeout=10)
    sub.clear()
    octoprint.upload("live.gcode", QUICK_GCODE, select=False, print_=False)
    sub.wait_for(f"{BASE}evt/FileAdded", timeout=10)
    assert not sub.messages(f"{BASE}event/#"), sub.messages(f"{BASE}event/#")

    # The printjob class off: the print's other events still come, its job events do not.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"events": {"printjob": False}}}}})
    sub.wait_for(f"{BASE}evt/SettingsUpdated", timeout=10)
    sub.clear()
    octoprint.print_file("live.gcode")
    octoprint.wait_job_done(timeout=60, name="live.gcode")
    sub.wait_for(
        f"{BASE}evt/PrinterStateChanged",
        timeout=10,
        predicate=json_field_is("state_id", "OPERATIONAL"),
    )
    job_events = {"PrintStarted", "PrintDone", "PrintFailed", "PrintCancelled"}
    leaked = [m.topic for m in sub.messages() if m.topic.rsplit("/", 1)[-1] in job_events]
    assert not leaked, leaked
    assert sub.messages(f"{BASE}evt/PrinterStateChanged"), "no comm events during the print"

    # No reconnect so far: `connected` came exactly once, never `disconnected`.
    assert [m.payload for m in status_sub.messages()] == [b"connected"], status_sub.messages()
    status = read_retained(first.host, first.port, STATUS_TOPIC)
    assert status[STATUS_TOPIC].payload == b"connected", status
    connects = re.findall(r"New client connected from .* as (\S+)", first.log_text())
    plugin_connects = [c for c in connects if not c.startswith("auto-")]
    assert len(plugin_connects) == 1, f"the plugin connected again: {connects}"

    stored = mqtt_config(octoprint)
    for key, value in foreign.items():
        assert stored["publish"].get(key) == value, stored

    # A new broker port: reconnect; the old broker gets `disconnected`, the new `connected`.
    sub_second = subscriber_factory(second.host, second.port)
    octoprint.save_settings({"plugins": {"mqtt": {"broker": {"port": second.port}}}})
    sub.wait_for(STATUS_TOPIC, timeout=10, predicate=payload_is(b"disconnected"))
    sub_second.wait_for(STATUS_TOPIC, timeout=15, predicate=payload_is(b"connected"))
    retained = read_retained(first.host, first.port, STATUS_TOPIC)
    assert retained[STATUS_TOPIC].payload == b"disconnected", retained
    assert [m.payload for m in status_sub.messages()] == [b"connected", b"disconnected"]

    stored = mqtt_config(octoprint)
    for key, value in foreign.items():
        assert stored["publish"].get(key) == value, f"{key} lost on save: {stored}"
    assert stored["publish"]["eventTopic"] == "evt/{event}", stored
    assert stored["publish"]["events"] == {"printjob": False}, stored
    assert stored["broker"]["port"] == second.port, stored
    assert_no_traceback(octoprint.log_text())


# --------------------------------------------------------------------------
# 6. The broker password
# --------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_password_goes_to_the_settings_permission_not_only_admins(broker, octoprint_factory):
    # OctoPrint's "admin" restriction level means the SETTINGS permission: a user who is no
    # admin but was given it reads the password; one without it (the Users group) does not.
    secret = "settings-perm-pw-4711"
    settings = broker_settings(broker)
    settings["broker"].update(username="e2e-user", password=secret)
    octoprint = octoprint_factory(settings, start=False)
    viewer_key = octoprint.add_user("viewer", "viewer-pw-for-tests")
    manager_key = octoprint.add_user("manager", "manager-pw-for-tests")
    users_path = octoprint.basedir / "users.yaml"
    users = yaml.safe_load(users_path.read_text())
    users["manager"]["permissions"] = ["SETTINGS"]
    users_path.write_text(yaml.safe_dump(users))
    octoprint.start()

    manager = octoprint.get_as(manager_key, "/api/currentuser")
    assert "admin" not in manager["groups"] and "SETTINGS" in manager["permissions"], manager
    admin_broker = octoprint.settings()["plugins"]["mqtt"]["broker"]
    assert admin_broker["password"] == secret, admin_broker
    manager_broker = octoprint.get_as(manager_key, "/api/settings")["plugins"]["mqtt"]["broker"]
    assert manager_broker["password"] == secret, manager_broker
    viewer_broker = octoprint.get_as(viewer_key, "/api/settings")["plugins"]["mqtt"]["broker"]
    assert viewer_broker.get("password") is None, viewer_broker
    # Only the password is hidden.
    assert viewer_broker["username"] == "e2e-user", viewer_broker


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_wrong_then_right_password(password_broker_factory, subscriber_factory, octoprint_factory):
    user, wrong, right = "e2e-user", "wrong-pw-Q7e1", "right-pw-K9x3"
    broker = password_broker_factory(user, right)
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory({}, log_levels={"octoprint.plugins.mqtt": "DEBUG"})
    refused = re.compile(r"bad user name or password|not authorised")

    settings = {"url": broker.host, "port": broker.port, "username": user, "password": wrong}
    octoprint.save_settings({"plugins": {"mqtt": {"broker": settings}}})
    wait_until(
        lambda: refused.search(octoprint.log_text()),
        20,
        lambda: "no failed login in octoprint.log:\n" + octoprint.log_text()[-3000:],
    )
    assert not sub.messages(STATUS_TOPIC), sub.messages(STATUS_TOPIC)

    octoprint.save_settings({"plugins": {"mqtt": {"broker": {"password": right}}}})
    sub.wait_for(STATUS_TOPIC, timeout=20, predicate=payload_is(b"connected"))
    assert f"u'{user}'" in broker.log_text(), broker.log_text()[-3000:]
    octoprint.stop()

    logs = [octoprint.serve_log_path, *Path(octoprint.basedir, "logs").glob("*")]
    assert any("DEBUG" in path.read_text(errors="replace") for path in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in (wrong, right):
            assert secret not in text, f"password {secret!r} in {path}"
