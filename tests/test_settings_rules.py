"""One source for the settings' defaults and field rules: the core's. The plugin hands
OctoPrint the core's defaults tree, the server refuses on save what the core's rules refuse,
and the settings page, which gets the rules through its template, gives the same verdict on
the same table of values (headless Chromium against a real OctoPrint). Port 0 is refused by
all three, and by the core's parse of stored settings.
"""

from __future__ import annotations

import os

import pytest
from playwright import sync_api
from support import browser_env
from support.corekit import LOGGER, settings_for
from support.octoprint_env import ADMIN_PASSWORD, ADMIN_USER

from octoprint_mqtt import validation
from octoprint_mqtt.plugin import MqttPlugin, settings_defaults
from octoprint_mqtt_core import _core

EXCLUDE = ("publish", "eventExclude")
TEMPLATES = {"progressTopic": "{progress}", "temperatureTopic": "{temp}", "metadataTopic": "{key}"}
INTERVALS = ("stateInterval", "temperatureInterval")


def HA(key):  # noqa: N802 (reads like the other path constants in the table)
    return ("homeassistant", key)


# (path, value, accepted), judged with the default base topic "octoprint/".
TABLE = [
    *[(("broker", "port"), v, True) for v in (1, "1883", " 1884 ", 65535, 1883.0, "+8883")],
    *[(("broker", "port"), v, False) for v in (0, "0", 65536, -1, "", None, "abc", "80.5", True)],
    *[(("broker", "keepalive"), v, True) for v in (0, "60", 65535)],
    *[(("broker", "failover"), v, True) for v in ([], None, "", "b, c:1884", ["[::1]:1884"])],
    *[(("broker", "failover"), v, True) for v in ("fe80::1", " b ,", ["b:65535"])],
    *[(("broker", "failover"), v, False) for v in ("mqtt://b", "b:0", "b:x", [":1"], "b c")],
    *[(("broker", "failover"), v, False) for v in ("[::1", [5], "b/x", "b:65536")],
    *[(("broker", "keepalive"), v, False) for v in (-1, "", "1.5", 65536, None)],
    *[(("broker", "url"), v, True) for v in ("mqtt.local", " 10.0.0.5 ", "", None)],
    *[(("broker", "url"), v, False) for v in ("mqtt://h", "a b", 5)],
    *[(("publish", "offlineQueueSize"), v, True) for v in (0, "10000", 10_000_000)],
    *[(("publish", "offlineQueueSize"), v, False) for v in (-1, 10_000_001, "many", "")],
    *[(("publish", "temperatureThreshold"), v, True) for v in (0, "0.5", 0.1, "1e1", ".5")],
    *[(("publish", "temperatureThreshold"), v, False) for v in (-1, "", "warm", "inf", "NaN")],
    *[(("publish", "baseTopic"), v, True) for v in ("", "octoprint/", "a b/")],
    *[(("publish", "baseTopic"), v, False) for v in ("a/#/", "a/+/", "x\0/")],
    *[(("publish", "eventTopic"), v, True) for v in ("event/{event}", "e", "")],
    *[(("publish", "eventTopic"), v, False) for v in ("event/+/x", "#", "e\0")],
    *[(("publish", k), v, True) for k in TEMPLATES for v in ("x/" + TEMPLATES[k], "y")],
    *[(("publish", k), v, False) for k in TEMPLATES for v in ("x/+/" + TEMPLATES[k], "#")],
    *[(("publish", k), v, True) for k in INTERVALS for v in (0, "1.5", 3600, " 2 ")],
    *[(("publish", k), v, False) for k in INTERVALS for v in (-1, 3600.5, "", "soon", None)],
    *[(("publish", "stateExpiry"), v, True) for v in (0, "60", 4_294_967_295)],
    *[(("publish", "stateExpiry"), v, False) for v in (-1, 1.5, 4_294_967_296, "")],
    *[(("publish", "stateTopic"), v, True) for v in ("state", "printer/state")],
    *[(("publish", "stateTopic"), v, False) for v in ("state/#", "s/+", "x\0")],
    *[(("publish", "lwTopic"), v, True) for v in ("mqtt", "", "é" * 30_000)],
    *[(("publish", "lwTopic"), v, False) for v in ("st/#", "é" * 33_000)],
    *[(HA("birthTopic"), v, True) for v in ("", "homeassistant/status", " ha/status ")],
    *[(HA("birthTopic"), v, False) for v in ("ha/+", "ha/#", "x\0")],
    *[(HA("prefix"), v, True) for v in ("homeassistant", "ha/", "my ha")],
    *[(HA("prefix"), v, False) for v in ("", " ", "ha/#", "+")],
    *[(HA("nodeId"), v, True) for v in (None, "", "octoprint-1a2b", "Printer_2")],
    *[(HA("nodeId"), v, False) for v in ("my printer", "a/b", "é", 5, "x" * 65)],
    *[
        (("control", "topic"), v, True)
        for v in ("control/{command}", " {command} ", "a/{command}/b")
    ],
    *[(("control", "topic"), v, False) for v in ("control", "c/x{command}", "c/+/{command}", "")],
    *[(("control", "topic"), v, False) for v in ("{command}/{command}", "c/#/{command}")],
    *[(("control", "responseTopic"), v, True) for v in ("control/response", " r ")],
    *[(("control", "responseTopic"), v, False) for v in ("", "r/#", "control/status")],
    # Rust's trim and whitespace are Unicode's White_Space: U+0085 is trimmed (JavaScript's
    # trim keeps it), U+FEFF is not (JavaScript's trims it); ranges compare code points.
    *[(EXCLUDE, v, True) for v in ([], None, ["ZChange"], ["Position*", "plugin_*", "?"])],
    *[(EXCLUDE, v, True) for v in ("ZChange, Position*,", [" ZChange "], ["Print[!S]*"])],
    *[(EXCLUDE, v, True) for v in (["\x85ZChange"], ["\ufeffZ"], ["[\uff00-\U0001f600]"])],
    *[(EXCLUDE, [v], False) for v in ("Pos[ition", "a b", "x/y", "+", "#", "a\0", "", "\\*")],
    *[(EXCLUDE, [v], False) for v in ("[]", "[!]", "[z-a]", "Position*]", "Z\x85C", " \xa0")],
    *[(EXCLUDE, [v], False) for v in ("[\U0001f600-\uff00]", "a\u2028b", "a\x7f")],
    *[(EXCLUDE, v, False) for v in ("ZChange Home", 5, ["a", 1], ["a", None], {"a": 1}, True)],
]
IDS = [f"{'.'.join(p)}={v!r:.20}" for p, v, _ in TABLE]


