"""`publish.eventExclude`: events named by it, or matching one of its shell-style patterns, are
not published; every other event is, in the order it came, and nothing else (progress,
temperatures, helpers) is affected. Through the core to a real broker, as saved settings, end to
end from a real OctoPrint and its virtual printer, and on the settings page in headless Chromium.
"""

from __future__ import annotations

import fnmatch
import os

import pytest
from playwright.sync_api import expect, sync_playwright
from support.browser_env import CHROMIUM, OctoPrintUi, launch
from support.corekit import connected_core, event_json, log_lines, settings_for
from support.e2ekit import (
    BASE,
    STATUS_TOPIC,
    assert_no_traceback,
    broker_settings,
    event_topic,
    layers_gcode,
    mqtt_config,
    payload_is,
    upload_analysed,
)
from support.octoprint_env import ADMIN_PASSWORD, ADMIN_USER, DISABLED_PLUGINS

from octoprint_mqtt import validation

KEY = "plugins.mqtt.publish.eventExclude"

# Usable patterns, each compared with Python's fnmatch.fnmatchcase on every name below.
PATTERNS = [
    "ZChange", "Position*", "*Update", "plugin_*", "Print?one", "Print[DF]*", "Print[!DF]*",
    "Print[D-F]*", "tool[0-3]", "tool[0-9]*", "*[0-9]", "[a-cx-z]", "a[-z]", "a[z-]", "[!-]*",
    "[[]*", "*a*b*c", "a**b", "*?", "?", "*", "[é-ü]*", "*ö*", "[!a-z]*", "P*n*", "[^P]*",
    "[a-b-c]", "[--a]*", "[!a-c-e]",
]  # fmt: skip
NAMES = [
    "ZChange", "zchange", "ZChanged", "PositionUpdate", "Position", "XPosition", "plugin_x_y",
    "Plugin_x", "PrintDone", "PrintFailed", "PrintStarted", "Printone", "Home", "tool0",
    "tool4", "tool10", "a", "y", "a-", "az", "ab", "-", "[x", "^a", "xaxbxbxc", "xaxbxbx",
    "ab", "aab", "b", "c", "d", "é", "Größe", "ö", "😀",
]  # fmt: skip


def test_names_and_patterns_match_as_fnmatchcase_matches_them(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    differing = []
    for pattern in PATTERNS:
        core.configure(settings_for(session_broker, base, publish={"eventExclude": [pattern]}))
        for name in NAMES:
            excluded = not core.publish_event(name, None)
            if excluded is not fnmatch.fnmatchcase(name, pattern):
                differing.append((pattern, name, excluded))
    assert not differing, differing
    assert core.status()["state"] == "connected"


def test_excluded_events_are_left_out_and_the_others_keep_their_order(
    core_factory, session_broker, subscriber_factory
):
    exclude = ["ZChange", "Position*", "plugin_*"]
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"eventExclude": exclude}
    )
    sequence = [
        "Home", "ZChange", "PositionUpdate", "XPosition", "plugin_x_ready", "zchange",
        "PrintStarted", "ZChange", "ZChanged", "Positional", "Plugin_x", "PositionUpdate",
        "PrintDone",
    ]  # fmt: skip
    accepted = [core.publish_event(name, {"seq": i}) for i, name in enumerate(sequence)]
    expected = [
        (i, name)
        for i, name in enumerate(sequence)
        if not any(fnmatch.fnmatchcase(name, p) for p in exclude)
    ]
    assert accepted == [(i, name) in expected for i, name in enumerate(sequence)]
    sub.wait_for(f"{base}event/PrintDone")
    received = [
        (event_json(m)["seq"], m.topic.rsplit("/", 1)[-1]) for m in sub.messages(f"{base}event/#")
    ]
    assert received == expected
    assert [name for _, name in received] == [
        "Home", "XPosition", "zchange", "PrintStarted", "ZChanged", "Plugin_x", "PrintDone",
    ]  # fmt: skip


def test_only_events_are_excluded(core_factory, session_broker, subscriber_factory):
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, publish={"eventExclude": ["*"]}
    )
    assert core.publish_event("PrintStarted", {}) is False
    assert core.publish_event("PausedForUser", None) is False
    assert core.publish_progress("printing", {"location": "local", "path": "a", "progress": 5})
    assert core.publish_temperatures({"time": 1, "tool0": {"actual": 20.5, "target": 0}}) == 1
    # A helper publishing on what looks like an event topic is a helper call, not an event.
    assert core.publish(f"{base}event/ZChange", "from a plugin")
    sub.wait_for(f"{base}progress/printing")
    sub.wait_for(f"{base}temperature/tool0")
    assert sub.wait_for(f"{base}event/ZChange").payload == b"from a plugin"
    assert [m.topic for m in sub.messages(f"{base}event/#")] == [f"{base}event/ZChange"]


