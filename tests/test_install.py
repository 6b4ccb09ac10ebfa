"""Installing the plugin the ways users do, each into a fresh virtualenv with OctoPrint: the
wheel, the sdist (compiled by pip through maturin), the source tree, and OctoPrint's own plugin
manager; upgrading over an older OctoPrint-MQTT; uninstalling. Every installed plugin is proven
by a real OctoPrint loading it and publishing to a real Mosquitto.
"""

from __future__ import annotations

import configparser
import re
import shutil
import tarfile
import time
import zipfile

import pytest
from support.corekit import unique_base
from support.e2ekit import assert_no_traceback, broker_settings, wait_until
from support.install_env import (
    ROOT,
    Venv,
    build_env,
    find_dists,
    find_python,
    loaded_plugin_version,
    project_version,
    restamped_sdist,
    run,
    serve_directory,
    tool,
    write_standin_wheel,
)
from support.mqtt_env import read_retained

pytestmark = [pytest.mark.e2e, pytest.mark.install]

MAX_WHEEL_BYTES = 3 * 1024 * 1024
# The classic plugin's last version (it is not on PyPI; a stand-in of ours plays it).
CLASSIC_VERSION = "0.8.18"
VERSION = project_version()


@pytest.fixture(scope="session")
def dists(tmp_path_factory):
    return find_dists(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def fresh_venv(tmp_path):
    """fresh_venv(name="venv", **kwargs) -> Venv (see Venv.create)."""

    def make(name: str = "venv", **kwargs) -> Venv:
        return Venv.create(tmp_path / name, **kwargs)

    return make


def wait_published(sub, base: str, timeout: float = 30) -> None:
    """The plugin is loaded and publishing: its status and OctoPrint's Startup event arrive."""
    sub.wait_for(f"{base}mqtt", timeout=timeout, predicate=lambda m: m.payload == b"connected")
    sub.wait_for(f"{base}event/Startup", timeout=10)


# --------------------------------------------------------------------------
# The distributions themselves
# --------------------------------------------------------------------------


def test_wheel_is_abi3_manylinux_and_small(dists):
    wheel = dists.wheel
    size = wheel.stat().st_size
    print(f"\n{wheel.name}: {size} bytes; {dists.sdist.name}: {dists.sdist.stat().st_size} bytes")
    assert size < MAX_WHEEL_BYTES, f"{wheel.name} is {size} bytes"
    # One wheel for every CPython >= 3.8 (abi3), for any Linux with a recent enough glibc.
    assert re.fullmatch(
        rf"octoprint_mqtt-{re.escape(VERSION)}-cp38-abi3-manylinux_2_\d+_x86_64\.whl", wheel.name
    ), wheel.name

    report = run([tool("auditwheel"), "show", wheel], 120)
    report = " ".join(report.split())
    assert 'is consistent with the following platform tag: "manylinux_' in report, report
    # Libraries outside the manylinux policy would have to be bundled: there must be none.
    assert "external shared libraries are required" not in report, report

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"octoprint_mqtt-{VERSION}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    for expected in (
        "octoprint_mqtt/__init__.py",
        "octoprint_mqtt/plugin.py",
        "octoprint_mqtt/_core.abi3.so",
        "octoprint_mqtt/templates/mqtt_settings.jinja2",
        "octoprint_mqtt/static/js/mqtt.js",
        f"{info}/licenses/LICENSE",
    ):
        assert expected in names, f"{expected} missing from {sorted(names)}"
    groups = configparser.ConfigParser()
    groups.read_string(entry_points)
    assert dict(groups["octoprint.plugin"]) == {"mqtt": "octoprint_mqtt"}, entry_points
    assert f"Name: OctoPrint-MQTT\nVersion: {VERSION}\n" in metadata
    assert "Requires-Python: >=3.8" in metadata
    assert "Project-URL: Homepage, https://" in metadata


def test_sdist_has_what_the_build_needs(dists):
    with tarfile.open(dists.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"Cargo.toml", "Cargo.lock", "pyproject.toml", "README.md", "LICENSE", "PKG-INFO"}
    needed |= {str(p.relative_to(ROOT)) for p in (ROOT / "src").glob("*.rs")}
    needed |= {
        str(p.relative_to(ROOT)) for p in (ROOT / "octoprint_mqtt").rglob("*") if p.is_file()
    } - {p for p in names if "__pycache__" in p}
    needed = {n for n in needed if "__pycache__" not in n}
    assert needed <= names, f"missing from the sdist: {sorted(needed - names)}"
    stray = sorted(n for n in names if n.startswith(("tests/", "scripts/", ".ci/", ".github/")))
    assert not stray, f"development files in the sdist: {stray}"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("python_version", ["3.8", "3.13"])
