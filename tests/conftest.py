"""pytest hooks and fixtures: real Mosquitto brokers, subscribers and OctoPrint servers.

Nothing here is mocked. Every wait has a timeout so that a broken plugin makes
a test fail with a useful message instead of hanging the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# tests/support/ is importable through setup.cfg's `pythonpath = tests`.
from support import installed
from support.browser_env import CHROMIUM, launch
from support.mqtt_env import Broker, Subscriber, free_port, wait_for_port
from support.tls_certs import (
    OPENSSL_MAX_TLS12,
    Certs,
    Pair,
    TlsBroker,
    make_certs,
    negotiated_tls_version,
)

DEFAULT_TEST_TIMEOUT = 120


# --------------------------------------------------------------------------
# pytest hooks
# --------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test running a real OctoPrint server")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Guarantee a timeout even if setup.cfg's [tool:pytest] timeout is missing;
    # a test's own @pytest.mark.timeout wins because it is found first.
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


def pytest_collection_finish(session: pytest.Session) -> None:
    # The emulated install tests' cross builds and root file systems take minutes: started
    # now, in the background, they are ready by the time those tests run.
    if any("cross_wheel" in getattr(item, "fixturenames", ()) for item in session.items):
        from support import emulated

        out = Path(tempfile.mkdtemp(prefix="octoprint-mqtt-cross-"))
        session.config.add_cleanup(lambda: shutil.rmtree(out, ignore_errors=True))
        emulated.start_early(out)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    # Keep each phase's report on the item so fixtures can tell at teardown
    # whether the test failed (and then print the server logs).
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _print_tail(title: str, text: str, lines: int = 80) -> None:
    # Printed at teardown: pytest shows it under "Captured stdout teardown".
    tail = "\n".join(text.splitlines()[-lines:])
    print(f"\n----- {title} (last {lines} lines) -----\n{tail}")


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def installed_plugin() -> None:
    """Fails, once per session and then for every test that needs it, when the plugin is not
    installed the way the e2e tests need (support/installed.py says what is checked)."""
    reason = installed.problem()
    if reason is not None:
        pytest.fail(reason, pytrace=False)


@pytest.fixture(autouse=True)
def _e2e_needs_the_installed_plugin(request: pytest.FixtureRequest) -> None:
    # The one guard for every e2e test: a missing or broken install fails them, never skips.
    if request.node.get_closest_marker("e2e") is not None:
        request.getfixturevalue("installed_plugin")


@pytest.fixture(scope="session")
def homeassistant_installed() -> None:
    """The third-party OctoPrint-HomeAssistant plugin installed into the suite's virtualenv
    (support/homeassistant.py); fails, never skips, when it cannot be."""
    from support import homeassistant

    try:
        homeassistant.ensure_installed()
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def broker_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Build and start brokers with custom config; all are stopped at teardown."""
    brokers: list[Broker] = []

    def make(extra_conf: str = "", port: int | None = None) -> Broker:
        broker = Broker(extra_conf, tmp_path_factory.mktemp("broker"), port)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()  # resumes a paused broker first
        if _test_failed(request):
            _print_tail(f"mosquitto log {broker.log_path}", broker.log_text())


