"""Headless Chromium (Debian's package) driven by Playwright, for the browser tests.

Playwright's own browser download is never used: the tests start /usr/bin/chromium with the
flags this machine needs (running as root, no network beyond loopback).
"""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps calling Google's hosts, which this network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# OctoPrint bundles its web assets on the first page load: slow on 2 cores.
FIRST_LOAD_TIMEOUT_MS = 120_000


def launch(playwright):
    """A headless Chromium; Playwright gives each launch a fresh profile directory."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000
    )


class OctoPrintUi:
    """One logged-in browser page on an OctoPrint instance."""

    def __init__(self, browser, octoprint, user: str, password: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.page.goto(octoprint.url + "/", timeout=FIRST_LOAD_TIMEOUT_MS)
        self.page.fill("#login-user", user)
        self.page.fill("#login-password", password)
        self.page.click("#login-button")
        self.page.wait_for_function(
            "() => window.OctoPrint && OctoPrint.coreui && OctoPrint.coreui.startedUp"
            " && OctoPrint.coreui.viewmodels.loginStateViewModel.isUser()",
            timeout=FIRST_LOAD_TIMEOUT_MS,
        )

    def open_settings(self, section_id: str) -> None:
        self.page.click("#navbar_show_settings")
        self.page.wait_for_selector("#settings_dialog", state="visible")
        self.page.click(f'#settings_dialog a[href="#{section_id}"]')
        self.page.wait_for_selector(f"#{section_id}", state="visible")

    def save_settings(self) -> None:
        self.page.click('[data-test-id="settings-save"]')
        self.page.wait_for_selector("#settings_dialog", state="hidden")

    def screenshot(self, name: str, selector: str | None = None, top: int | None = None) -> Path:
        """Saves tests/artifacts/<name>.png: of one element when a selector is given, of the
        page's top `top` pixels (the navbar with what drops down from it) when that is."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        if selector is not None:
            self.page.locator(selector).screenshot(path=str(path))
        elif top is not None:
            width = self.page.viewport_size["width"]
            self.page.screenshot(
                path=str(path), clip={"x": 0, "y": 0, "width": width, "height": top}
            )
        else:
            self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()