def test_wheel_runs_on_oldest_and_newest_python(
    python_version, dists, fresh_venv, session_broker, subscriber_factory
):
    """abi3: the one wheel loads on every Python from 3.8 and talks to a broker. With the
    frozendict OctoPrint uses for temperature samples: before Python 3.11 it is no dict."""
    python = find_python(python_version)
    # Missing is a failure, not a skip: the abi3 claim would go unchecked in a green run.
    assert python is not None, f"no Python {python_version} here (pyenv or PATH): install it"
    venv = fresh_venv(python=python, octoprint=False)
    venv.pip("install", "--no-deps", dists.wheel)
    venv.pip("install", "frozendict")

    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    script = (
        "import sys, time\n"
        "from octoprint_mqtt._core import Core\n"
        "core = Core()\n"
        "core.configure({'broker': {'url': sys.argv[1], 'port': int(sys.argv[2])},"
        " 'publish': {'baseTopic': sys.argv[3]}})\n"
        "deadline = time.monotonic() + 20\n"
        "while not core.connected and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "assert core.connected, core.status()\n"
        "assert core.publish(sys.argv[3] + 'hello', sys.version, qos=1)\n"
        "from frozendict import frozendict\n"
        "sample = frozendict(time=1.0, bed=frozendict(actual=40.0, target=60.0))\n"
        "assert core.publish_temperatures(sample) == 1\n"
        "assert core.stop(5.0)\n"
    )
    run(
        [venv.python, "-c", script, session_broker.host, session_broker.port, base],
        60,
        cwd=venv.path,
    )
    message = sub.wait_for(f"{base}hello")
    assert message.payload.decode().startswith(python_version + ".")
    bed = sub.wait_for(f"{base}temperature/bed")
    assert bed.payload == b'{"actual":40.0,"target":60.0,"_timestamp":1}'


# --------------------------------------------------------------------------
# Install paths, each proven by OctoPrint loading the plugin and publishing
# --------------------------------------------------------------------------


@pytest.mark.timeout(900)
@pytest.mark.parametrize("source", ["wheel", "sdist", "source-tree"])
def test_install_into_fresh_octoprint(
    source, dists, tmp_path, fresh_venv, session_broker, subscriber_factory, octoprint_factory
):
    venv = fresh_venv()
    if source == "wheel":
        venv.pip("install", dists.wheel)
    elif source == "sdist":
        # Compiled here, by pip through maturin and cargo, from the sdist's own sources; cargo
        # reuses the dependencies the checkout's build compiled.
        output = venv.pip("install", "--verbose", restamped_sdist(dists.sdist, tmp_path))
        assert re.search(r"Compiling octoprint-mqtt v\S+ \(/tmp/", output), output[-5000:]
    else:
        # Built in place; cargo finds the build scripts/test.sh made up to date.
        venv.pip("install", ROOT)
    assert venv.installed_version() == VERSION

    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    octoprint = octoprint_factory(
        broker_settings(session_broker, publish={"baseTopic": base}), venv=venv.path
    )
    wait_published(sub, base)
    assert loaded_plugin_version(octoprint.log_text()) == VERSION
    octoprint.stop()
    sub.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"disconnected")
    assert_no_traceback(octoprint.log_text())


@pytest.mark.timeout(300)
def test_upgrade_over_older_octoprint_mqtt_then_uninstall(
    dists, tmp_path, fresh_venv, session_broker, subscriber_factory, octoprint_factory
):
    venv = fresh_venv()
    venv.pip("install", write_standin_wheel(tmp_path, CLASSIC_VERSION))
    assert venv.installed_version() == CLASSIC_VERSION
    marker = venv.site_packages() / "octoprint_mqtt" / "standin_marker.py"
    assert marker.exists()

    # OctoPrint runs the old plugin once, with settings as the classic plugin leaves them: broker
    # values stored, no settings version, base topic left at its default ("octoPrint/").
    octoprint = octoprint_factory(
        broker_settings(session_broker), classic_config=True, venv=venv.path
    )
    assert loaded_plugin_version(octoprint.log_text()) == CLASSIC_VERSION
    octoprint.stop()

    # An upgrade by name from a package index, as `pip install -U OctoPrint-MQTT` from PyPI:
    # only a version above the classic plugin's makes pip replace it.
    output = venv.pip(
        "install", "--upgrade", "--no-index", "--find-links", dists.wheel.parent, "OctoPrint-MQTT"
    )
    uninstalled = rf"Successfully uninstalled octoprint[-_]mqtt-{re.escape(CLASSIC_VERSION)}"
    assert re.search(uninstalled, output, re.I), output
    assert venv.installed_version() == VERSION
    assert not marker.exists(), "the old plugin's files were left behind"
    assert venv.dist_infos() == [f"octoprint_mqtt-{VERSION}.dist-info"]

    # The settings migration keeps the classic topics where they were.
    sub = subscriber_factory(session_broker.host, session_broker.port, "octoPrint/#")
    octoprint.start()
    wait_published(sub, "octoPrint/")
    assert loaded_plugin_version(octoprint.log_text()) == VERSION
    octoprint.stop()
    stored = octoprint.read_config()["plugins"]["mqtt"]
    assert stored["publish"]["baseTopic"] == "octoPrint/", stored
    assert stored["_config_version"] == 1, stored
    assert_no_traceback(octoprint.log_text())

    # Uninstalled, OctoPrint starts and serves as before, without the plugin.
    venv.pip("uninstall", "--yes", "OctoPrint-MQTT")
    assert venv.installed_version() is None
    assert not (venv.site_packages() / "octoprint_mqtt").exists()
    sub.clear()
    octoprint.start()
    assert octoprint.get("/api/version")["server"]
    assert octoprint.connection_state()
    assert loaded_plugin_version(octoprint.log_text().split("Starting OctoPrint")[-1]) is None
    time.sleep(1)
    octoprint.stop()
    assert not sub.messages(), "something still published after the uninstall"
    assert_no_traceback(octoprint.log_text())


