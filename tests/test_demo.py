"""scripts/demo.py as a user runs it (scripts/demo.sh without the build): its own Mosquitto and
OctoPrint, the sample print, the traffic view, and Ctrl-C.

Ctrl-C is sent the way a terminal sends it, to the demo's whole process group: the demo must
stop OctoPrint first (the plugin's `disconnected` is shown), then the traffic view, then the
broker, with no traceback on the console or in OctoPrint's log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Demo:
    """The demo in a process group of its own (as a terminal's foreground job), its output
    collected line by line."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.tmp_path = tmp_path
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, str(DEMO), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            # Outside the checkout, so OctoPrint loads the installed plugin; the demo's work
            # folder (tempfile.mkdtemp) goes to tmp_path.
            cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(tmp_path)},
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(ANSI.sub("", line.rstrip("\n")))
                self._cond.notify_all()

    def wait_line(self, text: str, timeout: float) -> int:
        """Index of the first line starting with `text`."""

        def found():
            return next((i for i, line in enumerate(self.lines) if line.startswith(text)), None)

        with self._cond:
            index = self._cond.wait_for(lambda: found() is not None, timeout)
            index = found()
        if index is None:
            raise AssertionError(f"no {text!r} within {timeout}s; output:\n{self.output()}")
        return index

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"demo still running after {timeout}s:\n{self.output()}") from None

    def workdir(self) -> Path:
        (work,) = self.tmp_path.glob("octoprint-mqtt-demo-*")
        return work

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def demo_factory(tmp_path):
    demos: list[Demo] = []

    def make(*args: str) -> Demo:
        demo = Demo(tmp_path, *args)
        demos.append(demo)
        return demo

    yield make
    for demo in demos:
        demo.kill()
        kill_leftovers(tmp_path)


def processes_using(path: Path) -> list[int]:
    """Processes whose command line names `path` (the demo's children all do)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(path) in cmdline:
                pids.append(int(proc.name))
    return pids


def kill_leftovers(path: Path) -> None:
    for pid in processes_using(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def index_of(lines: list[str], predicate, start: int = 0) -> int | None:
    return next((i for i in range(start, len(lines)) if predicate(lines[i])), None)


def is_progress(value: int):
    def check(line: str) -> bool:
        topic, _, payload = line.partition(" ")
        if topic != "octoprint/progress/printing":
            return False
        try:
            return json.loads(payload).get("progress") == value
        except ValueError:
            return False

    return check


def check_clean_shutdown(demo: Demo, stopping: int) -> None:
    """After the line `stopping`: `disconnected` shown before the demo's last line, no
    traceback anywhere, nothing of the demo still running."""
    lines = demo.lines
    out = demo.output()
    done = index_of(lines, lambda line: line.startswith("# stopped; logs are in"), stopping)
    assert done is not None, out
    bye = index_of(lines, lambda line: line == "octoprint/mqtt disconnected", stopping)
    assert bye is not None and bye < done, out
    assert "Traceback" not in out
    work = demo.workdir()
    octoprint_log = (work / "octoprint" / "logs" / "octoprint.log").read_text(errors="replace")
    serve_log = (work / "octoprint" / "serve.log").read_text(errors="replace")
    for name, text in (("octoprint.log", octoprint_log), ("serve.log", serve_log)):
        assert "Traceback" not in text, f"{name}:\n{text[-5000:]}"
        assert "--- Logging error ---" not in text, f"{name}:\n{text[-5000:]}"
        errors = [line for line in text.splitlines() if " - ERROR - " in line]
        assert not errors, f"{name}:\n" + "\n".join(errors)
    # The broker saw the plugin say goodbye (DISCONNECT: OctoPrint stopped gracefully, not
    # killed), and only then the traffic view (mosquitto_sub, client id `auto-…`): the order
    # the demo stops them in. OctoPrint's own log loses its last lines at exit, so it cannot
    # tell.
    broker_log = (work / "broker" / "mosquitto.log").read_text(errors="replace")
    goodbyes = re.findall(r"Client (\S+) disconnected\.", broker_log)
    assert [client.split("-")[0] for client in goodbyes] == ["octoprint", "auto"], broker_log
    assert processes_using(work) == [], "left running"


def check_print_shown(demo: Demo) -> int:
    """The plugin's first message, the print's 100 % before `print done`, and no achievement
    event; returns the index of `print done`."""
    lines = demo.lines
    out = demo.output()
    assert "octoprint/mqtt connected" in lines, out
    done = index_of(lines, lambda line: line == "# print done")
    hundred = index_of(lines, is_progress(100))
    assert done is not None and hundred is not None and hundred < done, out
    assert index_of(lines, lambda line: line.startswith("octoprint/event/PrintDone ")), out
    # publish.eventExclude leaves out the achievements plugin's events.
    assert not [line for line in lines if "achievement" in line.split(" ")[0].lower()], out
    return done


def test_ctrl_c_with_keep_shows_disconnected_and_stops_in_order(demo_factory):
    demo = demo_factory("--keep")
    demo.wait_line("# OctoPrint keeps running", timeout=240)
    check_print_shown(demo)

    # No first-run wizard: none that OctoPrint would show is required and not yet seen.
    work = demo.workdir()
    users = yaml.safe_load((work / "octoprint" / "users.yaml").read_text())
    url = next(
        m.group(0) for line in demo.lines if (m := re.search(r"http://127\.0\.0\.1:\d+", line))
    )
    wizards = requests.get(
        f"{url}/api/setup/wizard", headers={"X-Api-Key": users["admin"]["apikey"]}, timeout=10
    ).json()
    assert [name for name, w in wizards.items() if w["required"] and not w["ignored"]] == []

    # As the terminal does: SIGINT to the whole foreground process group.
    time.sleep(1)
    os.killpg(demo.proc.pid, signal.SIGINT)
    assert demo.wait_exit(60) == 0
    stopping = demo.wait_line("# stopping OctoPrint", timeout=1)
    check_clean_shutdown(demo, stopping)


def test_without_keep_stops_after_the_print(demo_factory):
    demo = demo_factory()
    assert demo.wait_exit(240) == 0
    done = check_print_shown(demo)
    stopping = demo.wait_line("# stopping OctoPrint", timeout=1)
    assert stopping > done
    check_clean_shutdown(demo, stopping)
