"""The one guard of the e2e tests (conftest.py, support/installed.py): when the plugin cannot
be found the way they need it, they fail, never skip. Proven with an inner pytest run of this
suite's conftest.py, in which a broken octoprint_mqtt shadows the installed one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

INNER_TESTS = """
import pytest


@pytest.mark.e2e
def test_needs_the_plugin():
    pass


def test_needs_nothing():
    pass
"""


def test_e2e_tests_fail_when_the_plugin_cannot_be_imported(tmp_path):
    shadow = tmp_path / "shadow" / "octoprint_mqtt"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("hidden by the guard test")\n')
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    (suite / "test_inner.py").write_text(INNER_TESTS)
    (suite / "pytest.ini").write_text("[pytest]\nmarkers =\n    e2e: e2e\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(TESTS)])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", str(suite)],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 passed, 1 error" in out, out
    assert "skipped" not in out, out
    assert "octoprint_mqtt is not importable with its native module" in out, out
    assert "hidden by the guard test" in out, out
