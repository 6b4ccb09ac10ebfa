"""Helpers for tests that drive the native core (`octoprint_mqtt_core._core.Core`) directly."""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from octoprint_mqtt_core._core import Core
from support.octoprint_env import deep_merge
from support.tls_certs import TlsBroker

LOGGER = "octoprint.plugins.mqtt"

# The core retries 1 s after the first failure, then 2 s later. Bringing the broker up
# ~1.3 s after the first failure leaves ~1.7 s to subscribe before the core's next attempt,
# so the subscriber sees everything the core flushes on connect.
FIRST_RETRY_GAP = 1.3


def seqs(sub, topic):
    """The "seq" field of every event JSON `sub` received on `topic`, in order."""
    return [event_json(m)["seq"] for m in sub.messages(topic)]


def unique_base() -> str:
    """A base topic of its own, so tests sharing a broker never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}/"


def settings_for(b, base: str | None = None, /, **extra) -> dict:
    s = {"broker": {"url": b.host, "port": b.port}, "publish": {}}
    if base is not None:
        s["publish"]["baseTopic"] = base
    return deep_merge(s, extra)


def wait_until(pred, timeout: float = 10.0, what: str = "condition", interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_state(core: Core, state: str, timeout: float = 10.0) -> dict:
    return wait_until(
        lambda: (s := core.status())["state"] == state and s,
        timeout,
        f"core state {state!r} (now {core.status()})",
    )


@dataclass
class CallTime:
    """How long one call took on the calling thread, and whether it gave up the CPU itself
    (a lock, the GIL, a socket: waiting) or was only taken off it by the scheduler."""

    seconds: float
    waited: bool
    preempted: bool

    def blocked_longer_than(self, seconds: float) -> bool:
        # A call the scheduler only preempted was runnable all along: the time went to other
        # processes on a 2-core machine, not to anything the call waited for.
        return self.seconds >= seconds and (self.waited or not self.preempted)


def timed_call(fn, *args) -> tuple[object, CallTime]:
    """`fn(*args)` and its CallTime. Use inside `gil_held_between_waits()`, or the GIL handed to
    another thread at a bytecode boundary counts as waiting."""
    before = resource.getrusage(resource.RUSAGE_THREAD)
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_THREAD)
    return result, CallTime(
        seconds, after.ru_nvcsw > before.ru_nvcsw, after.ru_nivcsw > before.ru_nivcsw
    )


@contextlib.contextmanager
def gil_held_between_waits():
    """Python hands the GIL to a waiting thread every 5 ms, even between two lines of a timed
    call: the test's subscriber or a log record would be timed, not the call. With a long
    switch interval the caller keeps it until it sleeps or waits (which a call into the core
    that waited would still do, and be caught)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def event_json(msg) -> dict:
    return json.loads(msg.payload.decode("utf-8"))


def decimal_digits(n: int) -> str:
    """`str(n)` for integers of any size: Python refuses more than 4300 digits by default
    (sys.set_int_max_str_digits), so the limit is lifted while this one converts."""
    if not hasattr(sys, "get_int_max_str_digits"):  # Pythons before the limit
        return str(n)
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(n)
    finally:
        sys.set_int_max_str_digits(limit)


def log_lines(caplog, contains: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if contains in r.getMessage()]


def connected_core(core_factory, b, subscriber_factory, /, **extra):
    """A core connected to broker `b` under a base topic of its own, and a subscriber that
    already saw its `connected`. Returns (core, subscriber, base)."""
    base = unique_base()
    sub = subscriber_factory(b.host, b.port, f"{base}#")
    core = core_factory(settings_for(b, base, **extra))
    wait_state(core, "connected")
    sub.wait_for(f"{base}mqtt")
    return core, sub, base


def tls_settings(
    tb: TlsBroker,
    base: str | None = None,
    *,
    host: str = "localhost",
    port: int | None = None,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    insecure: bool = False,
    protocol: str = "MQTTv311",
    ciphers: str | None = None,
) -> dict:
    """Core settings for TLS to `tb` (its TLS port unless `port` is given)."""
    files = {"ca_certs": ca, "certfile": cert, "keyfile": key, "ciphers": ciphers}
    broker = {
        "url": host,
        "port": port or tb.tls_port,
        "protocol": protocol,
        "tls_active": True,
        "tls": {name: str(path) for name, path in files.items() if path is not None},
        "tls_insecure": insecure,
    }
    return settings_for(tb.broker, base, broker=broker)
