"""Software Update never offers a release whose native part has no wheel for the machine.

The rule (octoprint_mqtt/update.py) on its own with index file lists, then end to end: a real
OctoPrint in a fresh virtualenv with its Software Update plugin on, a package index served
from a folder (PEP 503 pages, as a mirror serves them) holding this release, a 1.2.0 whose
core has a wheel for this machine and a 1.3.0 whose core has only an aarch64 wheel and an
sdist. OctoPrint is offered 1.2.0, installs it with pip, and is then offered nothing.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import threading

import pytest
from packaging.tags import Tag, cpython_tags
from support.e2ekit import broker_settings, wait_until
from support.install_env import (
    Venv,
    find_dists,
    loaded_plugin_version,
    project_version,
    restamped_wheel,
    serve_directory,
    write_simple_index,
)

from octoprint_mqtt.update import (
    IndexFile,
    UpdateCheck,
    fetch_files,
    newest_installable,
    pip_indexes,
    redacted,
)

VERSION = project_version()


def machine(platform: str) -> list[Tag]:
    """The tags pip accepts on CPython 3.11 on `platform` (abi3 back to cp32, and pure)."""
    return [*cpython_tags((3, 11), ["abi3"], [platform]), Tag("py3", "none", "any")]


HERE = machine("manylinux_2_17_x86_64")


def files(*names: str, **kwargs) -> list[IndexFile]:
    return [IndexFile(name, **kwargs) for name in names]


def test_the_newest_release_with_a_core_wheel_for_these_tags_is_offered():
    plugin = files(
        "octoprint_mqtt-1.1.0-py3-none-any.whl",
        "octoprint_mqtt-1.1.0.tar.gz",
        "octoprint_mqtt-1.2.0-py3-none-any.whl",
        "octoprint_mqtt-1.3.0.tar.gz",
    )
    core = files(
        "octoprint_mqtt_core-1.1.0-cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "octoprint_mqtt_core-1.2.0-cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        # 1.3.0: no wheel for this machine, only another platform's and the sdist.
        "octoprint_mqtt_core-1.3.0-cp38-abi3-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "octoprint_mqtt_core-1.3.0.tar.gz",
    )
    assert newest_installable(plugin, core, HERE, "3.11.7") == "1.2.0"
    # On the aarch64 machine 1.3.0 is fine.
    arm = machine("manylinux_2_17_aarch64")
    assert newest_installable(plugin, core, arm, "3.11.7") == "1.3.0"
    # A machine none of the wheels fits gets nothing (pip would compile Rust there).
    assert newest_installable(plugin, core, machine("win_amd64"), "3.11.7") is None


def test_yanked_unsupported_python_and_prereleases_are_not_offered():
    wheel = "octoprint_mqtt_core-{}-cp38-abi3-manylinux_2_17_x86_64.whl"
    plugin = files(*(f"octoprint_mqtt-{v}.tar.gz" for v in ("1.1.0", "1.2.0", "1.3.0", "1.4.0b1")))
    core = (
        files(wheel.format("1.1.0"))
        + files(wheel.format("1.2.0"), yanked=True)
        + files(wheel.format("1.3.0"), requires_python=">=3.12")
        + files(wheel.format("1.4.0b1"))
    )
    assert newest_installable(plugin, core, HERE, "3.11.7") == "1.1.0"
    assert newest_installable(plugin, core, HERE, "3.12.1") == "1.3.0"
    assert newest_installable(plugin, core, HERE, "3.11.7", include_prerelease=True) == "1.4.0b1"
    # A plugin release that was yanked is not offered even though its core is fine.
    assert (
        newest_installable(files("octoprint_mqtt-1.1.0.tar.gz", yanked=True), core, HERE, "3.11.7")
        is None
    )
    # Names that are no distribution file are ignored, not fatal.
    assert (
        newest_installable(files("index.html", "octoprint_mqtt.tar.gz"), core, HERE, "3.11.7")
        is None
    )


@contextlib.contextmanager
def index_server(pages: dict[str, tuple[str, str]]):
    """A loopback index answering `pages` (path -> (content type, body)), 404 otherwise."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            page = pages.get(self.path)
            if page is None:
                self.send_error(404)
                return
            body = page[1].encode()
            self.send_response(200)
            self.send_header("Content-Type", page[0])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


def test_index_pages_as_pypi_and_mirrors_serve_them():
    json_page = {
        "meta": {"api-version": "1.1"},
        "name": "octoprint-mqtt-core",
        "files": [
            {"filename": "octoprint_mqtt_core-1.1.0.tar.gz", "requires-python": ">=3.8"},
            {
                "filename": "octoprint_mqtt_core-1.2.0-cp38-abi3-manylinux_2_17_x86_64.whl",
                "yanked": "broken build",
            },
        ],
    }
    # PyPI's HTML: absolute links with a hash fragment, percent-encoding, a yanked file.
    html_page = (
        '<a href="https://files.example/p/OctoPrint_MQTT-1.1.0.tar.gz#sha256=ab12"'
        ' data-requires-python="&gt;=3.8">x</a>\n'
        '<a href="../../p/octoprint_mqtt-1.2.0%2Blocal-py3-none-any.whl?x=1">y</a>\n'
        '<a href="octoprint_mqtt-1.3.0.tar.gz" data-yanked="">z</a>\n'
    )
    pages = {
        "/simple/octoprint-mqtt-core/": (
            "application/vnd.pypi.simple.v1+json",
            json.dumps(json_page),
        ),
        "/simple/octoprint-mqtt/": ("text/html", html_page),
    }
    with index_server(pages) as index:
        core = fetch_files("octoprint-mqtt-core", index)
        plugin = fetch_files("octoprint-mqtt", index)
        # Not published there: nothing, not an error.
        assert fetch_files("something-else", index) == []
    assert core == [
        IndexFile("octoprint_mqtt_core-1.1.0.tar.gz", ">=3.8", False),
        IndexFile("octoprint_mqtt_core-1.2.0-cp38-abi3-manylinux_2_17_x86_64.whl", None, True),
    ]
    assert plugin == [
        IndexFile("OctoPrint_MQTT-1.1.0.tar.gz", ">=3.8", False),
        IndexFile("octoprint_mqtt-1.2.0+local-py3-none-any.whl", None, False),
        IndexFile("octoprint_mqtt-1.3.0.tar.gz", None, True),
    ]


