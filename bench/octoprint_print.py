"""A single-file OctoPrint plugin for figures 10 and 11 (a whole print): it fires a tick event
through OctoPrint's event manager every MQTT_BENCH_TICK_MS and records how late its own
on_event receives each one while printing, and the server process's CPU time from PrintStarted
to PrintDone. At PrintDone it writes the numbers to the file named by MQTT_BENCH_OUT.

OctoPrint hands every event to every plugin's on_event on one thread, one after the other: a
handler that takes long (any plugin's, for any event) makes the ticks behind it late.

Not part of the MQTT plugin: bench/whole_print.py copies it into a throw-away OctoPrint.
"""

import json
import os
import threading
import time

import octoprint.plugin
from octoprint.events import Events, eventManager

# Not one of OctoPrint's events: the MQTT plugins file it as "unclassified", which the
# benchmark turns off in both, so that the probe adds no messages of its own.
TICK = "MqttBenchTick"


def _cpu_s():
    """utime + stime of this process (every thread), from /proc/self/stat."""
    with open("/proc/self/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MqttPrintTimingPlugin(octoprint.plugin.StartupPlugin, octoprint.plugin.EventHandlerPlugin):
    def __init__(self):
        self._printing = False
        self._delays = []
        self._events = {}
        self._start = None
        # The event handled before each tick: the worst ticks' say which handler held them up
        # (or none did, when another thread had the GIL).
        self._previous = None

    def on_after_startup(self):
        threading.Thread(target=self._tick, name="mqtt-bench-tick", daemon=True).start()

    def _tick(self):
        period = int(os.environ.get("MQTT_BENCH_TICK_MS", "50")) / 1e3
        due = time.monotonic()
        while True:
            due += period
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:  # this thread was held up itself: no burst to catch up
                due = time.monotonic()
            eventManager().fire(TICK, {"t_ns": time.perf_counter_ns()})

    def on_event(self, event, payload):
        if event == TICK:
            if self._printing:
                delay = time.perf_counter_ns() - payload["t_ns"]
                self._delays.append((delay, self._previous))
            self._previous = TICK
            return
        self._previous = event
        if event == Events.PRINT_STARTED:
            self._start = (time.monotonic(), _cpu_s())
            self._printing = True
            return
        if not self._printing:
            return
        self._events[event] = self._events.get(event, 0) + 1
        if event == Events.PRINT_DONE:
            self._printing = False
            self._write(self._result(time.monotonic(), _cpu_s()))
        elif event in (Events.PRINT_FAILED, Events.PRINT_CANCELLED):
            self._printing = False
            self._write({"error": f"the print ended with {event}: {payload}"})

    def _result(self, t_end, cpu_end):
        t_start, cpu_start = self._start
        delays = sorted(self._delays, key=lambda tick: tick[0])
        ms = [d / 1e6 for d, _ in delays] or [0.0]
        minutes = (t_end - t_start) / 60
        return {
            "t_start": t_start,
            "t_end": t_end,
            "print_s": t_end - t_start,
            "cpu_s": cpu_end - cpu_start,
            "cpu_s_per_min": (cpu_end - cpu_start) / minutes if minutes > 0 else 0.0,
            "ticks": len(delays),
            "stall_p50_ms": ms[len(ms) // 2],
            "stall_p99_ms": ms[min(len(ms) - 1, len(ms) * 99 // 100)],
            "stall_max_ms": ms[-1],
            "events": self._events,
            "worst_ticks": [[d / 1e6, previous] for d, previous in delays[-10:]],
        }

    def _write(self, result):
        out = os.environ.get("MQTT_BENCH_OUT")
        if out:
            with open(out + ".tmp", "w") as f:
                json.dump(result, f)
            os.replace(out + ".tmp", out)


__plugin_name__ = "MQTT whole-print timing (benchmark)"
__plugin_pythoncompat__ = ">=3.8,<4"
__plugin_implementation__ = MqttPrintTimingPlugin()
