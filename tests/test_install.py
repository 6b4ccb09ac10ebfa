"""Installing the plugin the ways users do, each into a fresh virtualenv with OctoPrint.

A release is two distributions: the plugin OctoPrint-MQTT (pure Python; its sdist is the one
archive for every machine) and its native part octoprint-mqtt-core, pinned exactly, published
as wheels (and an sdist, the fallback where no wheel fits). The tests install the one archive
with no compiler on PATH, the wheels, the core's sdist (compiled by pip through maturin), the
source tree and OctoPrint's own plugin manager; upgrade over the classic plugin and over 1.0.0;
uninstall. Every installed plugin is proven by a real OctoPrint loading it and publishing to a
real Mosquitto. The update check is in tests/test_software_update.py, the ARM wheels under
emulation in tests/test_install_emulated.py.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from support.corekit import unique_base
from support.e2ekit import assert_no_traceback, broker_settings, wait_until
from support.install_env import (
    ROOT,
    Venv,
    find_dists,
    find_python,
    loaded_plugin_version,
    no_compiler_env,
    project_version,
    restamped_sdist,
    run,
    serve_directory,
    tool,
    unoptimised_build_env,
    write_standin_wheel,
)
from support.mqtt_env import read_retained

pytestmark = [pytest.mark.e2e, pytest.mark.install]

MAX_WHEEL_BYTES = 3 * 1024 * 1024
# The classic plugin as published (../shared/thirdparty/README.md): 0.8.16, needs paho-mqtt<2.
CLASSIC_ARCHIVE = ROOT.parent / "shared" / "thirdparty" / "OctoPrint-MQTT-2024-06-19-7c15ca5e34.zip"
CLASSIC_VERSION = "0.8.16"
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


def install_archive(venv: Venv, dists) -> str:
    """The one archive, as the plugin manager and `pip install <url>` take it, on a machine
    without a compiler; the core's wheel comes from the find-links folder (PyPI's stand-in),
    the build backend (hatchling) from PyPI."""
    env = no_compiler_env(venv.python.parent)
    output = venv.pip("install", "--find-links", dists.folder, dists.sdist, env=env)
    assert f"octoprint_mqtt_core-{VERSION}-cp38-abi3-" in output, output[-3000:]
    return output


# --------------------------------------------------------------------------
# The distributions themselves
# --------------------------------------------------------------------------


def test_core_wheel_is_abi3_manylinux_and_small(dists):
    wheel = dists.core_wheel
    size = wheel.stat().st_size
    print(
        f"\n{wheel.name}: {size} bytes; {dists.core_sdist.name}: {dists.core_sdist.stat().st_size}"
    )
    assert size < MAX_WHEEL_BYTES, f"{wheel.name} is {size} bytes"
    # One wheel for every CPython >= 3.8 (abi3), for any Linux with a recent enough glibc.
    assert re.fullmatch(
        rf"octoprint_mqtt_core-{re.escape(VERSION)}-cp38-abi3-manylinux_2_\d+_x86_64\.whl",
        wheel.name,
    ), wheel.name

    report = run([tool("auditwheel"), "show", wheel], 120)
    report = " ".join(report.split())
    assert 'is consistent with the following platform tag: "manylinux_' in report, report
    # Libraries outside the manylinux policy would have to be bundled: there must be none.
    assert "external shared libraries are required" not in report, report

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"octoprint_mqtt_core-{VERSION}.dist-info/METADATA").decode()
    assert {
        "octoprint_mqtt_core/__init__.py",
        "octoprint_mqtt_core/_core.abi3.so",
        "octoprint_mqtt_core/_core.pyi",
    } <= names, sorted(names)
    # Only the native part: the plugin's files are the other distribution's.
    assert not [n for n in names if n.startswith("octoprint_mqtt/")], sorted(names)
    assert f"Name: octoprint-mqtt-core\nVersion: {VERSION}\n" in metadata
    assert "Requires-Python: >=3.8" in metadata


def test_plugin_wheel_is_pure_python_and_pins_the_core(dists):
    wheel = dists.wheel
    # py3-none-any: one file for every machine, nothing in it compiled.
    assert wheel.name == f"octoprint_mqtt-{VERSION}-py3-none-any.whl", wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"octoprint_mqtt-{VERSION}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    for expected in (
        "octoprint_mqtt/__init__.py",
        "octoprint_mqtt/plugin.py",
        "octoprint_mqtt/update.py",
        "octoprint_mqtt/templates/mqtt_settings.jinja2",
        "octoprint_mqtt/static/js/mqtt.js",
        # The translations folder OctoPrint reads a locale's messages.mo and .po from.
        "octoprint_mqtt/translations/messages.pot",
        f"{info}/licenses/LICENSE",
    ):
        assert expected in names, f"{expected} missing from {sorted(names)}"
    assert not [n for n in names if n.endswith((".so", ".pyd"))], sorted(names)
    groups = configparser.ConfigParser()
    groups.read_string(entry_points)
    assert dict(groups["octoprint.plugin"]) == {"mqtt": "octoprint_mqtt"}, entry_points
    assert f"Name: OctoPrint-MQTT\nVersion: {VERSION}\n" in metadata
    requires = re.findall(r"^Requires-Dist: (.*)$", metadata, re.M)
    assert requires == [f"octoprint-mqtt-core=={VERSION}"], requires
    assert "Requires-Python: >=3.8" in metadata
    assert "Project-URL: Homepage, https://" in metadata


def sdist_members(sdist) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_the_one_archive_is_the_plugin_and_nothing_else(dists):
    names = sdist_members(dists.sdist)
    needed = {"pyproject.toml", "README.md", "LICENSE", "PKG-INFO"}
    needed |= {
        str(p.relative_to(ROOT))
        for p in (ROOT / "octoprint_mqtt").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert needed <= names, f"missing from the archive: {sorted(needed - names)}"
    stray = sorted(n for n in names if n.startswith(("src/", "core/", "tests/", "scripts/", ".")))
    stray += [n for n in names if n in ("Cargo.toml", "Cargo.lock")]
    assert not [n for n in stray if n != ".gitignore"], f"not the plugin's: {stray}"


def test_core_sdist_has_what_the_build_needs_and_nothing_else(dists):
    names = sdist_members(dists.core_sdist)
    needed = {"Cargo.toml", "Cargo.lock", "pyproject.toml", "LICENSE", "PKG-INFO"}
    needed |= {str(p.relative_to(ROOT)) for p in (ROOT / "src").glob("*.rs")}
    needed |= {
        f"octoprint_mqtt_core/{p.name}"
        for p in (ROOT / "core/octoprint_mqtt_core").iterdir()
        if p.is_file()
    }
    assert needed <= names, f"missing from the core's sdist: {sorted(needed - names)}"
    stray = sorted(
        n
        for n in names
        if n.startswith(
            ("tests/", "scripts/", "bench/", "docs/", "octoprint_mqtt/", ".ci/", ".github/")
        )
    )
    assert not stray, f"not the core's: {stray}"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("python_version", ["3.8", "3.13"])
def test_the_archive_installs_and_runs_on_oldest_and_newest_python(
    python_version, dists, fresh_venv, session_broker, subscriber_factory
):
    """The one archive with no compiler on PATH, on every Python from 3.8: the plugin builds
    (pure Python) and the abi3 core wheel loads and talks to a broker. With the frozendict
    OctoPrint uses for temperature samples: before Python 3.11 it is no dict."""
    python = find_python(python_version)
    # Missing is a failure, not a skip: the claim would go unchecked in a green run.
    assert python is not None, f"no Python {python_version} here (pyenv or PATH): install it"
    venv = fresh_venv(python=python, octoprint=False)
    install_archive(venv, dists)
    assert venv.installed_version() == VERSION
    assert venv.installed_version("octoprint-mqtt-core") == VERSION
    venv.pip("install", "frozendict")

    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    script = (
        "import sys, time\n"
        "import octoprint_mqtt\n"
        "from octoprint_mqtt_core._core import Core\n"
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
@pytest.mark.parametrize("source", ["archive", "wheels", "core-sdist", "source-tree"])
def test_install_into_fresh_octoprint(
    source, dists, tmp_path, fresh_venv, session_broker, subscriber_factory, octoprint_factory
):
    venv = fresh_venv()
    if source == "archive":
        install_archive(venv, dists)
    elif source == "wheels":
        venv.pip("install", "--no-index", "--find-links", dists.folder, dists.wheel)
    elif source == "core-sdist":
        # A machine without a wheel: pip compiles the core's sdist through maturin and cargo,
        # from the sdist's own sources (unoptimised: install_env.UNOPTIMISED_PROFILE). The
        # find-links folder holds only that sdist.
        fallback = tmp_path / "fallback"
        fallback.mkdir()
        restamped_sdist(dists.core_sdist, fallback)
        output = venv.pip(
            "install",
            "--verbose",
            "--find-links",
            fallback,
            dists.wheel,
            env=unoptimised_build_env(),
        )
        assert re.search(r"Compiling octoprint-mqtt v\S+ \(/tmp/", output), output[-5000:]
    else:
        # A checkout, as the README shows before the first release: both folders, the core
        # compiled (cargo finds the build scripts/test.sh made up to date), the plugin built.
        venv.pip("install", ROOT / "core", ROOT)
    assert venv.installed_version() == VERSION
    assert venv.installed_version("octoprint-mqtt-core") == VERSION

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


def package_entries(package: Path) -> set[Path]:
    """The files and folders of `package` (bytecode caches aside), as paths from its parent."""
    return {
        p.relative_to(package.parent) for p in package.rglob("*") if "__pycache__" not in p.parts
    }


def install_classic(venv: Venv) -> None:
    """The classic plugin from its published archive. Its setup.py imports OctoPrint's
    setuptools helpers, which only the target environment has: no build isolation."""
    assert CLASSIC_ARCHIVE.is_file(), f"the classic plugin's archive {CLASSIC_ARCHIVE} is missing"
    venv.pip("install", "--no-build-isolation", CLASSIC_ARCHIVE)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("old", ["classic", "1.0.0"])
def test_upgrade_then_uninstall(
    old, dists, tmp_path, fresh_venv, session_broker, subscriber_factory, octoprint_factory
):
    """Upgrading by name, as `pip install -U OctoPrint-MQTT` and Software Update do, over the
    classic plugin (the real one) and over 1.0.0 (one platform wheel with the native module in
    the plugin's package; a stand-in of that layout). pip must remove every old file, the
    settings must carry over, and the plugin must run; then uninstalling leaves nothing."""
    venv = fresh_venv()
    if old == "classic":
        install_classic(venv)
        old_version = CLASSIC_VERSION
        # Its settings page template: the name is ours too, the file is not.
        leftover = venv.site_packages() / "octoprint_mqtt" / "templates" / "mqtt_settings.jinja2"
    else:
        venv.pip("install", write_standin_wheel(tmp_path, "1.0.0", native=True))
        old_version = "1.0.0"
        leftover = venv.site_packages() / "octoprint_mqtt" / "_core.abi3.so"
    assert venv.installed_version() == old_version
    old_files = package_entries(venv.site_packages() / "octoprint_mqtt")
    assert leftover.exists()

    # OctoPrint runs the old plugin once, with settings as the classic plugin leaves them: broker
    # values stored, no settings version, base topic left at its default ("octoPrint/").
    octoprint = octoprint_factory(
        broker_settings(session_broker), classic_config=True, venv=venv.path
    )
    assert loaded_plugin_version(octoprint.log_text()) == old_version
    octoprint.stop()

    output = venv.pip(
        "install", "--upgrade", "--no-index", "--find-links", dists.folder, "OctoPrint-MQTT"
    )
    uninstalled = rf"Successfully uninstalled octoprint[-_]mqtt-{re.escape(old_version)}"
    assert re.search(uninstalled, output, re.I), output
    assert venv.installed_version() == VERSION
    assert venv.installed_version("octoprint-mqtt-core") == VERSION
    assert venv.dist_infos() == [f"octoprint_mqtt-{VERSION}.dist-info"]
    new_files = package_entries(venv.site_packages() / "octoprint_mqtt")
    ours = package_entries(ROOT / "octoprint_mqtt")
    left = sorted(str(p) for p in (old_files & new_files) - ours)
    assert not left, f"the old plugin's files were left behind: {left}"
    if old == "1.0.0":
        assert not leftover.exists(), "1.0.0's native module was left behind"

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

    # Uninstalled, OctoPrint starts and serves as before, without the plugin. The core stays
    # until removed too, as pip leaves any dependency; it is harmless on its own.
    venv.pip("uninstall", "--yes", "OctoPrint-MQTT", "octoprint-mqtt-core")
    assert venv.installed_version() is None
    assert not (venv.site_packages() / "octoprint_mqtt").exists()
    assert not (venv.site_packages() / "octoprint_mqtt_core").exists()
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


def listing() -> dict:
    """The front matter of the plugin repository's entry (docs/plugin-repository/mqtt.md)."""
    import yaml

    text = (ROOT / "docs" / "plugin-repository" / "mqtt.md").read_text()
    front = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert front, "docs/plugin-repository/mqtt.md has no front matter"
    return yaml.safe_load(front.group(1))


@pytest.mark.timeout(600)
def test_plugin_manager_installs_the_listed_archive_then_uninstalls(
    dists, tmp_path, fresh_venv, session_broker, subscriber_factory, octoprint_factory
):
    """As a user installs from the plugin repository: OctoPrint reads our listing, finds it
    compatible, and its plugin manager installs the listing's archive with pip, on a machine
    without a compiler (PATH holds the virtualenv's commands only); the core's wheel comes from
    a find-links folder standing in for PyPI."""
    venv = fresh_venv()
    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")

    # What the plugin repository and a download site serve: our listing as the repository's
    # JSON, its archive URL pointing here, the archive under the listing's file name.
    entry = listing()
    site = tmp_path / "site"
    site.mkdir()
    archive_name = entry["archive"].rsplit("/", 1)[-1]
    shutil.copy(dists.sdist, site / archive_name)
    (site / "notices.json").write_text("[]")
    with serve_directory(site) as url:
        repository = [{**entry, "archive": f"{url}/{archive_name}"}]
        (site / "plugins.json").write_text(json.dumps(repository, default=str))
        octoprint = octoprint_factory(
            broker_settings(
                session_broker,
                publish={"baseTopic": base},
                homeassistant={"discovery": True, "prefix": f"{base}ha"},
            ),
            venv=venv.path,
            extra_config=plugin_manager_config(url),
            env={**no_compiler_env(venv.python.parent), "PIP_FIND_LINKS": str(dists.folder)},
        )
        assert "mqtt" not in managed_plugins(octoprint)
        listed = octoprint.get("/plugin/pluginmanager/repository?refresh=true")
        plugins = {p["id"]: p for p in listed["repository"]["plugins"]}
        assert plugins["mqtt"]["is_compatible"] == {"octoprint": True, "os": True, "python": True}
        started = octoprint.post(
            "/api/plugin/pluginmanager",
            {"command": "install", "url": plugins["mqtt"]["archive"]},
        ).json()
        assert started == {"in_progress": True}, started
        entry = wait_for_install(octoprint, "mqtt", timeout=300)

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
    # The plugin manager uninstalls the plugin only; the core stays, inert (docs/install.md).
    assert venv.installed_version("octoprint-mqtt-core") == VERSION
    # The settings stay for a later reinstall.
    assert octoprint.read_config()["plugins"]["mqtt"]["publish"]["baseTopic"] == base
    assert octoprint.get("/api/version")["server"]
    octoprint.stop()
    assert_no_traceback(octoprint.log_text())
