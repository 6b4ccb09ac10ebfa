"""The settings page and the live connection status as a person uses them: headless Chromium
(Debian's package, driven by Playwright) against a real OctoPrint with the plugin installed and
a real Mosquitto that the test stops and restarts. Screenshots of every state land in
tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from playwright.sync_api import expect
from support import homeassistant as homeassistant_support
from support.browser_env import OctoPrintUi
from support.mqtt_env import read_retained
from support.octoprint_env import ADMIN_PASSWORD, ADMIN_USER

# The installed plugin is checked by conftest.py, as for every e2e test. Deselect the browser
# tests with -m "not browser" where there is no Debian chromium (the release workflow does).
pytestmark = [pytest.mark.e2e, pytest.mark.browser]

STATUS_TOPIC = "octoprint/mqtt"
USER, WRONG, RIGHT = "printer", "wrong-pw-U1x8", "right-pw-B4n6"
VIEWER, VIEWER_PASSWORD = "viewer", "viewer-pw-for-tests"
REFUSED = re.compile(r"refused the connection: (bad user name or password|not authorised)")
# How soon the page must show a change the server pushed.
PUSH_TIMEOUT_MS = 10_000
# Pixels of the page's top that show the navbar and the indicator's details below it.
NAVBAR = 140
NODE_ID_RULE = "1 to 64 letters, digits, '_' or '-'"


@pytest.mark.timeout(300)
def test_settings_page_test_button_and_live_indicator(
    chromium, password_broker_factory, subscriber_factory, octoprint_factory
):
    broker = password_broker_factory(USER, RIGHT)
    sub = subscriber_factory(broker.host, broker.port, STATUS_TOPIC)
    octoprint = octoprint_factory({}, start=False)
    viewer_key = octoprint.add_user(VIEWER, VIEWER_PASSWORD)
    octoprint.start()

    ui = OctoPrintUi(chromium, octoprint, ADMIN_USER, ADMIN_PASSWORD)
    page = ui.page
    indicator = page.locator("#mqtt_indicator")
    # No broker configured yet: the indicator says so.
    expect(indicator).to_have_attribute("data-state", "idle")
    ui.screenshot("indicator-idle", top=NAVBAR)

    ui.open_settings("settings_plugin_mqtt")
    expect(page.locator("#mqtt_status_state")).to_have_text("Not configured")

    # Checked as typed, with the message next to the field.
    page.fill("#mqtt_broker_port", "70000")
    expect(page.locator("#mqtt_tab_broker .mqtt-field-error").nth(1)).to_contain_text(
        "whole number from 1 to 65535"
    )
    page.click('#mqtt_tabs a[href="#mqtt_tab_topics"]')
    page.fill("#mqtt_event_topic", "event/+/x")
    expect(page.locator("#mqtt_tab_topics")).to_contain_text("wildcards + or #")
    ui.screenshot("settings-validation", "#settings_plugin_mqtt")
    # Left as it is: Save puts it back to the saved value (below).
    page.click('#mqtt_tabs a[href="#mqtt_tab_broker"]')

    # Wrong credentials: Test shows the broker's refusal, and nothing is saved or connected.
    page.fill("#mqtt_broker_url", broker.host)
    page.fill("#mqtt_broker_port", str(broker.port))
    page.click('#mqtt_tabs a[href="#mqtt_tab_security"]')
    page.fill("#mqtt_broker_username", USER)
    page.fill("#mqtt_broker_password", WRONG)
    page.click("#mqtt_test_button")
    result = page.locator("#mqtt_test_result")
    expect(result).to_have_text(REFUSED, timeout=PUSH_TIMEOUT_MS)
    expect(result).to_have_class(re.compile("alert-error"))
    ui.screenshot("settings-test-refused", "#settings_plugin_mqtt")

    # Fixed: connected, still without saving.
    page.fill("#mqtt_broker_password", RIGHT)
    page.click("#mqtt_test_button")
    expect(result).to_have_text(
        re.compile(f"Connected to {broker.host}:{broker.port} with MQTT 3.1.1"),
        timeout=PUSH_TIMEOUT_MS,
    )
    expect(result).to_have_class(re.compile("alert-success"))
    ui.screenshot("settings-test-connected", "#settings_plugin_mqtt")
    assert not sub.messages(STATUS_TOPIC), "a test must not publish on the status topic"
    assert octoprint.get("/api/plugin/mqtt")["status"]["state"] == "idle"

    # Save: the plugin connects; the broker has `connected`, the page shows it.
    ui.save_settings()
    expect(page.locator(".ui-pnotify").filter(has_text="MQTT settings not saved")).to_contain_text(
        "publish.eventTopic"
    )
    sub.wait_for(STATUS_TOPIC, timeout=20, predicate=lambda m: m.payload == b"connected")
    assert "eventTopic" not in octoprint.read_config()["plugins"]["mqtt"].get("publish", {})
    expect(indicator).to_have_attribute("data-state", "connected", timeout=PUSH_TIMEOUT_MS)
    expect(indicator).to_have_attribute("title", f"MQTT: Connected ({broker.host}:{broker.port})")
    ui.screenshot("indicator-connected", top=NAVBAR)
    ui.open_settings("settings_plugin_mqtt")
    expect(page.locator("#mqtt_status_state")).to_have_text("Connected")
    expect(page.locator("#mqtt_status_broker")).to_have_text(f"{broker.host}:{broker.port}")
    page.click("#mqtt_test_button")  # the saved settings, next to the live connection
    expect(result).to_have_class(re.compile("alert-success"), timeout=PUSH_TIMEOUT_MS)
    page.evaluate("PNotify.removeAll()")
    ui.screenshot("settings-connected", "#settings_plugin_mqtt")
    ui.screenshot("settings-dialog", "#settings_dialog")  # docs/settings.png
    page.click('[data-test-id="settings-close-button"]')

    # Outage: pushed to the page within seconds, with the reason.
    broker.stop()
    stopped = time.monotonic()
    expect(indicator).to_have_attribute("data-state", "backing_off", timeout=PUSH_TIMEOUT_MS)
    print(f"outage shown {time.monotonic() - stopped:.2f} s after the broker stopped")
    expect(indicator).to_have_attribute(
        "title", re.compile(r"MQTT: Disconnected \(.+\): (the broker closed|connection refused)")
    )
    indicator.hover()
    expect(page.locator("#mqtt_indicator_details")).to_be_visible()
    ui.screenshot("indicator-down", top=NAVBAR)

    # Back: the plugin reconnects by itself (backoff 1, 2, 4 s) and the page follows.
    broker.start()
    started = time.monotonic()
    expect(indicator).to_have_attribute("data-state", "connected", timeout=20_000)
    print(f"reconnection shown {time.monotonic() - started:.2f} s after the broker started")
    ui.screenshot("indicator-reconnected", top=NAVBAR)
    indicator.click()  # opens Settings › MQTT
    expect(page.locator("#settings_plugin_mqtt")).to_be_visible()
    ui.close()

    # The API as the page uses it. A blank password tests with the saved one, but only
    # against the broker it was saved for.
    api = f"{octoprint.url}/api/plugin/mqtt"
    assert octoprint.get("/api/plugin/mqtt")["status"]["state"] == "connected"
    blank = {"url": broker.host, "port": broker.port, "username": USER, "password": ""}
    command = {"command": "test_connection", "settings": {"broker": blank}}
    assert octoprint.post("/api/plugin/mqtt", command).json()["ok"] is True
    command["settings"]["broker"]["url"] = "localhost"  # same broker, another name
    assert REFUSED.search(octoprint.post("/api/plugin/mqtt", command).json()["reason"])

    # A bad value sent to OctoPrint's settings API is not saved, and the log says why.
    octoprint.save_settings({"plugins": {"mqtt": {"broker": {"port": 70000}}}})
    assert octoprint.read_config()["plugins"]["mqtt"]["broker"]["port"] == broker.port
    assert "MQTT setting broker.port not saved" in octoprint.log_text()

    # A user without the permission: 403 from the API, no status, no password on the page.
    headers = {"X-Api-Key": viewer_key}
    assert requests.get(api, headers=headers, timeout=10).status_code == 403
    response = requests.post(
        api, json={"command": "test_connection", "settings": {}}, headers=headers, timeout=10
    )
    assert response.status_code == 403
    viewer = OctoPrintUi(chromium, octoprint, VIEWER, VIEWER_PASSWORD)
    expect(viewer.page.locator("#mqtt_indicator")).to_be_hidden()
    assert RIGHT not in viewer.page.content()
    viewer.close()


@pytest.mark.timeout(180)
def test_the_state_and_pacing_fields(chromium, broker, subscriber_factory, octoprint_factory):
    sub = subscriber_factory(broker.host, broker.port, "octoprint/#")
    octoprint = octoprint_factory({"broker": {"url": broker.host, "port": broker.port}})
    sub.wait_for("octoprint/state", timeout=30)
    ui = OctoPrintUi(chromium, octoprint, ADMIN_USER, ADMIN_PASSWORD)
    page = ui.page
    ui.open_settings("settings_plugin_mqtt")
    page.click('#mqtt_tabs a[href="#mqtt_tab_events"]')
    expect(page.locator("#mqtt_state_active")).to_be_checked()
    page.fill("#mqtt_state_interval", "-1")
    expect(page.locator("#mqtt_tab_events")).to_contain_text("a number of seconds from 0 to 3600")
    page.fill("#mqtt_state_interval", "2.5")
    page.fill("#mqtt_temperature_interval", "3")
    page.fill("#mqtt_state_expiry", "120")
    expect(page.locator("#mqtt_tab_events")).not_to_contain_text("a number of")
    expect(page.locator("#mqtt_tab_events")).not_to_contain_text("a whole number")
    # The pacing fields belong to the state topic: hidden while it is off.
    page.uncheck("#mqtt_state_active")
    expect(page.locator("#mqtt_state_interval")).to_be_hidden()
    page.check("#mqtt_state_active")
    page.click('#mqtt_tabs a[href="#mqtt_tab_topics"]')
    page.fill("#mqtt_state_topic", "printer/#")
    expect(page.locator("#mqtt_tab_topics")).to_contain_text("wildcards + or #")
    page.fill("#mqtt_state_topic", "printer/state")
    ui.screenshot("settings-state", "#settings_plugin_mqtt")
    ui.save_settings()
    # Numbers, as config.yaml readers expect; the state at once under its new topic.
    publish = octoprint.read_config()["plugins"]["mqtt"]["publish"]
    assert (publish["stateInterval"], publish["temperatureInterval"]) == (2.5, 3.0), publish
    assert publish["stateExpiry"] == 120 and publish["stateTopic"] == "printer/state", publish
    sub.wait_for("octoprint/printer/state", timeout=10)
    ui.close()


def discovery_configs(broker, prefix: str, node_id: str, timeout: float = 15.0) -> dict:
    """The retained discovery configs of `node_id` under `prefix`, once their number holds
    still (they go out one message each, right after the save)."""
    pattern = re.compile(rf"{re.escape(prefix)}/[a-z_]+/{re.escape(node_id)}/[a-z0-9_]+/config")
    deadline = time.monotonic() + timeout
    found: dict = {}
    while time.monotonic() < deadline:
        retained = read_retained(broker.host, broker.port, f"{prefix}/#")
        if retained and len(retained) == len(found):
            break
        found = retained
    assert found, f"no retained configs under {prefix}/ after {timeout}s"
    assert all(pattern.fullmatch(t) for t in found), sorted(found)
    return {t: json.loads(m.payload) for t, m in found.items()}


@pytest.mark.timeout(180)
def test_the_home_assistant_tab(chromium, broker, octoprint_factory):
    octoprint = octoprint_factory({"broker": {"url": broker.host, "port": broker.port}})
    generated = octoprint.get("/api/plugin/mqtt")["homeassistant"]["node_id"]
    assert re.fullmatch(r"octoprint-[0-9a-f]{10}", generated), generated
    ui = OctoPrintUi(chromium, octoprint, ADMIN_USER, ADMIN_PASSWORD)
    page = ui.page
    tab = page.locator("#mqtt_tab_homeassistant")
    ui.open_settings("settings_plugin_mqtt")
    page.click('#mqtt_tabs a[href="#mqtt_tab_homeassistant"]')
    expect(page.locator("#mqtt_ha_birth_topic")).to_have_value("homeassistant/status")
    expect(page.locator("#mqtt_ha_discovery")).not_to_be_checked()
    expect(page.locator("#mqtt_ha_discovery")).to_be_enabled()
    expect(page.locator("#mqtt_ha_prefix")).to_have_value("homeassistant")
    expect(page.locator("#mqtt_ha_node_id")).to_have_value("")
    expect(page.locator("#mqtt_ha_node_id")).to_have_attribute("placeholder", generated)
    expect(page.locator("#mqtt_ha_status")).to_have_text("Discovery is off.")
    expect(tab.locator('a[href$="docs/homeassistant.md"]')).to_have_count(1)

    # Checked as typed, with the core's rules.
    page.fill("#mqtt_ha_node_id", "my printer")
    expect(tab).to_contain_text(NODE_ID_RULE)
    page.fill("#mqtt_ha_prefix", "ha/#")
    expect(tab).to_contain_text("wildcards + or #")
    page.fill("#mqtt_ha_prefix", "")
    expect(tab).to_contain_text("the discovery prefix cannot be empty")
    page.fill("#mqtt_ha_birth_topic", "ha/+")
    expect(tab.locator(".mqtt-field-error").first).to_contain_text("wildcards + or #")
    ui.screenshot("settings-homeassistant-invalid", "#settings_plugin_mqtt")

    page.fill("#mqtt_ha_birth_topic", "ha/status")
    page.fill("#mqtt_ha_prefix", "myha/")
    page.fill("#mqtt_ha_node_id", "workshop_1")
    page.check("#mqtt_ha_discovery")
    expect(tab.locator(".mqtt-field-error:not(:empty)")).to_have_count(0)
    ui.save_settings()
    homeassistant = octoprint.read_config()["plugins"]["mqtt"]["homeassistant"]
    assert homeassistant == {
        "birthTopic": "ha/status",
        "discovery": True,
        "prefix": "myha/",
        "nodeId": "workshop_1",
    }, homeassistant
    # The trailing slash is the prefix's own (the core drops it), not an empty level.
    configs = discovery_configs(broker, "myha", "workshop_1")
    assert "myha/sensor/workshop_1/state/config" in configs, sorted(configs)
    assert all(c["state_topic"] == "octoprint/state" for c in configs.values()), configs

    # The count arrives with the status pushes that publishing the configs caused.
    ui.open_settings("settings_plugin_mqtt")
    page.click('#mqtt_tabs a[href="#mqtt_tab_homeassistant"]')
    expect(page.locator("#mqtt_ha_status")).to_have_text(
        f"{len(configs)} entities published as node workshop_1", timeout=PUSH_TIMEOUT_MS
    )
    expect(page.locator("#mqtt_ha_node_id")).to_have_value("workshop_1")
    ui.screenshot("settings-homeassistant", "#settings_plugin_mqtt")

    # An invalid node id is not saved: the page puts the saved one back and says so.
    page.fill("#mqtt_ha_node_id", "a/b")
    expect(tab).to_contain_text(NODE_ID_RULE)
    ui.save_settings()
    expect(page.locator(".ui-pnotify").filter(has_text="MQTT settings not saved")).to_contain_text(
        "homeassistant.nodeId"
    )
    assert octoprint.read_config()["plugins"]["mqtt"]["homeassistant"]["nodeId"] == "workshop_1"
    assert set(discovery_configs(broker, "myha", "workshop_1")) == set(configs)
    ui.close()


@pytest.mark.timeout(180)
def test_discovery_is_off_when_the_other_plugin_is_loaded(
    chromium, broker, octoprint_factory, homeassistant_installed
):
    settings = {
        "broker": {"url": broker.host, "port": broker.port},
        "homeassistant": {"discovery": True, "nodeId": "ours_1"},
    }
    octoprint = homeassistant_support.start_octoprint(octoprint_factory, settings)
    assert re.search(r"HomeAssistant Discovery \([\d.]+\) = ", octoprint.log_text()), (
        "OctoPrint-HomeAssistant is not loaded"
    )
    homeassistant = octoprint.get("/api/plugin/mqtt")["homeassistant"]
    assert homeassistant["off"] == "other_plugin", homeassistant
    assert homeassistant["other_plugin"] == "OctoPrint-HomeAssistant", homeassistant

    ui = OctoPrintUi(chromium, octoprint, ADMIN_USER, ADMIN_PASSWORD)
    page = ui.page
    ui.open_settings("settings_plugin_mqtt")
    page.click('#mqtt_tabs a[href="#mqtt_tab_homeassistant"]')
    expect(page.locator("#mqtt_ha_discovery")).to_be_disabled()
    expect(page.locator("#mqtt_ha_other_plugin")).to_be_visible()
    expect(page.locator("#mqtt_ha_other_plugin")).to_contain_text(
        "OctoPrint-HomeAssistant is loaded: it already creates the Home Assistant device"
    )
    expect(page.locator("#mqtt_ha_status")).to_have_text(
        "Discovery is off: OctoPrint-HomeAssistant is loaded."
    )
    ui.screenshot("settings-homeassistant-other-plugin", "#settings_plugin_mqtt")
    ui.close()
    # The other plugin's device only: nothing retained under our node id.
    retained = read_retained(broker.host, broker.port, "homeassistant/#", duration=1.0)
    assert not [t for t in retained if "/ours_1/" in t], sorted(retained)
