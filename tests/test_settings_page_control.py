"""The settings page's Remote control tab as an admin uses it: headless Chromium (Debian's
package, driven by Playwright) against a real OctoPrint with the plugin installed and a real
Mosquitto. What the page saves is read back from OctoPrint (its settings API and config.yaml)
and proved in force by requests over MQTT. Screenshots land in tests/artifacts/.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect
from support.browser_env import OctoPrintUi
from support.control import ALL_COMMANDS, Requester
from support.octoprint_env import ADMIN_PASSWORD, ADMIN_USER

from octoprint_mqtt_core import _core

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

BASE = "octoprint/"
# What the commands must be seen to allow before an admin ticks them (a few, word for word).
WARNINGS = {
    "gcode": "any G-code, including moves and heater settings: as dangerous as the terminal",
    "temperature": "set heater targets (0–500 °C)",
    "start": "print any file already on OctoPrint or its SD card",
    "home": "move the print head (refused while printing)",
    "jog": "move the print head (refused while printing)",
    "pause": "the current job",
    "status": "read the state (harmless)",
}
TOPIC_RULE = "the control topic must hold {command} exactly once"
DIMMED = re.compile(r"\bmqtt-control-off\b")


def first_answer(requester: Requester, command: str, topic: str, timeout: float = 15.0) -> dict:
    """The answer to a `command` request on `topic`, asked again until one comes: the
    plugin subscribes only after the save has reached the core."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requester.request(command, timeout=1.0, topic=topic)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


@pytest.mark.timeout(240)
def test_the_remote_control_tab(chromium, broker, octoprint_factory):
    octoprint = octoprint_factory({"broker": {"url": broker.host, "port": broker.port}})
    commands = list(_core.default_settings()["control"]["commands"])
    assert sorted(commands) == sorted(ALL_COMMANDS), commands
    ui = OctoPrintUi(chromium, octoprint, ADMIN_USER, ADMIN_PASSWORD)
    page = ui.page
    tab = page.locator("#mqtt_tab_control")
    ui.open_settings("settings_plugin_mqtt")
    page.click('#mqtt_tabs a[href="#mqtt_tab_control"]')

    # Off, every command listed with what it allows, none allowed, none changeable yet.
    expect(page.locator("#mqtt_control_warning")).to_contain_text(
        "Anyone who may publish to these topics on the broker can use every command"
    )
    acl_link = page.locator('#mqtt_control_warning a[href$="docs/control.md#broker-acl"]')
    expect(acl_link).to_have_count(1)
    expect(page.locator("#mqtt_control_active")).not_to_be_checked()
    expect(page.locator("#mqtt_control_off_note")).to_be_visible()
    expect(page.locator("#mqtt_control_commands")).to_have_class(DIMMED)
    rows = tab.locator(".mqtt-control-command")
    expect(rows).to_have_count(len(commands))
    for name in commands:
        row = tab.locator(f'.mqtt-control-command[data-command="{name}"]')
        expect(row.locator("code")).to_have_text(name)
        assert row.locator(".mqtt-control-risk").inner_text().strip(), f"{name}: no warning"
        if name in WARNINGS:
            expect(row.locator(".mqtt-control-risk")).to_contain_text(WARNINGS[name])
        checkbox = page.locator(f"#mqtt_control_command_{name}")
        expect(checkbox).not_to_be_checked()
        expect(checkbox).to_be_disabled()
    ui.screenshot("settings-control-commands-off", "#mqtt_control_commands")

    # The full topics, as typed (the base topic from the Topics tab included).
    request, response = (
        page.locator("#mqtt_control_request_example"),
        page.locator("#mqtt_control_response_example"),
    )
    expect(page.locator("#mqtt_control_topic")).to_have_value("control/{command}")
    expect(request).to_have_text("octoprint/control/pause")
    expect(response).to_have_text("octoprint/control/response")
    page.fill("#mqtt_control_topic", " cmd/{command}/now ")  # trimmed, as the core does
    expect(request).to_have_text("octoprint/cmd/pause/now")
    page.fill("#mqtt_control_topic", "cmd/{command}/now")
    page.fill("#mqtt_control_response_topic", "cmd/answers")
    expect(response).to_have_text("octoprint/cmd/answers")
    page.click('#mqtt_tabs a[href="#mqtt_tab_topics"]')
    page.fill("#mqtt_base_topic", "shop/p1/")
    page.click('#mqtt_tabs a[href="#mqtt_tab_control"]')
    expect(request).to_have_text("shop/p1/cmd/pause/now")
    expect(response).to_have_text("shop/p1/cmd/answers")
    page.click('#mqtt_tabs a[href="#mqtt_tab_topics"]')
    page.fill("#mqtt_base_topic", BASE)
    page.click('#mqtt_tabs a[href="#mqtt_tab_control"]')
    # The requester below listens on the default response topic.
    page.fill("#mqtt_control_response_topic", "control/response")

    # On, with pause allowed and nothing else.
    page.check("#mqtt_control_active")
    expect(page.locator("#mqtt_control_off_note")).to_be_hidden()
    expect(page.locator("#mqtt_control_commands")).not_to_have_class(DIMMED)
    for name in commands:
        expect(page.locator(f"#mqtt_control_command_{name}")).to_be_enabled()
    page.check("#mqtt_control_command_pause")
    expect(tab.locator(".mqtt-field-error:not(:empty)")).to_have_count(0)
    ui.screenshot("settings-control", "#settings_plugin_mqtt")
    ui.screenshot("settings-control-commands", "#mqtt_control_commands")
    ui.save_settings()

    control = octoprint.settings()["plugins"]["mqtt"]["control"]
    assert control == {
        "active": True,
        "topic": "cmd/{command}/now",
        "responseTopic": "control/response",
        "commands": {name: name == "pause" for name in commands},
    }, control
    # Only what differs from the defaults is stored.
    stored = octoprint.read_config()["plugins"]["mqtt"]["control"]
    assert stored == {
        "active": True,
        "topic": "cmd/{command}/now",
        "commands": {"pause": True},
    }, stored

    # In force: pause is taken (and refused by the idle printer), gcode is not allowed.
    requester = Requester(broker.host, broker.port, BASE)
    try:
        paused = first_answer(requester, "pause", f"{BASE}cmd/pause/now")
        assert paused["ok"] is False, paused
        assert paused["error"].startswith("the printer is not printing"), paused
        gcode = requester.request("gcode", {"commands": ["M117 hi"]}, topic=f"{BASE}cmd/gcode/now")
        assert gcode["ok"] is False and "is not allowed" in gcode["error"], gcode
    finally:
        requester.close()

    # An invalid topic is shown as typed and not saved: the page puts the saved one back.
    ui.open_settings("settings_plugin_mqtt")
    page.click('#mqtt_tabs a[href="#mqtt_tab_control"]')
    expect(page.locator("#mqtt_control_command_pause")).to_be_checked()
    page.fill("#mqtt_control_topic", "control")
    expect(tab.locator(".mqtt-field-error").first).to_have_text(TOPIC_RULE)
    expect(request).to_be_hidden()
    ui.screenshot("settings-control-invalid", "#settings_plugin_mqtt")
    ui.save_settings()
    expect(page.locator(".ui-pnotify").filter(has_text="MQTT settings not saved")).to_contain_text(
        "control.topic"
    )
    stored = octoprint.read_config()["plugins"]["mqtt"]["control"]
    assert stored["topic"] == "cmd/{command}/now", stored
    assert octoprint.settings()["plugins"]["mqtt"]["control"]["topic"] == "cmd/{command}/now"
    ui.close()
