"""The load check: a native module that cannot load disables the plugin, and a real OctoPrint
keeps serving.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from support.e2ekit import (
    BASE,
)

import octoprint_mqtt


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_native_module_that_cannot_load_disables_the_plugin(
    broker, subscriber_factory, octoprint_factory, tmp_path
):
    # A copy of the installed package without its compiled module, first on the server's
    # path: what a user sees after installing a build for another platform or Python.
    installed = Path(octoprint_mqtt.__file__).parent
    shadow = tmp_path / "shadow"
    shutil.copytree(
        installed, shadow / "octoprint_mqtt", ignore=shutil.ignore_patterns("_core*", "__pycache__")
    )
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        {"broker": {"url": broker.host, "port": broker.port}}, env={"PYTHONPATH": str(shadow)}
    )
    # OctoPrint came up (start() waits for its API) and keeps serving.
    assert octoprint.get("/api/version")["server"].startswith("1.")
    log = octoprint.log_text()
    assert "The MQTT plugin is disabled: its native module cannot be loaded" in log, log[-3000:]
    # (Only the shadow copy lacks the module, so that line also proves it was the one loaded.)
    assert re.search(r"Plugin MQTT \(.+\) did not pass check, not loading", log)
    # Nothing connected to the broker on the plugin's behalf.
    time.sleep(2)
    assert sub.messages(f"{BASE}#") == []
    octoprint.stop()
    assert octoprint.proc.returncode == 0, octoprint.serve_log_text()[-3000:]
