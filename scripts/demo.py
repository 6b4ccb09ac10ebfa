"""The main job, live: a local Mosquitto, OctoPrint with its virtual printer and this plugin,
a sample print, and every MQTT message printed as the broker delivers it.

Run through scripts/demo.sh, which installs everything first. `--keep` leaves OctoPrint
running after the print (log in with the user and password printed) until Ctrl-C.
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

from support.mqtt_env import Broker, free_port  # noqa: E402
from support.octoprint_env import ADMIN_PASSWORD, ADMIN_USER, OctoPrintInstance  # noqa: E402


def sample_gcode(layers: int = 12) -> str:
    lines = ["M140 S50", "M104 S200", "M190 S50", "M109 S200", "G28", "G90"]
    for layer in range(layers):
        z = 0.3 + 0.2 * layer
        lines.append(f"G1 Z{z:.2f} F600")
        for x, y in ((10, 10), (50, 10), (50, 50), (10, 50)):
            lines.append(f"G1 X{x} Y{y} E1 F3000")
        lines.append("G4 P400")
    lines += ["M104 S0", "M140 S0", "G28 X0"]
    return "\n".join(lines) + "\n"


def say(text: str) -> None:
    print(f"\033[1;36m# {text}\033[0m", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep", action="store_true", help="keep OctoPrint running after the print"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="octoprint-mqtt-demo-"))
    broker = Broker(workdir=work / "broker")
    broker.start()
    say(f"Mosquitto on {broker.host}:{broker.port}; showing every message ('topic payload')")
    sub = subprocess.Popen(
        [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", broker.host,
         "-p", str(broker.port), "-v", "-t", "#"]
    )  # fmt: skip
    octoprint = OctoPrintInstance(
        work / "octoprint", free_port(), {"broker": {"url": broker.host, "port": broker.port}}
    )
    try:
        say("starting OctoPrint with the virtual printer and the plugin")
        octoprint.start()
        say(f"OctoPrint at {octoprint.url} (user {ADMIN_USER}, password {ADMIN_PASSWORD})")
        octoprint.connect_printer()
        say("printing demo.gcode")
        octoprint.upload("demo.gcode", sample_gcode(), select=True, print_=True)
        octoprint.wait_job_done(timeout=300, name="demo.gcode")
        say("print done")
        if args.keep:
            say("OctoPrint keeps running; Ctrl-C stops everything")
            sub.wait()
    except KeyboardInterrupt:
        pass
    finally:
        say("stopping OctoPrint: the plugin says 'disconnected' on the status topic")
        octoprint.stop()
        time.sleep(0.5)  # let mosquitto_sub print the last messages
        sub.terminate()
        sub.wait(5)
        broker.stop()
        say(f"logs are in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
