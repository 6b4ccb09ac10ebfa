"""Helpers for tests that drive the native core (`octoprint_mqtt._core.Core`) directly."""

from __future__ import annotations

import json
import sys
import time
import uuid

from octoprint_env import deep_merge

from octoprint_mqtt._core import Core

LOGGER = "octoprint.plugins.mqtt"


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