def test_the_plugin_gives_octoprint_the_cores_defaults():
    assert settings_defaults() == _core.default_settings()
    assert MqttPlugin.get_settings_defaults(None) == _core.default_settings()
    # A fresh tree each time: OctoPrint may keep and change what it got.
    assert settings_defaults() is not settings_defaults()
    assert MqttPlugin.get_settings_version(None) == 1


def test_the_core_reads_its_defaults_without_a_warning(core_factory, caplog):
    core = core_factory(_core.default_settings())
    assert core.timestamp_field == "_timestamp"
    assert not [r for r in caplog.records if r.name == LOGGER and r.levelname == "WARNING"]


def server_reason(path, value) -> str:
    return validation.problems({path[0]: {path[1]: value}}, settings_defaults()).get(path, "")


@pytest.mark.parametrize(("path", "value", "accepted"), TABLE, ids=IDS)
def test_the_server_side(path, value, accepted):
    found = validation.problems({path[0]: {path[1]: value}}, settings_defaults())
    assert (path not in found) is accepted, found
    assert set(found) <= {path}, found


def test_every_rule_is_in_the_table():
    assert {tuple(r["path"]) for r in _core.setting_rules()} <= {p for p, _, _ in TABLE}


def test_a_stored_port_0_falls_back_to_1883_with_a_warning(core_factory, broker, caplog):
    core_factory(settings_for(broker, broker={"port": 0}))
    warned = [
        r.getMessage() for r in caplog.records if "plugins.mqtt.broker.port" in r.getMessage()
    ]
    assert len(warned) == 1 and "from 1 to 65535" in warned[0], warned
    tested = _core.test_connection(settings_for(broker, broker={"port": "0"}), 1.0)
    assert tested["broker"].endswith(":1883"), tested
    assert [w for w in tested["warnings"] if w.startswith("plugins.mqtt.broker.port:")], tested


@pytest.mark.e2e
@pytest.mark.browser
@pytest.mark.timeout(240)
def test_the_page_gives_the_same_verdicts(broker, octoprint_factory):
    if not os.path.exists(browser_env.CHROMIUM):
        pytest.fail(
            f"Debian's chromium is not installed at {browser_env.CHROMIUM} (scripts/test.sh "
            "installs it)",
            pytrace=False,
        )
    octoprint = octoprint_factory({"broker": {"url": broker.host, "port": broker.port}})
    with sync_api.sync_playwright() as playwright:
        chromium = browser_env.launch(playwright)
        try:
            ui = browser_env.OctoPrintUi(chromium, octoprint, ADMIN_USER, ADMIN_PASSWORD)
            ui.open_settings("settings_plugin_mqtt")
            page = ui.page
            verdicts = page.evaluate(
                """(table) => {
                    const vm = ko.dataFor(document.getElementById("settings_plugin_mqtt"));
                    return table.map(([path, value]) => vm.checkValue(path, value, "octoprint/"));
                }""",
                [[list(p), v] for p, v, _ in TABLE],
            )
            wrong = [
                (path, value, verdict)
                for (path, value, accepted), verdict in zip(TABLE, verdicts)
                if (verdict == "") is not accepted
            ]
            assert not wrong, wrong
            # Pattern lists: the page's reasons are the server's, word for word.
            differing = [
                (value, verdict, server_reason(path, value))
                for (path, value, _), verdict in zip(TABLE, verdicts)
                if path == EXCLUDE and verdict != server_reason(path, value)
            ]
            assert not differing, differing
            # And as typed, next to the field.
            page.fill("#mqtt_broker_port", "0")
            sync_api.expect(
                page.locator("#mqtt_tab_broker .mqtt-field-error").nth(1)
            ).to_contain_text("whole number from 1 to 65535")
            ui.close()
        finally:
            chromium.close()