@pytest.fixture
def password_broker_factory(broker_factory, tmp_path_factory: pytest.TempPathFactory):
    """password_broker_factory(user, password, anonymous=True, extra="") -> Broker checking
    that one user's password. Anonymous clients (the tests' own subscribers) stay allowed
    unless `anonymous` is False; a client that sends a user name is checked all the same.
    `extra` is more configuration (more listeners: the password file applies to all)."""

    def make(user: str, password: str, anonymous: bool = True, extra: str = "") -> Broker:
        password_file = tmp_path_factory.mktemp("passwd") / "passwd"
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(password_file), user, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
        password_file.chmod(0o644)  # mosquitto may run as another user
        anonymous_line = "" if anonymous else "allow_anonymous false\n"
        return broker_factory(f"{anonymous_line}password_file {password_file}\n{extra}")

    return make


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A fresh broker for tests that stop, pause or restart it."""
    return broker_factory()


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory):
    """One broker shared by tests that only need a working broker."""
    broker = Broker(workdir=tmp_path_factory.mktemp("session-broker"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def subscriber_factory():
    """subscriber_factory(host, port, topic_filter="#") -> Subscriber."""
    subscribers: list[Subscriber] = []

    def make(host: str, port: int, topic_filter: str = "#", **kwargs) -> Subscriber:
        sub = Subscriber(host, port, topic_filter, **kwargs)
        subscribers.append(sub)
        return sub

    yield make
    for sub in subscribers:
        sub.close()


@pytest.fixture(scope="module")
def chromium():
    """Debian's Chromium, headless, for one test file's browser tests (support/browser_env.py)."""
    # Imported here: the tests that need no browser do not load Playwright.
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"Debian's chromium is not installed at {CHROMIUM} (scripts/test.sh installs it)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def homeassistant_factory(request: pytest.FixtureRequest, tmp_path: Path, broker_factory):
    """homeassistant_factory(broker) -> HomeAssistant (support/homeassistant_env.py), not yet
    started; stopped at teardown, its output printed when the test failed."""
    from support.homeassistant_env import HomeAssistant

    instances = []

    def make(broker) -> HomeAssistant:
        instance = HomeAssistant(tmp_path / f"homeassistant{len(instances)}", broker)
        instances.append(instance)
        return instance

    yield make
    for instance in instances:
        instance.stop()
        if _test_failed(request):
            _print_tail(f"Home Assistant {instance.config_dir}", instance.tail(200), 200)


@pytest.fixture
def octoprint_factory(request: pytest.FixtureRequest, tmp_path: Path, broker_factory):
    """octoprint_factory(mqtt_settings, start=True, **kwargs) -> OctoPrintInstance.

    Every instance is stopped at teardown, even when the test failed; then its
    log is printed to help diagnose the failure. Depending on broker_factory
    makes pytest tear the brokers down after OctoPrint, whatever the order of
    the test's arguments, so the plugin's shutdown still reaches its broker.
    """
    # Imported lazily: only e2e tests need OctoPrint (and PyYAML) installed.
    from support.octoprint_env import OctoPrintInstance

    instances: list[OctoPrintInstance] = []

    def make(mqtt_settings: dict, start: bool = True, **kwargs) -> OctoPrintInstance:
        basedir = tmp_path / f"octoprint{len(instances)}"
        instance = OctoPrintInstance(basedir, free_port(), mqtt_settings, **kwargs)
        instances.append(instance)
        if start:
            instance.start()
        return instance

    yield make
    for instance in instances:
        instance.stop()
        if _test_failed(request):
            _print_tail(f"octoprint.log in {instance.basedir}", instance.log_text())


@pytest.fixture
def nats_cluster(request: pytest.FixtureRequest, tmp_path: Path):
    """A running 3-node NATS cluster with an MQTT listener per node (support/nats_env.py);
    its logs are printed when the test failed."""
    from support.nats_env import NatsCluster

    cluster = NatsCluster(tmp_path / "nats")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if _test_failed(request):
            _print_tail("nats-server logs", cluster.logs(), lines=200)


@pytest.fixture
def plugin_factory(caplog):
    """plugin_factory(settings=None, wait=True) -> MqttPlugin made without OctoPrint, its core
    configured directly (and connected, with wait): the helpers other plugins call, for real."""
    # Imported here: conftest.py must load without the plugin (test_installed_plugin_check.py).
    from support.corekit import wait_state

    from octoprint_mqtt.plugin import MqttPlugin

    caplog.set_level(logging.DEBUG, logger="octoprint.plugins.mqtt")
    made = []

    def make(settings=None, wait=True):
        plugin = MqttPlugin()
        made.append(plugin)
        if settings is not None:
            plugin._core.configure(settings)
            if wait:
                wait_state(plugin._core, "connected")
        return plugin

    yield make
    for plugin in made:
        plugin._core.stop(2.0)


@pytest.fixture
def core_factory(caplog):
    """core_factory(settings=None) -> Core, configured when settings are given; every core is
    stopped at teardown (a core left running would log during interpreter exit)."""
    caplog.set_level(logging.DEBUG, logger="octoprint.plugins.mqtt")
    from octoprint_mqtt_core._core import Core

    cores: list = []

    def make(settings: dict | None = None):
        core = Core()
        cores.append(core)
        if settings is not None:
            core.configure(settings)
        return core

    yield make
    for core in cores:
        core.stop(2.0)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    c = make_certs(tmp_path_factory.mktemp("tls-certs"))
    for path in c.directory.iterdir():
        assert os.access(path, os.R_OK), f"cannot read {path}"
    return c


@pytest.fixture
def tls_broker(broker_factory, certs: Certs, monkeypatch, tmp_path):
    """tls_broker(server_pair, require_certificate=False, tls12=False, extra=()) -> TlsBroker;
    `extra` are more lines for the TLS listener."""

    def make(
        server: Pair, require_certificate: bool = False, tls12: bool = False, extra=()
    ) -> TlsBroker:
        port = free_port()
        lines = [
            f"listener {port} 127.0.0.1",
            f"cafile {certs.ca}",
            f"certfile {server.cert}",
            f"keyfile {server.key}",
        ]
        if require_certificate:
            lines += ["require_certificate true", "use_identity_as_username true"]
        lines += extra
        with monkeypatch.context() as env:
            if tls12:
                conf = tmp_path / "openssl-max-tls12.cnf"
                conf.write_text(OPENSSL_MAX_TLS12)
                env.setenv("OPENSSL_CONF", str(conf))
            broker = broker_factory("\n".join(lines))
        # start() waited for the plain listener; the TLS one must accept too.
        wait_for_port(broker.host, port, 5.0, broker.proc)
        tb = TlsBroker(broker, port)
        if require_certificate:
            assert negotiated_tls_version(tb, certs) == ("TLSv1.2" if tls12 else "TLSv1.3")
        return tb

    return make