def test_the_list_changes_live_and_may_be_stored_as_text(
    core_factory, session_broker, subscriber_factory
):
    core, sub, base = connected_core(core_factory, session_broker, subscriber_factory)
    listed = settings_for(session_broker, base, publish={"eventExclude": " ZChange, Position*,"})
    core.configure(listed)
    assert core.publish_event("ZChange", {}) is False
    assert core.publish_event("PositionUpdate", {}) is False
    assert core.publish_event("Home", {})
    core.configure(settings_for(session_broker, base, publish={"eventExclude": []}))
    assert core.publish_event("ZChange", {"again": True})
    assert event_json(sub.wait_for(f"{base}event/ZChange"))["again"] is True
    assert [m.topic for m in sub.messages(f"{base}event/#")] == [
        f"{base}event/Home",
        f"{base}event/ZChange",
    ]
    assert core.status()["reconnects"] == 0


def test_stored_patterns_that_cannot_work_are_left_out_with_one_warning(
    core_factory, session_broker, subscriber_factory, caplog
):
    stored = {"eventExclude": ["ZChange", "Pos[ition", "a b", "plugin_*"]}
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, publish=stored
    )
    warned = log_lines(caplog, KEY)
    assert warned == [
        f'{KEY}: "Pos[ition": the [ at character 4 is never closed; "a b": contains a space, '
        "which no event name has; left out (events they would match are published)"
    ], warned
    # The usable ones apply; the broken one excludes nothing (not even its own name).
    assert core.publish_event("ZChange", {}) is False
    assert core.publish_event("plugin_a_b", {}) is False
    assert core.publish_event("Pos[ition", {})
    assert core.publish_event("PositionUpdate", {})
    sub.wait_for(f"{base}event/PositionUpdate")
    # Said once per value, not on every save.
    core.configure(settings_for(session_broker, base, publish=stored))
    assert len(log_lines(caplog, KEY)) == 1

    core.configure(settings_for(session_broker, base, publish={"eventExclude": {"a": 1}}))
    assert log_lines(caplog, KEY)[-1] == (
        f"{KEY}: expected a list of event names or patterns, got a dict; using its default"
    )
    assert core.publish_event("ZChange", {"back": 1})
    sub.wait_for(f"{base}event/ZChange")


def test_a_save_refuses_unusable_patterns_and_stores_lists():
    def problems(value):
        return validation.problems({"publish": {"eventExclude": value}}, {})

    assert problems(["ZChange", "Position*"]) == {}
    assert problems(["ZChange", "Pos[ition"]) == {
        ("publish", "eventExclude"): '"Pos[ition": the [ at character 4 is never closed'
    }
    for value, stored in [
        (" ZChange, Position* ,,", ["ZChange", "Position*"]),
        ([" ZChange ", "plugin_*"], ["ZChange", "plugin_*"]),
        (None, []),
    ]:
        changes = {"publish": {"eventExclude": value}}
        validation.normalise(changes)
        assert changes == {"publish": {"eventExclude": stored}}, value


# Moves at three heights (ZChange each) and a position report (M114: PositionUpdate).
GCODE = layers_gcode(4, before_end=("M114",))
EXCLUDED = ("ZChange", "PositionUpdate")


