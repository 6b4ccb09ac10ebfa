"""The one archive on ARM: the core's aarch64 and armv7 wheels, built as the release workflow
builds them (manylinux2014, abi3; here cross-built with zig, without fat LTO), and the plugin's
sdist, installed by pip into a fresh virtualenv in an emulated Debian bookworm (QEMU user
emulation, a chroot) that has no compiler: pip builds the pure-Python plugin, takes the core's
wheel as it is, and the native module loads and publishes to the tests' Mosquitto on the
host's loopback.

Slow: the first run builds each root file system (about 2 minutes, then cached in
/var/cache/octoprint-mqtt-test) and cross-builds each wheel (about 3 minutes, half a minute
after a change to the crate, seconds without one); the emulated install and run take 1 to 2
minutes each. support/emulated.py says how.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from support.corekit import unique_base
from support.emulated import (
    ARCHES,
    NATIVE_DIST,
    NATIVE_MODULE,
    build_backend_wheels,
    cross_build_wheel,
    dist_pattern,
    early_wheel,
    install_and_run,
    python_minor,
    rootfs,
    wheel_stem,
)
from support.install_env import find_dists, project_version, run, tool

from octoprint_mqtt.update import PLUGIN_DIST

pytestmark = [pytest.mark.e2e, pytest.mark.install]

VERSION = project_version()

# Runs in the emulated system's venv: loads the native module, connects to the host's broker,
# publishes a message and a temperature sample, stops; prints what it ran on, as JSON.
PROBE = f"""
import importlib, json, platform, sys, time

core_module = importlib.import_module({NATIVE_MODULE!r})
# The plugin's package imports beside it, and finds the two versions paired.
import octoprint_mqtt
assert octoprint_mqtt._core_mismatch() is None
host, port, base = sys.argv[1], int(sys.argv[2]), sys.argv[3]
core = core_module.Core()
core.configure({{"broker": {{"url": host, "port": port}}, "publish": {{"baseTopic": base}}}})
# Emulated, everything is 5 to 20 times slower than native.
deadline = time.monotonic() + 60
while not core.connected and time.monotonic() < deadline:
    time.sleep(0.1)
assert core.connected, core.status()
assert core.publish(base + "hello", platform.machine() + " " + sys.version, qos=1)
assert core.publish_temperatures({{"time": 1.0, "bed": {{"actual": 40.0, "target": 60.0}}}}) == 1
assert core.stop(10.0)
print("PROBE " + json.dumps({{"machine": platform.machine(), "module": core_module.__file__}}))
"""


@pytest.fixture(scope="session")
def cross_wheel(tmp_path_factory):
    """cross_wheel(name) -> the wheel cross-built for ARCHES[name] this session: the one
    conftest.py started building in the background at collection, else built now."""
    built = {}
    out = tmp_path_factory.mktemp("cross-dist")

    def get(name):
        if name not in built:
            started = time.monotonic()
            wheel = early_wheel(name, timeout=1800)
            built[name] = wheel or cross_build_wheel(ARCHES[name], out)
            how = "waited for the background build" if wheel else "cross build"
            print(f"{how} {ARCHES[name].rust_target}: {time.monotonic() - started:.0f} s")
        return built[name]

    return get


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("name", sorted(ARCHES))
def test_arm_wheel_installs_without_compiler_and_runs(
    name, cross_wheel, tmp_path, session_broker, subscriber_factory
):
    arch = ARCHES[name]
    wheel = cross_wheel(name)
    # The tags pip on a Raspberry Pi looks for: abi3 for every CPython >= 3.8, glibc 2.17.
    m = re.escape(arch.machine)
    expected = (
        rf"{wheel_stem(NATIVE_DIST)}-{re.escape(VERSION)}-cp38-abi3-"
        rf"manylinux2014_{m}\.manylinux_2_17_{m}\.whl"
    )
    assert re.fullmatch(expected, wheel.name), wheel.name
    report = " ".join(run([tool("auditwheel"), "show", wheel], 120).split())
    assert f'consistent with the following platform tag: "manylinux_2_17_{arch.machine}"' in report
    assert "external shared libraries are required" not in report, report

    started = time.monotonic()
    root = rootfs(arch)
    print(f"root file system {root}: {time.monotonic() - started:.0f} s")

    base = unique_base()
    sub = subscriber_factory(session_broker.host, session_broker.port, f"{base}#")
    started = time.monotonic()
    # The one archive, its core's wheel, and the plugin's build backend (pip builds the
    # archive, for the root file system's Python): what pip would find on PyPI, in a folder.
    archive = find_dists(tmp_path / "dist").sdist
    files = [wheel, archive, *build_backend_wheels(tmp_path / "backend", f"3.{python_minor(root)}")]
    requirements = (f"$wheels/{archive.name}",)
    output = install_and_run(
        root,
        files,
        tmp_path / "work",
        PROBE,
        [session_broker.host, session_broker.port, base],
        requirements=requirements,
        only_binary=NATIVE_DIST,
    )
    print(f"emulated install and run: {time.monotonic() - started:.0f} s\n{output}")

    assert "no compiler: gcc cc" in output, output
    installed = re.search(r"^Successfully installed (.*)$", output, re.M)
    assert installed, output
    for dist in (NATIVE_DIST, PLUGIN_DIST):
        assert re.search(rf"\b{dist_pattern(dist)}-{re.escape(VERSION)}\b", installed[1], re.I), (
            f"{dist} {VERSION} not installed: {installed[0]}"
        )
    probe = json.loads(re.search(r"^PROBE (.*)$", output, re.M).group(1))
    assert probe["machine"] == arch.machine, probe
    # Loaded from the venv pip installed into, not from anywhere else.
    assert "/venv/lib/python3" in probe["module"], probe
    message = sub.wait_for(f"{base}hello", timeout=30)
    assert message.payload.decode().startswith(f"{arch.machine} 3."), message.payload
    bed = sub.wait_for(f"{base}temperature/bed", timeout=30)
    assert bed.payload == b'{"actual":40.0,"target":60.0,"_timestamp":1}'
