"""Soak: a million events through the plugin's real on_event into a real broker with a live
subscriber; prints the process's RSS every 100k events, and what was lost (nothing).

    .venv/bin/python scripts/soak.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.mqtt_env import Broker  # noqa: E402

from octoprint_mqtt.plugin import MqttPlugin  # noqa: E402

PAYLOAD = {
    "name": "benchy.gcode",
    "path": "folder/benchy.gcode",
    "origin": "local",
    "size": 1234567,
    "owner": "admin",
    "user": "admin",
}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.events

    broker = Broker(workdir=Path(tempfile.mkdtemp(prefix="soak-")), quiet=True)
    broker.start()
    counter = subprocess.Popen(
        [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", broker.host,
         "-p", str(broker.port), "-t", "soak/event/#", "-C", str(n)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    plugin = MqttPlugin()
    core = plugin._core
    core.configure({"broker": {"url": broker.host, "port": broker.port},
                    "publish": {"baseTopic": "soak/"}})  # fmt: skip
    while not core.connected:
        time.sleep(0.01)
    time.sleep(0.3)  # the counting subscriber is subscribed
    marks = {}
    start = time.monotonic()
    for i in range(1, n + 1):
        plugin.on_event("FileAdded", PAYLOAD)
        if i % 20_000 == 0:
            # Keep the core's command channel from filling: wait while it is far behind.
            while i - core.status()["published"] > 50_000:
                time.sleep(0.001)
        # Every 100k: the growth while the backlog reaches its high-water mark (warm-up) is
        # then told apart from growth that goes on (a leak).
        if i % 100_000 == 0 or i == n:
            marks[i] = rss_mib()
    try:
        counter.wait(timeout=120)
    except subprocess.TimeoutExpired:
        counter.kill()
    elapsed = time.monotonic() - start
    status = core.status()
    core.stop(1.0)
    broker.stop()
    print(f"events: {n}, elapsed {elapsed:.1f} s, {n / elapsed:,.0f}/s")
    for at, mib in marks.items():
        print(f"RSS after {at:>9,} events: {mib:.1f} MiB")
    print(f"subscriber received all: {counter.returncode == 0}; core: {status}")
    return 0 if counter.returncode == 0 and status["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
