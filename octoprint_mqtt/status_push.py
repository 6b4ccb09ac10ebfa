"""Pushes the core's connection status to the browser over OctoPrint's socket.

A thread waits in the core (without the GIL) for the next change of state, broker or failure
reason and sends it at once. Counters move with every message, so they are sent only along
with a change, or at most once per `interval` while they move: a busy printer does not flood
the socket. Nothing here touches the network or waits on OctoPrint.
"""

import threading
import time

# What makes a status different enough to send at once.
STATE_KEYS = ("state", "broker", "since", "last_error")


class StatusPusher:
    def __init__(self, core, send, interval=1.0, logger=None):
        """`send(status_dict)` delivers one update; `interval` bounds counter-only updates."""
        self._core = core
        self._send = send
        self._interval = interval
        self._logger = logger
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-status-push", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self, timeout=0.0):
        """Ends the updates. The thread leaves at the core's next status change (stopping the
        core is one) or within `interval`; shutdown need not wait for it."""
        self._stopped.set()
        if timeout > 0 and self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self):
        seen = 0
        last = None
        last_sent_at = 0.0
        while not self._stopped.is_set():
            # Returns at once when the version moved, else after `interval`.
            seen = self._core.wait_status(seen, self._interval)
            if self._stopped.is_set():
                return
            status = self._core.status()
            now = time.monotonic()
            changed = last is None or any(status[k] != last[k] for k in STATE_KEYS)
            if not changed and (status == last or now - last_sent_at < self._interval):
                continue
            last, last_sent_at = status, now
            try:
                self._send(status)
            except Exception:
                # A socket that just closed must not end the updates for everyone else.
                if self._logger is not None:
                    self._logger.exception("Cannot push the MQTT status to the browser")