def test_the_indexes_are_pips_own(monkeypatch, tmp_path):
    # Read through pip itself: its configuration file, then its environment variables.
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\nindex-url = https://mirror.example/simple/\n"
        "extra-index-url = https://www.piwheels.org/simple\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    assert pip_indexes() == ["https://mirror.example/simple", "https://www.piwheels.org/simple"]
    monkeypatch.setenv("PIP_INDEX_URL", "https://user:secret@private.example/simple")
    assert pip_indexes()[0] == "https://user:secret@private.example/simple"
    # The log never shows the credentials.
    assert redacted(pip_indexes()[0]) == "https://private.example/simple"


def test_the_check_answers_software_update_and_keeps_its_cache_key(monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with index_server({}) as index:  # reachable, nothing published
        monkeypatch.setenv("PIP_INDEX_URL", index)
        information, current = UpdateCheck().get_latest("mqtt", {"current": VERSION})
    assert information == {
        "local": {"name": VERSION, "value": VERSION},
        "remote": {"name": VERSION, "value": VERSION},
    }
    assert current is True
    # Software Update caches by repr(check): it must not change between starts.
    assert repr(UpdateCheck()) == repr(UpdateCheck()) == "octoprint_mqtt.update.UpdateCheck()"
    # Offline: no request, nothing offered.
    information, current = UpdateCheck().get_latest("mqtt", {"current": VERSION}, online=False)
    assert current is True


def software_update_config() -> dict:
    """Software Update on (the other tests turn it off)."""
    from support.octoprint_env import DISABLED_PLUGINS

    return {"plugins": {"_disabled": [p for p in DISABLED_PLUGINS if p != "softwareupdate"]}}


def check(octoprint) -> dict:
    answer = octoprint.get("/plugin/softwareupdate/check?targets=mqtt&force=true")
    return answer["information"]["mqtt"]


@pytest.mark.e2e
@pytest.mark.install
@pytest.mark.timeout(600)
def test_octoprint_is_offered_and_installs_only_a_release_with_a_wheel_here(
    tmp_path, tmp_path_factory, session_broker, octoprint_factory
):
    dists = find_dists(tmp_path_factory.mktemp("dist"))
    venv = Venv.create(tmp_path / "venv")
    venv.pip("install", "--no-index", "--find-links", dists.folder, dists.wheel)

    later = tmp_path / "later"
    later.mkdir()
    releases = [dists.wheel, dists.core_wheel]
    releases += [restamped_wheel(dists.wheel, "1.2.0", later)]
    releases += [restamped_wheel(dists.core_wheel, "1.2.0", later)]
    releases += [restamped_wheel(dists.wheel, "1.3.0", later)]
    releases += [
        restamped_wheel(dists.core_wheel, "1.3.0", later, platform="manylinux_2_17_aarch64")
    ]
    # The sdist is there too, as on PyPI: pip could compile it, the check must not count it.
    shutil.copy(dists.core_sdist, later / "octoprint_mqtt_core-1.3.0.tar.gz")
    releases.append(later / "octoprint_mqtt_core-1.3.0.tar.gz")
    site = tmp_path / "site"
    write_simple_index(site, releases)

    with serve_directory(site) as url:
        octoprint = octoprint_factory(
            broker_settings(session_broker),
            venv=venv.path,
            extra_config=software_update_config(),
            # What Software Update's pip and the plugin's check both read.
            env={"PIP_INDEX_URL": f"{url}/simple"},
        )
        assert loaded_plugin_version(octoprint.log_text()) == VERSION
        found = check(octoprint)
        assert found["information"]["local"]["value"] == VERSION, found
        assert found["information"]["remote"]["value"] == "1.2.0", found
        assert found["updateAvailable"] is True, found
        assert found["updatePossible"] is True, found

        octoprint.post("/plugin/softwareupdate/update", {"targets": ["mqtt"]})
        wait_until(
            lambda: (
                venv.installed_version() == "1.2.0"
                and venv.installed_version("octoprint-mqtt-core") == "1.2.0"
            ),
            timeout=180,
            describe=lambda: (
                f"installed: {venv.installed_version()}, "
                f"core {venv.installed_version('octoprint-mqtt-core')}\n"
                f"{octoprint.log_text()[-3000:]}"
            ),
        )
        octoprint.restart()
        assert loaded_plugin_version(octoprint.log_text()) == "1.2.0"
        found = check(octoprint)
        # 1.3.0 is newer, but its core has no wheel here: nothing is offered.
        assert found["information"]["remote"]["value"] == "1.2.0", found
        assert found["updateAvailable"] is False, found
    octoprint.stop()
