"""Two real OctoPrints publishing under one base topic, as a print farm's copied configuration
makes them: each one's API and settings page (headless Chromium) names the other's host, and
"Use topics of their own for this printer" gives it a base topic of its own, after which the
warning does not come back. The client ids differ and survive a restart."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from support.browser_env import OctoPrintUi
from support.e2ekit import wait_until
from support.octoprint_env import ADMIN_PASSWORD, ADMIN_USER

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def others(octoprint) -> list[dict]:
    return octoprint.get("/api/plugin/mqtt")["status"]["other_instances"]


def client_id(octoprint) -> str:
    lines = [line for line in octoprint.log_text().splitlines() if " as client " in line]
    return lines[-1].rsplit(" as client ", 1)[1].strip().strip('"')


@pytest.mark.timeout(300)
def test_two_octoprints_under_one_base_topic(chromium, broker, octoprint_factory):
    settings = {"broker": {"url": broker.host, "port": broker.port}}
    a = octoprint_factory(settings, extra_config={"appearance": {"name": "Farm Printer A"}})
    b = octoprint_factory(settings, extra_config={"appearance": {"name": "Farm Printer B"}})
    for octoprint, other in ((a, "Farm Printer B"), (b, "Farm Printer A")):
        found = wait_until(
            lambda octoprint=octoprint: others(octoprint), 15, lambda: "no other instance"
        )
        assert [o["host"] for o in found] == [other]
    assert "Another OctoPrint publishes under the same base topic" in a.log_text()
    first_id = client_id(a)
    assert first_id != client_id(b)
    assert first_id.startswith("octoprint-mqtt-")

    ui = OctoPrintUi(chromium, a, ADMIN_USER, ADMIN_PASSWORD)
    page = ui.page
    ui.open_settings("settings_plugin_mqtt")
    warning = page.locator("#mqtt_other_instances")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Farm Printer B")
    ui.screenshot("settings-other-instance", "#mqtt_other_instances")
    page.click('#mqtt_tabs a[href="#mqtt_tab_topics"]')
    page.click("#mqtt_own_topics")
    expect(page.locator("#mqtt_base_topic")).to_have_value("octoprint/farm-printer-a/")
    ui.save_settings()
    wait_until(
        lambda: (
            a.settings()["plugins"]["mqtt"]["publish"]["baseTopic"] == "octoprint/farm-printer-a/"
        ),
        15,
        lambda: "base topic not saved",
    )

    # Restarted under its own topics: nobody else there, the same client id.
    a.restart()
    wait_until(lambda: " as client " in a.log_text(), 30, lambda: "not connected")
    assert client_id(a) == first_id
    assert others(a) == []