def print_events(octoprint, sub, name: str) -> list[str]:
    """Prints the uploaded `name`; the names of the events published from PrintStarted to
    PrintDone, in order."""
    sub.clear()
    octoprint.print_file(name)
    octoprint.wait_job_done(timeout=60, name=name)
    sub.wait_for(event_topic("PrintDone"), timeout=15)
    print(f"events of the print: {[m.topic for m in sub.messages()]}")
    names = [m.topic[len(event_topic("")) :] for m in sub.messages(f"{BASE}event/#")]
    return names[names.index("PrintStarted") : names.index("PrintDone") + 1]


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_octoprint_leaves_out_excluded_events_and_only_those(
    broker, subscriber_factory, octoprint_factory
):
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        broker_settings(broker, publish={"eventExclude": ["ZChange", "Position*"]}),
        # Achievements come with a print once ("your first print"): the prints below are to
        # bring the same events each time.
        extra_config={"plugins": {"_disabled": [*DISABLED_PLUGINS, "achievements"]}},
    )
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    octoprint.connect_printer()
    sub.wait_for(event_topic("Connected"), timeout=15)
    # Analysed before printing: an analysis paused by the first print would add its events.
    upload_analysed(octoprint, sub, "exclude.gcode", GCODE)

    without = print_events(octoprint, sub, "exclude.gcode")
    assert not [n for n in without if n in EXCLUDED], without

    # A save with an unusable pattern is refused whole, with the reason in the log.
    # (Nothing else changed, so OctoPrint fires no SettingsUpdated; the save is done when the
    # request returns.)
    changes = {"eventExclude": ["ZChange", "Pos[ition"]}
    octoprint.save_settings({"plugins": {"mqtt": {"publish": changes}}})
    assert mqtt_config(octoprint)["publish"]["eventExclude"] == ["ZChange", "Position*"]
    assert (
        'MQTT setting publish.eventExclude not saved: "Pos[ition": the [ at character 4 is '
        "never closed" in octoprint.log_text()
    )

    # Nothing excluded: the same print brings the same events, and the excluded ones with them.
    octoprint.save_settings({"plugins": {"mqtt": {"publish": {"eventExclude": []}}}})
    sub.wait_for(event_topic("SettingsUpdated"), timeout=10)
    with_all = print_events(octoprint, sub, "exclude.gcode")
    assert with_all.count("ZChange") >= 3 and "PositionUpdate" in with_all, with_all
    assert [n for n in with_all if n not in EXCLUDED] == without

    # Written as text through the settings API, stored as a list, applied at once.
    octoprint.save_settings(
        {"plugins": {"mqtt": {"publish": {"eventExclude": "PositionUpdate, Z*"}}}}
    )
    sub.wait_for(event_topic("SettingsUpdated"), timeout=10)
    assert mqtt_config(octoprint)["publish"]["eventExclude"] == ["PositionUpdate", "Z*"]
    assert print_events(octoprint, sub, "exclude.gcode") == without
    assert_no_traceback(octoprint.log_text())


@pytest.mark.e2e
@pytest.mark.browser
@pytest.mark.timeout(240)
def test_the_settings_page_field(broker, subscriber_factory, octoprint_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"Debian's chromium is not installed at {CHROMIUM} (scripts/test.sh installs it)",
            pytrace=False,
        )
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(broker_settings(broker))
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            ui = OctoPrintUi(chromium, octoprint, ADMIN_USER, ADMIN_PASSWORD)
            page = ui.page
            field = page.locator("#mqtt_event_exclude")
            error = page.locator("#mqtt_tab_events .control-group.error .mqtt-field-error")
            ui.open_settings("settings_plugin_mqtt")
            page.click('#mqtt_tabs a[href="#mqtt_tab_events"]')
            expect(field).to_have_value("")
            expect(field).to_have_attribute("placeholder", "ZChange, Position*")

            # Typed key by key: separators stay as typed until the next name comes.
            field.press_sequentially("ZChange, ")
            expect(field).to_have_value("ZChange, ")
            field.press_sequentially("Position*  plugin_*")
            expect(field).to_have_value("ZChange, Position*  plugin_*")
            expect(error).to_have_count(0)
            ui.screenshot("settings-event-exclude", "#settings_plugin_mqtt")
            ui.save_settings()
            sub.wait_for(event_topic("SettingsUpdated"), timeout=10)
            stored = mqtt_config(octoprint)["publish"]["eventExclude"]
            assert stored == ["ZChange", "Position*", "plugin_*"], stored

            # Shown again as the list it is; a broken pattern is named as typed, with the
            # server's words, and Save puts the saved list back.
            ui.open_settings("settings_plugin_mqtt")
            page.click('#mqtt_tabs a[href="#mqtt_tab_events"]')
            expect(field).to_have_value("ZChange, Position*, plugin_*")
            field.fill("ZChange Pos[ition")
            reason = validation.problems(
                {"publish": {"eventExclude": ["ZChange", "Pos[ition"]}}, {}
            )[("publish", "eventExclude")]
            expect(error).to_have_text(reason)
            assert reason == '"Pos[ition": the [ at character 4 is never closed'
            ui.screenshot("settings-event-exclude-error", "#settings_plugin_mqtt")
            ui.save_settings()
            expect(
                page.locator(".ui-pnotify").filter(has_text="MQTT settings not saved")
            ).to_contain_text("publish.eventExclude")
            stored = mqtt_config(octoprint)["publish"]["eventExclude"]
            assert stored == ["ZChange", "Position*", "plugin_*"], stored
            ui.close()
        finally:
            chromium.close()
    assert_no_traceback(octoprint.log_text())
