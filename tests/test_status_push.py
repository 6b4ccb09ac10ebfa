"""The connection status pushed to the settings page and navbar: state changes at once, counter
updates throttled.
"""

from __future__ import annotations

import time

from support.corekit import (
    settings_for,
    unique_base,
    wait_state,
    wait_until,
)

from octoprint_mqtt.status_push import StatusPusher


class Recorder:
    """Collects what the pusher sends, with the time it was sent."""

    def __init__(self):
        self.sent = []

    def __call__(self, status):
        self.sent.append((time.monotonic(), dict(status)))

    def states(self):
        return [s["state"] for _, s in self.sent]


def test_state_changes_are_pushed_at_once(core_factory, broker):
    core = core_factory()
    rec = Recorder()
    pusher = StatusPusher(core, rec, interval=1.0)
    pusher.start()
    try:
        wait_until(lambda: rec.sent, 2, "the first status")
        core.configure(settings_for(broker))
        wait_until(lambda: "connected" in rec.states(), 5, "connected pushed")
        broker.stop()
        stopped_at = time.monotonic()
        wait_until(lambda: rec.states()[-1] == "backing_off", 5, "backing_off pushed")
        assert rec.sent[-1][0] - stopped_at < 1.0
        assert rec.sent[-1][1]["last_error"]
        broker.start()
        wait_state(core, "connected", timeout=10)
        wait_until(lambda: rec.states()[-1] == "connected", 2, "back to connected pushed")
    finally:
        pusher.stop(timeout=2)


def test_counter_updates_are_throttled(core_factory, session_broker):
    core = core_factory(settings_for(session_broker, unique_base()))
    wait_state(core, "connected")
    rec = Recorder()
    pusher = StatusPusher(core, rec, interval=1.0)
    pusher.start()
    try:
        wait_until(lambda: rec.sent, 2, "the first status")
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # events all the time for 3 s
            for _ in range(50):
                core.publish_event("Dwelling", {"n": 1})
            time.sleep(0.01)
        time.sleep(1.5)
    finally:
        pusher.stop(timeout=2)
    during = [t for t, _ in rec.sent if t > started]
    # About one per second while counters move, and the final count after they stopped.
    assert 2 <= len(during) <= 6, during
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert all(g > 0.9 for g in gaps), gaps
    assert rec.sent[-1][1]["published"] == core.status()["published"]
