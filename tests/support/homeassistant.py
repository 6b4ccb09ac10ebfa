"""The published OctoPrint-HomeAssistant plugin (../shared/thirdparty/, not on PyPI) as a test
fixture: pip-installed into the virtualenv whose OctoPrint the suite runs, and enabled only in
the OctoPrint instances that ask for it (base_config() disables it everywhere else, so that its
discovery and subscriptions stay out of the other tests). Nothing of it goes into the project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.octoprint_env import DISABLED_PLUGINS, HOMEASSISTANT_PLUGIN, deep_merge

ROOT = Path(__file__).resolve().parent.parent.parent
ARCHIVE = (
    ROOT.parent / "shared" / "thirdparty" / "OctoPrint-HomeAssistant-2023-08-06-5a3f738cdb.zip"
)
DIST_NAME = "OctoPrint-HomeAssistant"
VERSION = "3.7.0"
DISCOVERY_PREFIX = "homeassistant"


def installed_version(python: Path) -> str | None:
    """The plugin's version installed for `python`, or None. Asked of that interpreter, not
    of this one: the OctoPrint under test may run from another virtualenv."""
    script = (
        "import importlib.metadata as m\n"
        "try:\n"
        f"    print(m.version({DIST_NAME!r}))\n"
        "except m.PackageNotFoundError:\n"
        "    pass\n"
    )
    done = subprocess.run(
        [str(python), "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )
    if done.returncode != 0:
        raise AssertionError(f"{python} cannot report installed versions:\n{done.stderr}")
    return done.stdout.strip() or None


def ensure_installed(python: Path | None = None) -> None:
    """Installs the plugin for `python` (default: the interpreter running the tests, whose
    `octoprint` the suite starts) unless this very version is there already. Raises with pip's
    output when it cannot be installed: the tests then fail, never skip."""
    python = Path(python or sys.executable)
    if installed_version(python) == VERSION:
        return
    if not ARCHIVE.is_file():
        raise AssertionError(f"the plugin's archive {ARCHIVE} is missing")
    # Its setup.py imports octoprint_setuptools: only the target environment has it, an
    # isolated build environment would not. --no-deps: its one requirement, psutil, is
    # OctoPrint's too, and pip must not touch the packages of the environment under test.
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            str(ARCHIVE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )
    if done.returncode != 0:
        raise AssertionError(f"pip could not install {ARCHIVE}:\n{done.stdout}\n{done.stderr}")
    found = installed_version(python)
    if found != VERSION:
        raise AssertionError(f"installed {ARCHIVE}, but {python} reports version {found!r}")


def enabled_config() -> dict:
    """extra_config for an OctoPrintInstance that loads the plugin: the suite's disabled list
    without it (OctoPrint replaces lists, so the whole list is given)."""
    return {"plugins": {"_disabled": [p for p in DISABLED_PLUGINS if p != HOMEASSISTANT_PLUGIN]}}


def node_id(octoprint) -> str:
    """The id the plugin made up at its first start and keeps in config.yaml: every discovery
    topic and unique id starts with it."""
    stored = (octoprint.read_config().get("plugins") or {}).get(HOMEASSISTANT_PLUGIN) or {}
    value = stored.get("node_id")
    if not value:
        raise AssertionError(f"no plugins.{HOMEASSISTANT_PLUGIN}.node_id in config.yaml: {stored}")
    return value


def expand(topic: str, base: str) -> str:
    """A discovery topic as Home Assistant reads it: `~` at either end stands for `base`."""
    if topic.startswith("~"):
        return base + topic[1:]
    if topic.endswith("~"):
        return topic[:-1] + base
    return topic


def topics_of(config: dict) -> dict[str, str]:
    """Every topic a discovery config names, expanded, by the key that names it (`avty[i]`
    for the availability entries)."""
    base = config.get("~", "")
    found = {
        key: expand(config[key], base)
        for key in ("stat_t", "cmd_t", "json_attr_t")
        if key in config
    }
    for i, entry in enumerate(config.get("avty") or []):
        found[f"avty[{i}]"] = expand(entry["t"], base)
    return found


def decode_configs(messages) -> dict[str, dict]:
    """Discovery configs by topic, from retained messages (an empty payload clears one)."""
    return {m.topic: json.loads(m.payload) for m in messages if m.payload}


def start_octoprint(octoprint_factory, mqtt_settings: dict, enabled: bool = True, **kwargs):
    """octoprint_factory's instance with the plugin loaded (enabled=False: installed but
    disabled, as in every other test); extra_config in kwargs is merged over that."""
    extra = enabled_config() if enabled else {}
    kwargs["extra_config"] = deep_merge(extra, kwargs.get("extra_config") or {})
    return octoprint_factory(mqtt_settings, **kwargs)
