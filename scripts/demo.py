"""The main job, live: a local Mosquitto, OctoPrint with its virtual printer and this plugin,
a sample print, and every MQTT message printed as the broker delivers it.

Run through scripts/demo.sh, which installs everything first. Without --keep the demo stops
once the print is done and its 100 % progress message was shown; Ctrl-C stops it at any time.
Either way OctoPrint is stopped first, so that the plugin's `disconnected` on the status topic
is shown, then the traffic view, then Mosquitto.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.mqtt_env import Broker, free_port  # noqa: E402
from support.octoprint_env import ADMIN_PASSWORD, ADMIN_USER, OctoPrintInstance  # noqa: E402

BASE_TOPIC = "octoprint/"  # the plugin's default for a new install
STATUS_TOPIC = BASE_TOPIC + "mqtt"
PROGRESS_TOPIC = BASE_TOPIC + "progress/printing"

# Events the demo leaves out (publish.eventExclude, docs/settings.md): the achievements
# plugin's unlocks and the health check's reports say nothing about MQTT or the print.
EVENT_EXCLUDE = ["plugin_achievements_*", "plugin_health_check_*"]


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


class Traffic:
    """mosquitto_sub on every topic, its lines ('topic payload') shown here as they arrive.

    Its output comes through this process so that the demo knows what was shown: it stops
    the subscriber only once `disconnected` was printed. It runs in a session of its own, so
    that a terminal's Ctrl-C does not stop it before that.
    """

    def __init__(self, broker: Broker) -> None:
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self.proc = subprocess.Popen(
            [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", broker.host,
             "-p", str(broker.port), "-v", "-t", "#"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._show, name="traffic", daemon=True).start()
        # Subscribed before OctoPrint starts, so that its first messages are shown too.
        deadline = time.monotonic() + 10
        while "Received SUBSCRIBE" not in broker.log_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto_sub did not subscribe:\n{broker.log_text()}")
            time.sleep(0.05)

    def _show(self) -> None:
        for line in self.proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def shown_count(self) -> int:
        with self._cond:
            return len(self._lines)

    def wait_shown(
        self, topic: str, check: Callable[[str], bool], timeout: float, since: int = 0
    ) -> bool:
        """Wait until a message on `topic` whose payload passes `check` was shown, after the
        first `since` lines (see shown_count)."""
        prefix = topic + " "

        def shown() -> bool:
            return any(
                line.startswith(prefix) and check(line[len(prefix) :])
                for line in self._lines[since:]
            )

        with self._cond:
            return self._cond.wait_for(shown, timeout)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def progress_is(value: int) -> Callable[[str], bool]:
    def check(payload: str) -> bool:
        try:
            return json.loads(payload).get("progress") == value
        except (ValueError, AttributeError):
            return False

    return check


def still_stopping(signum, frame) -> None:
    say("still stopping, in order; a few seconds")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep OctoPrint running after the print (log in with the user and password "
        "printed) until Ctrl-C",
    )
    args = parser.parse_args()
    # Ctrl-C even when started with SIGINT ignored (`demo.sh &` from a script), and a `kill`
    # or a closed terminal like Ctrl-C: the children are in sessions of their own and would
    # be left running otherwise.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.default_int_handler)

    work = Path(tempfile.mkdtemp(prefix="octoprint-mqtt-demo-"))
    say(f"files and logs in {work}")
    broker = Broker(workdir=work / "broker", own_session=True)
    octoprint = OctoPrintInstance(
        work / "octoprint",
        free_port(),
        {
            "broker": {"url": broker.host, "port": broker.port},
            "publish": {"eventExclude": EVENT_EXCLUDE},
        },
        own_session=True,
    )
    traffic = None
    try:
        broker.start()
        say(f"Mosquitto on {broker.host}:{broker.port}; showing every message ('topic payload')")
        traffic = Traffic(broker)
        say("starting OctoPrint with the virtual printer and the plugin (about 10 s)")
        octoprint.start(timeout=120)
        say(f"OctoPrint at {octoprint.url} (user {ADMIN_USER}, password {ADMIN_PASSWORD})")
        octoprint.connect_printer()
        say("printing demo.gcode (about 30 s)")
        octoprint.upload("demo.gcode", sample_gcode(), select=True, print_=True)
        octoprint.wait_job_done(timeout=300, name="demo.gcode")
        if not traffic.wait_shown(PROGRESS_TOPIC, progress_is(100), timeout=30):
            say("the 100 % progress message did not arrive within 30 s")
        say("print done")
        if args.keep:
            say("OctoPrint keeps running; Ctrl-C stops everything")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print()  # the terminal echoed ^C without a newline
    finally:
        signal.signal(signal.SIGINT, still_stopping)
        signal.signal(signal.SIGTERM, still_stopping)
        if octoprint.running:
            shown = traffic.shown_count() if traffic is not None else 0
            # Stopped while OctoPrint was starting, the plugin may not have connected yet:
            # then there is no goodbye to wait for.
            connected = traffic is not None and traffic.wait_shown(
                STATUS_TOPIC, lambda payload: payload == "connected", 0
            )
            if connected:
                say("stopping OctoPrint: the plugin says 'disconnected' on the status topic")
            else:
                say("stopping OctoPrint")
            octoprint.stop()
            if connected and not traffic.wait_shown(
                STATUS_TOPIC, lambda payload: payload == "disconnected", 10, since=shown
            ):
                say("no 'disconnected' arrived within 10 s")
        if traffic is not None:
            traffic.stop()
        broker.stop()
        say(f"stopped; logs are in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
