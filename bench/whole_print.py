"""Figures 10 and 11: a whole print on OctoPrint's virtual printer, in three OctoPrints one at
a time (no MQTT plugin, the classic plugin, ours), with the broker up (10) or its port closed
(11). bench/octoprint_print.py, copied into each OctoPrint, measures the server's CPU time
and its event thread's delays over the print; a subscriber here counts what is delivered."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import figures
import paho.mqtt.client as mqtt
import procs
from support.e2ekit import wait_until
from support.mqtt_env import free_port
from support.octoprint_env import DISABLED_PLUGINS, OctoPrintInstance

HERE = Path(__file__).resolve().parent
CONTENDERS = ("none", "classic", "ours")
BASE = "bench10/"
TICK_MS = 50
MOVES_PER_S = 25
LAYER_S = 10

# A report of both heaters every second, whichever way OctoPrint asks for it (the virtual
# printer autoreports, M155 S1; otherwise M105 every second, heating or not).
SERIAL = {"timeout": {"temperature": 1, "temperatureTargetSet": 1, "temperatureAutoreport": 1}}


def print_gcode(seconds: int) -> str:
    """About `seconds` of printing: 8 mm moves at 10 mm/s (the virtual printer runs them 10x
    fast, and paces the file by them: 25 a second, measured), an M114 every second (a PositionUpdate
    event), a layer (ZChange) every LAYER_S with the heaters' targets moved by a few degrees,
    so that their temperatures keep changing, as a real printer's do."""
    lines = ["G21", "G90", "M82", "M104 S210", "M140 S60", "G28", "G92 E0", "G1 Z0.3 F1200"]
    e = 0.0
    for s in range(seconds):
        if s and s % LAYER_S == 0:
            layer = s // LAYER_S
            lines += [
                f"G1 Z{0.3 + 0.2 * layer:.1f} F1200",
                f"M104 S{205 if layer % 2 else 210}",
                f"M140 S{58 if layer % 2 else 60}",
            ]
        for i in range(MOVES_PER_S):
            e += 0.3
            lines.append(f"G1 X{18 if i % 2 == 0 else 10} Y{10 + s % 50} E{e:.2f} F600")
        lines.append("M114")
    lines += ["M104 S0", "M140 S0", "M84", ""]
    return "\n".join(lines)


class Counter:
    """Every message under `topic`, with its arrival time (CLOCK_MONOTONIC, as the plugin's
    PrintStarted and PrintDone times), so the print's own can be counted afterwards."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.times: list[float] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client()
        self._client.on_connect = lambda c, u, f, rc: c.subscribe(topic, 1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = lambda *_: self.times.append(time.monotonic())
        self._client.connect(host, port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise RuntimeError(f"no SUBACK from the broker on {host}:{port}")

    def between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for t in self.times)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def one_print(
    cwd: Path, name: str, contender: str, port: int, seconds: int, broker_up: bool
) -> dict:
    """One print in a fresh OctoPrint: `contender`'s MQTT plugin (none: ours disabled) on the
    broker at `port`, or on a closed port (broker_up=False)."""
    out = cwd / f"{name}.json"
    disabled = DISABLED_PLUGINS + (["mqtt"] if contender == "none" else [])
    instance = OctoPrintInstance(
        cwd / name,
        free_port(),
        {
            "broker": {"url": "127.0.0.1", "port": port},
            # Both plugins file the probe's ticks as unclassified: they would be 20 messages a
            # second of the benchmark's own. The print's own unclassified events (ChartMarked,
            # GcodeScript..., an achievement: five) go unpublished in both alike.
            "publish": {"baseTopic": BASE, "events": {"unclassified": False}},
        },
        extra_config={"serial": SERIAL, "plugins": {"_disabled": disabled}},
        plugin_files=[HERE / "octoprint_print.py"],
        env={"MQTT_BENCH_OUT": str(out), "MQTT_BENCH_TICK_MS": str(TICK_MS)},
        venv=procs.classic_venv() if contender == "classic" else None,
    )
    counter = None
    try:
        if broker_up:
            counter = Counter("127.0.0.1", port, f"{BASE}#")
        instance.start(timeout=90)
        instance.connect_printer()
        gcode = "whole-print.gcode"
        instance.upload(gcode, print_gcode(seconds), select=False, print_=False)
        # OctoPrint pauses its analysis while printing: finish it first, outside the print.
        wait_until(lambda: "gcodeAnalysis" in instance.file_info(gcode), 60, lambda: "no analysis")
        instance.print_file(gcode)
        deadline = time.monotonic() + 3 * seconds + 60
        while not out.exists():
            if time.monotonic() > deadline or not instance.running:
                raise RuntimeError(f"{name}: the print did not end:\n{instance.log_text()[-3000:]}")
            time.sleep(0.5)
    finally:
        instance.stop()
        if counter is not None:
            counter.close()
    result = json.loads(out.read_text())
    if "error" in result:
        raise RuntimeError(f"{name}: {result['error']}")
    if counter is not None:
        result["messages"] = counter.between(result["t_start"], result["t_end"])
    return result


def whole_print(cwd: Path, fig: str, port: int | None, seconds: int, reps: int) -> dict:
    """Figure `fig` on the broker at `port` (None: a closed port): `reps` prints of each
    contender, interleaved (none, classic, ours, none, ...); each figure the median over the
    runs. A plugin's share is its run's CPU per minute minus the no-plugin run's of the same
    round (the closest in time), the median of those."""
    broker_up = port is not None
    port = port if broker_up else free_port()
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    for rep in range(reps):
        for contender in CONTENDERS:
            name = f"print{fig}-{contender}-{rep}"
            runs[contender].append(one_print(cwd, name, contender, port, seconds, broker_up))
        for contender in ("classic", "ours"):
            runs[contender][-1]["share_s_per_min"] = (
                runs[contender][-1]["cpu_s_per_min"] - runs["none"][-1]["cpu_s_per_min"]
            )
    out = {c: figures._medians(r) for c, r in runs.items()}
    out["seconds"] = seconds
    return out
