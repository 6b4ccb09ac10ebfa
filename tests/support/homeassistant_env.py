"""A real Home Assistant core (PyPI's 2024.3.3, in `.venv-homeassistant/`, installed by
scripts/env.sh) for end-to-end tests: its own config folder, HTTP on a free loopback port, the
MQTT integration set up through a config entry pointing at a test broker, and an access token
the tests make themselves.

Written before the first start, in `.storage/`, as Home Assistant itself stores them:
- `auth`: one owner and a long-lived access token's refresh token. The access token is the
  JWT Home Assistant would issue for it (HS256 with the refresh token's key, `iss` its id), so
  no login flow is needed.
- `core.config_entries`: the MQTT entry (broker, port; discovery and the birth message at
  their defaults: prefix `homeassistant`, `online` on `homeassistant/status`).
- `onboarding`: done (its frontend would ask for a home location first).

Only `api`, `websocket_api` and the MQTT entry are configured; Home Assistant sets up its
always-on integrations (the frontend among them) besides, whose requirements are pinned too,
so `--skip-pip` misses none that matters and a start takes a few seconds. Its birth message
is not retained and comes a few seconds after it reports RUNNING; it never disconnects
cleanly from MQTT (its `offline` is its will).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests
import websocket

from support.mqtt_env import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(os.environ.get("HOMEASSISTANT_VENV", ROOT / ".venv-homeassistant"))
HASS = VENV / "bin" / "hass"
INSTALL_HINT = "run `source scripts/env.sh && install_homeassistant` (scripts/test.sh does)"
TOKEN_LIFETIME = 10 * 365 * 86400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(claims: dict, key: str) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _store(key: str, data: dict, version: int = 1, minor_version: int = 1) -> str:
    return json.dumps(
        {"version": version, "minor_version": minor_version, "key": key, "data": data}, indent=1
    )


class HomeAssistant:
    """One Home Assistant core in `config_dir`, its MQTT integration on `broker`."""

    def __init__(self, config_dir: Path, broker) -> None:
        if not HASS.exists():
            raise AssertionError(f"Home Assistant is not installed at {VENV}: {INSTALL_HINT}")
        self.config_dir = Path(config_dir)
        self.broker = broker
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.stdout_path = self.config_dir / "hass.stdout"
        self.token = ""
        self._prepare()

    # -- set-up -----------------------------------------------------------

    def _prepare(self) -> None:
        storage = self.config_dir / ".storage"
        storage.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n"
            "  name: Test home\n"
            "  latitude: 52.37\n  longitude: 4.89\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  country: NL\n  currency: EUR\n"
            "http:\n"
            f"  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\nwebsocket_api:\n"
            "logger:\n  default: info\n"
        )
        user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
        now = time.time()
        auth = {
            "users": [
                {
                    "id": user_id,
                    "group_ids": ["system-admin"],
                    "is_owner": True,
                    "is_active": True,
                    "name": "Tests",
                    "system_generated": False,
                    "local_only": False,
                }
            ],
            "groups": [{"id": "system-admin", "name": "Administrators"}],
            "credentials": [],
            "refresh_tokens": [
                {
                    "id": token_id,
                    "user_id": user_id,
                    "client_id": None,
                    "client_name": "tests",
                    "client_icon": None,
                    "token_type": "long_lived_access_token",
                    "created_at": "2026-01-01T00:00:00+00:00",
                    "access_token_expiration": float(TOKEN_LIFETIME),
                    "token": secrets.token_hex(64),
                    "jwt_key": jwt_key,
                    "last_used_at": None,
                    "last_used_ip": None,
                    "expire_at": None,
                    "credential_id": None,
                    "version": "2024.3.3",
                }
            ],
        }
        (storage / "auth").write_text(_store("auth", auth))
        self.token = jwt_hs256(
            {"iss": token_id, "iat": int(now), "exp": int(now) + TOKEN_LIFETIME}, jwt_key
        )
        entry = {
            "entry_id": uuid.uuid4().hex,
            "version": 1,
            "minor_version": 1,
            "domain": "mqtt",
            "title": self.broker.host,
            "data": {"broker": self.broker.host, "port": self.broker.port, "discovery": True},
            "options": {},
            "pref_disable_new_entities": False,
            "pref_disable_polling": False,
            "source": "user",
            "unique_id": None,
            "disabled_by": None,
        }
        done = {"done": ["user", "core_config", "analytics", "integration"]}
        (storage / "onboarding").write_text(_store("onboarding", done, version=4))
        (storage / "core.config_entries").write_text(
            _store("core.config_entries", {"entries": [entry]})
        )

    # -- process ----------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Starts it and waits until it runs with the MQTT entry loaded."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        out = open(self.stdout_path, "a")  # noqa: SIM115 (kept open for the process's life)
        self.proc = subprocess.Popen(
            [str(HASS), "-c", str(self.config_dir), "--skip-pip"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"Home Assistant exited ({self.proc.returncode}):\n{self.tail()}"
                )
            try:
                config = self.get("/api/config")
            except (requests.RequestException, AssertionError):
                config = None
            if config and config.get("state") == "RUNNING":
                break
            time.sleep(0.3)
        else:
            raise AssertionError(
                f"Home Assistant did not reach RUNNING in {timeout}s:\n{self.tail()}"
            )
        if config.get("safe_mode") or config.get("recovery_mode"):
            raise AssertionError(f"Home Assistant started in recovery mode:\n{self.tail()}")
        entries = self.ws("config_entries/get", domain="mqtt")
        if not entries or entries[0]["state"] != "loaded":
            raise AssertionError(f"the MQTT entry did not load: {entries}\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = 60) -> str:
        # Its own log file is rotated at every start; its output is kept whole here.
        try:
            return "\n".join(self.stdout_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no output)"

    # -- API --------------------------------------------------------------

    def get(self, path: str):
        r = requests.get(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        if r.status_code != 200:
            raise AssertionError(f"GET {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    def states(self) -> list[dict]:
        return self.get("/api/states")

    def ws(self, command: str, **fields):
        """One websocket command's result (entity and device registries have no REST API)."""
        conn = websocket.create_connection(f"ws://127.0.0.1:{self.port}/api/websocket", timeout=10)
        try:
            assert json.loads(conn.recv())["type"] == "auth_required"
            conn.send(json.dumps({"type": "auth", "access_token": self.token}))
            answer = json.loads(conn.recv())
            if answer["type"] != "auth_ok":
                raise AssertionError(f"websocket auth refused: {answer}")
            conn.send(json.dumps({"id": 1, "type": command, **fields}))
            result = json.loads(conn.recv())
        finally:
            conn.close()
        if not result.get("success"):
            raise AssertionError(f"{command}: {result}")
        return result["result"]

    def entity_registry(self) -> list[dict]:
        return self.ws("config/entity_registry/list")

    def device_registry(self) -> list[dict]:
        return self.ws("config/device_registry/list")
