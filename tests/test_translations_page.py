"""A locale in the plugin's own translations folder reaches the page: scripts/translations.sh
creates and compiles a German catalog with four messages translated in a copy of the
installed plugin, a real OctoPrint whose default language is German loads that copy, and
headless Chromium shows the German words the templates render (Jinja, one with a placeholder
holding a live element) and those the JavaScript builds, and the English of every message
the catalog leaves untranslated.

The copy (under tmp_path, first on the server's PYTHONPATH) keeps the installed plugin, which
the other tests use, as it is.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po, write_po
from playwright.sync_api import expect
from support.browser_env import OctoPrintUi
from support.octoprint_env import ADMIN_PASSWORD, ADMIN_USER

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "translations.sh"
PYBABEL = Path(sys.executable).parent / "pybabel"
# None of these is in OctoPrint's own German catalog, which would translate it too.
GERMAN = {
    "Test connection": "Verbindung testen",  # the template
    "A pause request goes to %(topic)s": "Eine Pause-Anfrage geht an %(topic)s",  # the template
    "Not configured": "Nicht eingerichtet",  # mqtt.js, the status
    "published": "veröffentlicht",  # mqtt.js, a counter
}


def plugin_copy(tmp_path: Path) -> Path:
    """The installed package copied to tmp_path/site/octoprint_mqtt."""
    installed = Path(importlib.util.find_spec("octoprint_mqtt").origin).parent
    copy = tmp_path / "site" / "octoprint_mqtt"
    shutil.copytree(installed, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def translations(folder: Path, *args: str) -> str:
    env = {**os.environ, "TRANSLATIONS": str(folder), "PYBABEL": str(PYBABEL)}
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout + done.stderr


def add_german(folder: Path) -> None:
    """A de catalog from the committed messages.pot, as a translator starts one, with the
    GERMAN messages filled in; compiled to the .mo the templates read (the JavaScript
    catalog OctoPrint builds from the .po)."""
    translations(folder, "update", "de")
    po = folder / "de" / "LC_MESSAGES" / "messages.po"
    with open(po, "rb") as f:
        catalog = read_po(f, locale="de")
    for msgid, text in GERMAN.items():
        assert msgid in catalog, f"{msgid!r} is not in messages.pot"
        catalog[msgid].string = text
    with open(po, "wb") as f:
        write_po(f, catalog)
    report = translations(folder, "compile")
    assert (po.parent / "messages.mo").is_file(), report


@pytest.mark.timeout(300)
def test_a_german_catalog_translates_the_templates_and_the_javascript(
    chromium, tmp_path, octoprint_factory
):
    copy = plugin_copy(tmp_path)
    add_german(copy / "translations")
    octoprint = octoprint_factory(
        {},
        extra_config={"appearance": {"defaultLanguage": "de"}},
        env={"PYTHONPATH": str(copy.parent)},
    )
    assert str(copy) in octoprint.log_text(), "the server did not load the plugin's copy"

    ui = OctoPrintUi(chromium, octoprint, ADMIN_USER, ADMIN_PASSWORD)
    page = ui.page
    # The JavaScript: the status and the tooltip built around it ("MQTT: %(state)s" is
    # untranslated, so English with the German state in it).
    expect(page.locator("#mqtt_indicator")).to_have_attribute(
        "title", re.compile(r"^MQTT: Nicht eingerichtet")
    )
    ui.open_settings("settings_plugin_mqtt")
    expect(page.locator("#mqtt_status_state")).to_have_text("Nicht eingerichtet")
    counter = page.locator('#mqtt_status_counters [data-counter="published"]')
    expect(counter).to_have_text(re.compile(r"^\s*0\s+veröffentlicht\s*$"))
    expect(page.locator('#mqtt_status_counters [data-counter="queued"]')).to_contain_text("queued")
    # The template: a plain message, one left English, and one whose placeholder is the
    # element Knockout fills in.
    expect(page.locator("#mqtt_test_button")).to_have_text(re.compile(r"^\s*Verbindung testen\s*$"))
    expect(page.locator("#mqtt_status")).to_contain_text(
        "tries the settings below as entered, without saving them"
    )
    page.click('#mqtt_tabs a[href="#mqtt_tab_control"]')
    example = page.locator("#mqtt_control_request_example")
    expect(example).to_have_text("octoprint/control/pause")
    expect(page.locator("#mqtt_tab_control .mqtt-control-full").first).to_have_text(
        re.compile(r"^\s*Eine Pause-Anfrage geht an octoprint/control/pause\s*$")
    )
    ui.screenshot("settings-de", "#settings_plugin_mqtt")
    ui.close()
