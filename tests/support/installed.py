"""The one check that the plugin under test is the installed one, as the end-to-end tests need.

They start OctoPrint from the interpreter running pytest, so the plugin must be pip-installed
there: importable with its native module (of the octoprint-mqtt-core distribution), from
site-packages rather than the checkout's source tree, and registered under the entry point
OctoPrint loads plugins from. conftest.py makes every e2e test fail (never skip) with
problem()'s words when one of these does not hold: a packaging break is a red run, not a green
run with skips.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

# The checkout's root: its octoprint_mqtt/ is the source tree, not an installed plugin.
SOURCE_TREE = Path(__file__).resolve().parent.parent.parent / "octoprint_mqtt"
HINT = "pip-install the plugin into this interpreter (scripts/test.sh does)"


def problem(
    module: str = "octoprint_mqtt",
    entry_point: str = "mqtt",
    native: str = "octoprint_mqtt_core._core",
) -> str | None:
    """Why the plugin cannot be tested end to end, or None when it can. `native`: the native
    module, of the plugin's pinned octoprint-mqtt-core distribution."""
    try:
        package = importlib.import_module(module)
        importlib.import_module(native)
    except ImportError as exc:
        return f"{module} is not importable with its native module ({exc}); {HINT}"
    location = Path(package.__file__).resolve().parent
    if location == SOURCE_TREE:
        return f"{module} is imported from the source tree {location}, not installed; {HINT}"
    # Walks every distribution: entry_points(group=...) needs Python 3.10, the suite runs on 3.8.
    if not any(
        ep.group == "octoprint.plugin" and ep.name == entry_point
        for dist in importlib.metadata.distributions()
        for ep in dist.entry_points
    ):
        return (
            f"no {entry_point!r} entry point in group 'octoprint.plugin': the plugin is not "
            f"installed, so OctoPrint would not load it; {HINT}"
        )
    return None
