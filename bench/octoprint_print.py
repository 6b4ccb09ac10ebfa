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
import sys
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


# The MQTT plugin's own code: the classic plugin's package has the same name as ours, and it
# runs paho-mqtt's network thread.
PLUGIN_MODULES = ("octoprint_mqtt", "paho")
# What OctoPrint calls on a plugin while printing, besides a PrinterCallback's on_printer_*.
PRINT_CALLBACKS = ("on_event", "on_print_progress")
# Native ids of the Python threads started from the plugin's code (the classic plugin's paho
# loop, our progress timer and status push), and of every Python thread: noted by
# _noting_start. A thread outside the second set is a native one.
_plugin_threads = set()
_python_threads = {t.native_id for t in threading.enumerate()}
_thread_start = threading.Thread.start


def _started_by_plugin():
    """Whether the code that called Thread.start is the plugin's. Only the direct caller: a
    thread OctoPrint starts while serving a call from the plugin is OctoPrint's."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") == "threading":
        frame = frame.f_back
    return frame is not None and frame.f_globals.get("__name__", "").startswith(PLUGIN_MODULES)


def _noting_start(thread, *args, **kwargs):
    from_plugin = _started_by_plugin()
    _thread_start(thread, *args, **kwargs)  # returns once the thread runs: native_id is set
    _python_threads.add(thread.native_id)
    if from_plugin:
        _plugin_threads.add(thread.native_id)


# Set when OctoPrint imports this file, before any plugin's on_startup starts a thread.
threading.Thread.start = _noting_start


def _plugins(native_id):
    """Whether a thread is the MQTT plugin's own: started from its Python code, or native
    (the Rust core's; OctoPrint's are all Python threads; a native one that runs Python code
    has a stand-in, a _DummyThread, that no one started)."""
    return native_id in _plugin_threads or native_id not in _python_threads


def _threads_cpu_s():
    """{thread id: (its name, its CPU seconds)} of this process's threads: a Python thread's
    Python name, a native one's (the Rust core's: mqtt-core, mqtt-callbacks, ...)."""
    python = {t.native_id: t.name for t in threading.enumerate()}
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
            # Nanoseconds on a CPU: the stat file's utime and stime count 10 ms ticks, too
            # coarse for threads that run a few milliseconds a print.
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                cpu = int(f.read().split()[0]) / 1e9
        except OSError:  # ended since the listing
            continue
        threads[tid] = (python.get(int(tid)) or comm, cpu)
    if not threads:
        raise RuntimeError("cannot read any thread's /proc/self/task/*/schedstat")
    return threads


def _cpu_by_thread_name(start, end):
    """CPU seconds each thread name spent between two `_threads_cpu_s` readings (a thread
    that started in between counts from zero, one that ended is missing; under 0.1 ms, left
    out)."""
    names = {}
    for tid, (name, cpu) in end.items():
        if int(tid) in _plugin_threads:
            name = f"{name} (the MQTT plugin's)"
        names[name] = names.get(name, 0.0) + cpu - start.get(tid, (name, 0.0))[1]
    return {name: round(cpu, 4) for name, cpu in sorted(names.items()) if cpu >= 1e-4}


def _plugin_threads_cpu_s(start, end):
    """CPU seconds the MQTT plugin's own threads spent between two readings."""
    return sum(
        cpu - start.get(tid, (name, 0.0))[1]
        for tid, (name, cpu) in end.items()
        if _plugins(int(tid))
    )


def _own(impl, name):
    """Whether the plugin's own code defines the method (not OctoPrint's mixin it inherits)."""
    for cls in type(impl).__mro__:
        if name in cls.__dict__:
            return cls.__module__.startswith(PLUGIN_MODULES)
    return False


class Timed:
    """A plugin method that adds the CPU time of each call to `spent` (thread_time: the time
    of the calling thread only, which is OctoPrint's: its event thread, its comm thread)."""

    def __init__(self, method, spent, lock):
        self._method = method
        self._spent = spent
        self._lock = lock  # OctoPrint's event, comm and timer threads all call in

    def __call__(self, *args, **kwargs):
        # On one of the plugin's own threads, the time is counted with the thread's.
        if _plugins(threading.get_native_id()):
            return self._method(*args, **kwargs)
        t = time.thread_time_ns()
        try:
            return self._method(*args, **kwargs)
        finally:
            spent = time.thread_time_ns() - t
            with self._lock:
                self._spent[0] += spent
                self._spent[1] += 1


class MqttPrintTimingPlugin(octoprint.plugin.StartupPlugin, octoprint.plugin.EventHandlerPlugin):
    def __init__(self):
        self._printing = False
        self._delays = []
        self._events = {}
        self._start = None
        # The event handled before each tick: the worst ticks' say which handler held them up
        # (or none did, when another thread had the GIL).
        self._previous = None
        self._in_callbacks = [0, 0]  # ns, calls

    def on_after_startup(self):
        # OctoPrint looks these callbacks up on the plugin's object at every call: timed ones
        # put on the object are what it calls. Hooks (ours: a check of each line the printer
        # sends) are held by OctoPrint since startup: not timed.
        # Only what the plugin defines: the empty defaults it inherits from OctoPrint (a log
        # line callback, 57 calls a second) cost the timer more than they do.
        mqtt = self._plugin_manager.get_plugin_info("mqtt", require_enabled=True)
        if mqtt is not None and mqtt.implementation is not None:
            impl = mqtt.implementation
            lock = threading.Lock()
            for name in dir(type(impl)):
                if (name in PRINT_CALLBACKS or name.startswith("on_printer_")) and _own(impl, name):
                    setattr(impl, name, Timed(getattr(impl, name), self._in_callbacks, lock))
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
            try:
                threads = _threads_cpu_s()
            except RuntimeError as exc:
                self._write({"error": str(exc)})
                return
            self._start = (time.monotonic(), _cpu_s(), threads, self._in_callbacks[:])
            self._printing = True
            return
        if not self._printing:
            return
        self._events[event] = self._events.get(event, 0) + 1
        if event == Events.PRINT_DONE:
            self._printing = False
            self._write(self._result(time.monotonic(), _cpu_s(), _threads_cpu_s()))
        elif event in (Events.PRINT_FAILED, Events.PRINT_CANCELLED):
            self._printing = False
            self._write({"error": f"the print ended with {event}: {payload}"})

    def _result(self, t_end, cpu_end, threads_end):
        t_start, cpu_start, threads_start, callbacks_start = self._start
        in_callbacks_s = (self._in_callbacks[0] - callbacks_start[0]) / 1e9
        own_s = in_callbacks_s + _plugin_threads_cpu_s(threads_start, threads_end)
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
            # The MQTT plugin's CPU measured where it runs: in its callbacks on OctoPrint's
            # threads, and on its own threads.
            "own_s_per_min": own_s / minutes if minutes > 0 else 0.0,
            "in_callbacks_s": in_callbacks_s,
            "callback_calls": self._in_callbacks[1] - callbacks_start[1],
            "threads_cpu_s": _cpu_by_thread_name(threads_start, threads_end),
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
