"""The load check: a native part that cannot load, or one of another version than the plugin's,
disables the plugin, and a real OctoPrint keeps serving.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from support.e2ekit import BASE
from support.install_env import project_version

import octoprint_mqtt_core


def assert_disabled(octoprint, sub, reason: str) -> None:
    # OctoPrint came up (start() waits for its API) and keeps serving.
    assert octoprint.get("/api/version")["server"].startswith("1.")
    log = octoprint.log_text()
    assert f"The MQTT plugin is disabled: {reason}" in log, log[-3000:]
    assert re.search(r"Plugin MQTT \(.+\) did not pass check, not loading", log)
    # Nothing connected to the broker on the plugin's behalf.
    time.sleep(2)
    assert sub.messages(f"{BASE}#") == []
    octoprint.stop()
    assert octoprint.proc.returncode == 0, octoprint.serve_log_text()[-3000:]


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_native_module_that_cannot_load_disables_the_plugin(
    broker, subscriber_factory, octoprint_factory, tmp_path
):
    # A copy of the installed core package without its compiled module, first on the server's
    # path: what a user sees after installing a build for another platform or Python.
    installed = Path(octoprint_mqtt_core.__file__).parent
    shadow = tmp_path / "shadow"
    shutil.copytree(
        installed,
        shadow / "octoprint_mqtt_core",
        ignore=shutil.ignore_patterns("_core*", "__pycache__"),
    )
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        {"broker": {"url": broker.host, "port": broker.port}}, env={"PYTHONPATH": str(shadow)}
    )
    # (Only the shadow copy lacks the module, so the line also proves it was the one loaded.)
    assert_disabled(
        octoprint, sub, "its native part (the octoprint-mqtt-core package) cannot be loaded"
    )


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_core_of_another_version_disables_the_plugin(
    broker, subscriber_factory, octoprint_factory, tmp_path
):
    # What `pip install --no-deps` of another core leaves: its metadata, found first.
    shadow = tmp_path / "shadow"
    info = shadow / "octoprint_mqtt_core-9.9.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: octoprint-mqtt-core\nVersion: 9.9.9\n"
    )
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        {"broker": {"url": broker.host, "port": broker.port}}, env={"PYTHONPATH": str(shadow)}
    )
    version = project_version()
    assert_disabled(
        octoprint,
        sub,
        f"OctoPrint-MQTT {version} needs octoprint-mqtt-core {version}, but 9.9.9 is installed. "
        f"Reinstall the plugin with pip: pip install OctoPrint-MQTT=={version}",
    )
