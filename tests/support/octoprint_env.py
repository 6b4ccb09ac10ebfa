"""Run a real OctoPrint server (with its virtual printer) for end-to-end tests.

The server runs from the `octoprint` script next to the current interpreter,
so whatever plugins are pip-installed in this environment are loaded.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-pw-for-tests"

# Bundled plugins that phone home, probe hardware or nag; none is needed here.
# Every name exists in OctoPrint 1.11 (pi_support / firmware_check are the
# separately packaged OctoPrint-PiSupport / OctoPrint-FirmwareCheck).
# pluginmanager fetches plugins.octoprint.org at startup; discovery does
# zeroconf multicast. file_check (OctoPrint-FileCheck) would greet every server whose first
# run is over with a wizard that offers to scan the uploads.
# The third-party Home Assistant plugin (support/homeassistant.py) is pip-installed into the
# suite's virtualenv once its tests ran; disabled here, it stays out of every other test.
HOMEASSISTANT_PLUGIN = "homeassistant"
DISABLED_PLUGINS = [
    "announcements",
    "discovery",
    "errortracking",
    "file_check",
    "firmware_check",
    HOMEASSISTANT_PLUGIN,
    "pi_support",
    "pluginmanager",
    "softwareupdate",
    "tracking",
]


def deep_merge(base: dict, extra: dict) -> dict:
    """Return base updated recursively with extra (neither is modified)."""
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def base_config() -> dict:
    """OctoPrint settings for a quiet, offline, wizard-free test server."""
    return {
        "server": {
            "firstRun": False,
            # A SIGKILLed run leaves a flag that would force safe mode (no
            # third-party plugins, so no MQTT plugin) on the next start.
            "ignoreIncompleteStartup": True,
            # Offline-detection would cost 6 s of retries at every start, so
            # the check is off; plugins that fetch from the internet are
            # disabled instead (no tracebacks about unreachable hosts).
            "onlineCheck": {"enabled": False},
            "pluginBlacklist": {"enabled": False},
            "pythonEolCheck": {"enabled": False},
        },
        "plugins": {
            "_disabled": list(DISABLED_PLUGINS),
            "virtual_printer": {
                "enabled": True,
                # The defaults inject checksum errors (resends) on purpose.
                "simulated_errors": [],
            },
            "health_check": {"disabled": ["python_eol"]},
        },
    }


class OctoPrintInstance:
    """One OctoPrint server in its own basedir, driven through the REST API."""

    def __init__(
        self,
        basedir: Path,
        port: int,
        mqtt_settings: dict,
        extra_config: dict | None = None,
        log_levels: dict[str, str] | None = None,
        classic_config: bool = False,
        write_mqtt_section: bool = True,
        plugin_files: list[Path] | None = None,
        env: dict[str, str] | None = None,
        venv: Path | None = None,
        own_session: bool = False,
    ) -> None:
        self.basedir = Path(basedir)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.mqtt_settings = mqtt_settings
        self.classic_config = classic_config
        # False: config.yaml gets no plugins.mqtt section at all (a fresh install).
        self.write_mqtt_section = write_mqtt_section
        self.extra_config = extra_config or {}
        # e.g. {"octoprint.plugins.mqtt": "DEBUG"}, written to logging.yaml
        self.log_levels = log_levels or {}
        # Single-file plugins copied into <basedir>/plugins/, where OctoPrint loads them from.
        self.plugin_files = [Path(f) for f in plugin_files or []]
        # Extra environment variables of the server process.
        self.env = env or {}
        # True (the demo): the server runs in a session of its own, so that a terminal's
        # Ctrl-C reaches only the demo, which then stops OctoPrint gracefully (SIGTERM) and
        # waits for it before it stops the subscriber and the broker.
        self.own_session = own_session
        self.api_key = secrets.token_hex(16)
        # OctoPrint of the virtualenv `venv` (install tests), else of the one running the tests.
        bin_dir = Path(venv) / "bin" if venv else Path(sys.executable).parent
        self.executable = bin_dir / "octoprint"
        self.serve_log_path = self.basedir / "serve.log"
        self.proc: subprocess.Popen | None = None
        self._prepared = False
        self._http = requests.Session()
        self._http.headers["X-Api-Key"] = self.api_key

    # -- setup ------------------------------------------------------------

    def prepare(self) -> None:
        """Create basedir, admin user (with our API key) and config.yaml."""
        self.basedir.mkdir(parents=True, exist_ok=True)
        self._run_cli("user", "add", "--password", ADMIN_PASSWORD, "--admin", ADMIN_USER)
        # A per-user API key is the supported way in 1.11 (the global api.key
        # is deprecated and logs a warning on every request).
        users_path = self.basedir / "users.yaml"
        users = yaml.safe_load(users_path.read_text())
        users[ADMIN_USER]["apikey"] = self.api_key
        users_path.write_text(yaml.safe_dump(users))

        # The CLI already wrote a config.yaml (secret key etc.): merge into it.
        config_path = self.basedir / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
        config = deep_merge(config or {}, base_config())
        # Settings of this plugin carry its settings version; without one they look like the
        # classic plugin's and get migrated (classic=True writes them that way on purpose).
        if self.write_mqtt_section:
            mqtt = dict(self.mqtt_settings)
            if not self.classic_config:
                mqtt.setdefault("_config_version", 1)
            config = deep_merge(config, {"plugins": {"mqtt": mqtt}})
        config = deep_merge(config, self.extra_config)
        config_path.write_text(yaml.safe_dump(config))

        if self.log_levels:
            # OctoPrint merges <basedir>/logging.yaml into its logging config.
            loggers = {name: {"level": level} for name, level in self.log_levels.items()}
            (self.basedir / "logging.yaml").write_text(yaml.safe_dump({"loggers": loggers}))
        if self.plugin_files:
            plugins_dir = self.basedir / "plugins"
            plugins_dir.mkdir(exist_ok=True)
            for plugin_file in self.plugin_files:
                shutil.copy(plugin_file, plugins_dir / plugin_file.name)
        self._prepared = True

    def add_user(self, name: str, password: str, admin: bool = False) -> str:
        """Create another user with an API key of its own and return the key.

        A non-admin joins the "users" group, as one created in the UI does (the CLI would
        give it no group, hence no permissions at all). Call it before start(): the server
        reads users.yaml only at startup.
        """
        if not self._prepared:
            self.prepare()
        group = ["--admin"] if admin else ["--group", "users"]
        self._run_cli("user", "add", "--password", password, *group, name)
        api_key = secrets.token_hex(16)
        users_path = self.basedir / "users.yaml"
        users = yaml.safe_load(users_path.read_text())
        users[name]["apikey"] = api_key
        users_path.write_text(yaml.safe_dump(users))
        return api_key

    def read_config(self) -> dict:
        """config.yaml as OctoPrint last wrote it."""
        return yaml.safe_load((self.basedir / "config.yaml").read_text()) or {}

    def _run_cli(self, *args: str) -> str:
        cmd = [str(self.executable), "--basedir", str(self.basedir), *args]
        done = subprocess.run(
            cmd,
            cwd=self.basedir,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cmd} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    # -- process lifecycle ------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        if not self._prepared:
            self.prepare()
        cmd = [
            str(self.executable),
            "serve",
            "--iknowwhatimdoing",  # we run as root in CI containers
            "--basedir",
            str(self.basedir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        # NO_COLOR keeps ANSI escapes out of serve.log; cwd=basedir so a
        # source checkout in the caller's cwd cannot shadow the installed plugin.
        env = {**os.environ, "NO_COLOR": "1", **self.env}
        with open(self.serve_log_path, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.basedir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )
        try:
            self._wait_until_serving(timeout)
        except Exception:
            self.stop()
            raise

    def _wait_until_serving(self, timeout: float) -> None:
        # While plugins load, an "intermediary" server answers 404 on the same
        # port, so only a JSON answer from /api/version means we are up.
        deadline = time.monotonic() + timeout
        last_error: object = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(
                    f"octoprint exited with {self.proc.returncode}:\n"
                    f"{self.serve_log_text()[-5000:]}"
                )
            try:
                response = self._http.get(f"{self.url}/api/version", timeout=2)
                if response.status_code == 200 and "server" in response.json():
                    return
                last_error = response.status_code
            except (requests.RequestException, ValueError) as exc:
                last_error = exc
            time.sleep(0.2)
        raise TimeoutError(
            f"octoprint not serving after {timeout}s (last: {last_error}):\n"
            f"{self.serve_log_text()[-5000:]}"
        )

    def stop(self, timeout: float = 30.0) -> float:
        """SIGTERM (graceful: plugins' on_shutdown runs), then SIGKILL.

        Returns the seconds the shutdown took.
        """
        if not self.running:
            return 0.0
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return time.monotonic() - started

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        try:
            return (self.basedir / "logs" / "octoprint.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def serial_log_text(self) -> str:
        """logs/serial.log: the lines OctoPrint sent the printer and received from it, when
        the instance runs with `serial.log` on (extra_config)."""
        try:
            return (self.basedir / "logs" / "serial.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def serve_log_text(self) -> str:
        try:
            return self.serve_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- REST API -----------------------------------------------------------

    def get(self, path: str) -> dict:
        response = self._http.get(f"{self.url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def get_response(self, path: str) -> requests.Response:
        """GET without raising on an error status (/api/printer answers 409 while offline)."""
        return self._http.get(f"{self.url}{path}", timeout=10)

    def post(self, path: str, payload: dict) -> requests.Response:
        response = self._http.post(f"{self.url}{path}", json=payload, timeout=10)
        response.raise_for_status()
        return response

    def get_as(self, api_key: str, path: str) -> dict:
        """GET as the user owning `api_key` (see add_user)."""
        response = requests.get(f"{self.url}{path}", headers={"X-Api-Key": api_key}, timeout=10)
        response.raise_for_status()
        return response.json()

    def send_gcode(self, *commands: str) -> None:
        """Send G-code to the connected printer (POST /api/printer/command)."""
        self.post("/api/printer/command", {"commands": list(commands)})

    def file_info(self, path: str) -> dict:
        """GET /api/files/local/<path>: the file's information, with `gcodeAnalysis`."""
        return self.get(f"/api/files/local/{path}")

    def print_file(self, path: str) -> None:
        """Select an uploaded local file and start printing it."""
        self.post(f"/api/files/local/{path}", {"command": "select", "print": True})

    def settings(self) -> dict:
        return self.get("/api/settings")

    def save_settings(self, changes: dict) -> dict:
        return self.post("/api/settings", changes).json()

    def connection_state(self) -> str:
        return self.get("/api/connection")["current"]["state"]

    def connect_printer(self, timeout: float = 30.0) -> None:
        """Connect the virtual printer and wait until it is operational."""
        self.post(
            "/api/connection",
            {"command": "connect", "port": "VIRTUAL", "baudrate": 115200},
        )
        self._poll(
            lambda: self.connection_state() == "Operational",
            timeout,
            lambda: f"printer not operational, state {self.connection_state()!r}",
        )

    def upload(self, name: str, gcode_text: str, select: bool = True, print_: bool = True) -> dict:
        """Upload G-code to local storage, optionally selecting and printing it."""
        response = self._http.post(
            f"{self.url}/api/files/local",
            files={"file": (name, gcode_text.encode(), "application/octet-stream")},
            data={"select": str(select).lower(), "print": str(print_).lower()},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    def job_state(self) -> dict:
        return self.get("/api/job")

    def wait_job_done(self, timeout: float = 60.0, name: str | None = None) -> dict:
        """Wait until the current job (file `name`, if given) has finished.

        Finished means 100 % and back to "Operational"; checking the file name
        keeps a previous finished job from counting.
        """

        def done() -> bool:
            job = self.job_state()
            completion = (job.get("progress") or {}).get("completion")
            file_name = ((job.get("job") or {}).get("file") or {}).get("name")
            return (
                job["state"] == "Operational"
                and completion == 100
                and (name is None or file_name == name)
            )

        self._poll(done, timeout, lambda: f"job not done: {self.job_state()}")
        return self.job_state()

    @staticmethod
    def _poll(check, timeout: float, describe) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s: {describe()}")
            time.sleep(0.2)
