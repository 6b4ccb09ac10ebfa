"""A single-file OctoPrint plugin for figure 8: once OctoPrint is up, it times calls into the
loaded MQTT plugin (this one or the classic one) from a thread of its own, as OctoPrint's
event thread and other plugins make them, and writes p50/p99 to the file named by
MQTT_BENCH_OUT.

Not part of the MQTT plugin: run.py copies it into a throw-away OctoPrint's plugins folder.
"""

import json
import os
import threading
import time

import octoprint.plugin


def _percentiles(values):
    s = sorted(values)
    return {
        "p50_us": s[len(s) // 2] / 1e3,
        "p99_us": s[min(len(s) - 1, len(s) * 99 // 100)] / 1e3,
    }


def _connected(mqtt) -> bool:
    """This plugin's core, or the classic plugin's flag (figure 8 times both)."""
    core = getattr(mqtt, "_core", None)
    return core.connected if core is not None else bool(getattr(mqtt, "_mqtt_connected", False))


class MqttTimingPlugin(octoprint.plugin.StartupPlugin):
    def on_after_startup(self):
        threading.Thread(target=self._run, name="mqtt-timing", daemon=True).start()

    def _run(self):
        out = os.environ.get("MQTT_BENCH_OUT")
        n = int(os.environ.get("MQTT_BENCH_N", "20000"))
        try:
            result = self._measure(n)
        except Exception as exc:  # the driver reads the reason from the file
            self._logger.exception("MQTT timing failed")
            result = {"error": repr(exc)}
        if out:
            with open(out + ".tmp", "w") as f:
                json.dump(result, f)
            os.replace(out + ".tmp", out)

    def _measure(self, n):
        info = self._plugin_manager.get_plugin_info("mqtt")
        if info is None or info.implementation is None:
            raise RuntimeError("the MQTT plugin is not loaded")
        mqtt = info.implementation
        publish = self._plugin_manager.get_helpers("mqtt", "mqtt_publish")["mqtt_publish"]
        deadline = time.monotonic() + 15
        while not _connected(mqtt):
            if time.monotonic() > deadline:
                raise RuntimeError("the MQTT plugin did not connect")
            time.sleep(0.01)
        now = time.perf_counter_ns
        result = {"n": n}
        # OctoPrint's event manager calls on_event with a payload dict it built for the event.
        times = []
        for i in range(n):
            payload = {
                "name": f"benchy_{i:07d}.gcode",
                "path": f"prints/calibration/benchy_{i:07d}.gcode",
                "origin": "local",
                "size": 3688412,
                "owner": "admin",
                "user": "admin",
            }
            t = now()
            mqtt.on_event("FileAdded", payload)
            times.append(now() - t)
        result["on_event"] = _percentiles(times)
        # One event at a time, as OctoPrint fires them: each finds the core's thread asleep.
        times = []
        for i in range(min(n, 2000)):
            time.sleep(0.001)
            payload = {"name": f"benchy_{i:07d}.gcode", "origin": "local", "size": 3688412}
            t = now()
            mqtt.on_event("FileAdded", payload)
            times.append(now() - t)
        result["on_event_paced"] = _percentiles(times)
        times = []
        for i in range(n):
            payload = {"state": "ON", "n": i}
            t = now()
            publish("bench8/helper/lamp", payload)
            times.append(now() - t)
        result["mqtt_publish"] = _percentiles(times)
        # OctoPrint's temperature callback: two heaters, every sample changed (each heater's
        # topic and, paced, the state topic), as while heating.
        times = []
        for i in range(n):
            sample = {
                "time": 1_700_000_000 + i,
                "tool0": {"actual": 20.0 + (i % 1000) * 0.2, "target": 210.0},
                "bed": {"actual": 20.0 + (i % 500) * 0.1, "target": 60.0},
            }
            t = now()
            mqtt.on_printer_add_temperature(sample)
            times.append(now() - t)
        result["temperature_sample"] = _percentiles(times)
        # A state change: the state topic's message at once, with the job read from OctoPrint.
        times = []
        states = (("PRINTING", "Printing"), ("PAUSED", "Paused"))
        for i in range(min(n, 5000)):
            state_id, text = states[i % 2]
            payload = {"state_id": state_id, "state_string": text}
            t = now()
            mqtt.on_event("PrinterStateChanged", payload)
            times.append(now() - t)
        result["on_event_state"] = _percentiles(times)
        return result


__plugin_name__ = "MQTT timing (benchmark)"
__plugin_pythoncompat__ = ">=3.8,<4"
__plugin_implementation__ = MqttTimingPlugin()