# --------------------------------------------------------------------------
# OctoPrint's plugin manager
# --------------------------------------------------------------------------


def plugin_manager_config(url: str) -> dict:
    """The plugin manager on (the other tests turn it off), with its plugin repository and
    notices fetched from `url` instead of the internet."""
    from support.octoprint_env import DISABLED_PLUGINS

    return {
        "plugins": {
            "_disabled": [p for p in DISABLED_PLUGINS if p != "pluginmanager"],
            "pluginmanager": {
                "repository": f"{url}/plugins.json",
                "notices": f"{url}/notices.json",
            },
        }
    }


def managed_plugins(octoprint) -> dict[str, dict]:
    return {p["key"]: p for p in octoprint.get("/plugin/pluginmanager/plugins")["plugins"]}


def wait_for_install(octoprint, key: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plugins = managed_plugins(octoprint)
        if key in plugins:
            return plugins[key]
        log = octoprint.log_text()
        if re.search(r"Could not install plugin|Installing the plugin from .* failed", log):
            console = octoprint.basedir / "logs" / "plugin_pluginmanager_console.log"
            pip_log = console.read_text() if console.exists() else ""
            raise AssertionError(f"the plugin manager failed:\n{log[-3000:]}\n{pip_log[-5000:]}")
        time.sleep(1)
    raise AssertionError(f"plugin {key!r} not installed after {timeout}s")


@pytest.mark.timeout(900)
def test_plugin_manager_installs_sdist_then_uninstalls(
    dists, tmp_path, fresh_venv, session_broker, subscriber_factory, octoprint_factory, monkeypatch
):
    venv = fresh_venv()
    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    # OctoPrint passes its environment on to pip, maturin and cargo.
    for key, value in build_env().items():
        monkeypatch.setenv(key, value)

    # What a plugin download site serves: the sdist, and an (empty) plugin repository.
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(dists.sdist, site)
    (site / "plugins.json").write_text("[]")
    (site / "notices.json").write_text("[]")
    with serve_directory(site) as url:
        octoprint = octoprint_factory(
            broker_settings(
                session_broker,
                publish={"baseTopic": base},
                homeassistant={"discovery": True, "prefix": f"{base}ha"},
            ),
            venv=venv.path,
            extra_config=plugin_manager_config(url),
        )
        assert "mqtt" not in managed_plugins(octoprint)
        started = octoprint.post(
            "/api/plugin/pluginmanager",
            {"command": "install", "url": f"{url}/{dists.sdist.name}"},
        ).json()
        assert started == {"in_progress": True}, started
        entry = wait_for_install(octoprint, "mqtt", timeout=600)

    # What OctoPrint shows for the plugin, and that it asks for a restart.
    assert entry["pending_install"] is True, entry
    assert entry["name"] == "MQTT"
    assert entry["version"] == VERSION
    assert entry["license"] == "AGPLv3"
    assert entry["url"].startswith("https://")
    assert entry["author"]
    assert "MQTT" in entry["description"]
    assert entry["python"] == ">=3.8,<4"
    assert venv.installed_version() == VERSION
    assert not sub.messages(), "published before the restart"

    octoprint.restart()
    wait_published(sub, base)
    entry = managed_plugins(octoprint)["mqtt"]
    assert entry["enabled"] and not entry["pending_install"], entry
    assert entry["bundled"] is False
    configs = f"{base}ha/#"
    found = wait_until(
        lambda: read_retained(session_broker.host, session_broker.port, configs),
        timeout=10,
        describe=lambda: "Home Assistant discovery configs",
    )

    # Uninstalling clears them: Home Assistant would keep the device forever otherwise.
    answer = octoprint.post(
        "/api/plugin/pluginmanager", {"command": "uninstall", "plugin": "mqtt"}
    ).json()
    assert answer["result"] is True and answer["needs_restart"] is True, answer
    wait_until(
        lambda: not read_retained(session_broker.host, session_broker.port, configs),
        timeout=10,
        describe=lambda: f"{len(found)} configs cleared",
    )
    octoprint.restart()
    assert "mqtt" not in managed_plugins(octoprint)
    assert venv.installed_version() is None
    # The settings stay for a later reinstall.
    assert octoprint.read_config()["plugins"]["mqtt"]["publish"]["baseTopic"] == base
    assert octoprint.get("/api/version")["server"]
    octoprint.stop()
    assert_no_traceback(octoprint.log_text())
