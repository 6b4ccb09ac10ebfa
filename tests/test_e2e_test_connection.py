"""Test connection through a real OctoPrint, against a real password-checking Mosquitto: a
blank password means the saved one only for the very broker it was saved for, and a
malformed form gets 400 with a reason.

Whoever holds the plugin's permission may test, without access to the settings (and so to
the password). Had they only to keep host, port and user, they could get the saved password
sent in clear by switching TLS off, or to another endpoint by changing the transport, the
WebSocket path or the TLS files. Each case here changes one of those and leaves the password
blank: the broker must then refuse the test (it got no password), while the same form with
the password typed in connects (so the refusal is the missing password, nothing else).
"""

from __future__ import annotations

import re
import shutil

import pytest
import requests
from mqtt_env import free_port, wait_for_port
from tls_certs import make_certs

USER, PASSWORD = "printer", "saved-pw-R8c3"
REFUSED = re.compile(r"refused the connection: (bad user name or password|not authorised)")


@pytest.fixture
def setup(password_broker_factory, octoprint_factory, tmp_path):
    certs = make_certs(tmp_path / "certs")
    tls_port, ws_port = free_port(), free_port()
    b = password_broker_factory(
        USER,
        PASSWORD,
        extra=(
            f"listener {tls_port} 127.0.0.1\ncafile {certs.ca}\n"
            f"certfile {certs.server.cert}\nkeyfile {certs.server.key}\n"
            f"listener {ws_port} 127.0.0.1\nprotocol websockets\n"
        ),
    )
    for port in (tls_port, ws_port):
        wait_for_port(b.host, port, 5.0, b.proc)
    # The same CA under another name: a TLS file setting that differs and still verifies.
    ca_copy = tmp_path / "ca-copy.pem"
    shutil.copy(certs.ca, ca_copy)
    saved = {"url": b.host, "port": b.port, "username": USER, "password": PASSWORD}
    octoprint = octoprint_factory({"broker": saved})
    ports = {"plain": b.port, "tls": tls_port, "ws": ws_port}
    return octoprint, ports, str(certs.ca), str(ca_copy)


def _test(octoprint, form):
    response = requests.post(
        f"{octoprint.url}/api/plugin/mqtt",
        json={"command": "test_connection", "settings": form},
        headers={"X-Api-Key": octoprint.api_key},
        timeout=15,
    )
    return response


def _broker(**values):
    return {
        "url": "127.0.0.1",
        "username": USER,
        "transport": "tcp",
        "ws_path": "/mqtt",
        "tls_active": False,
        "tls_insecure": False,
        "tls": {"ca_certs": None, "certfile": None, "keyfile": None, "ciphers": None},
        **values,
    }


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_the_saved_password_only_for_its_own_broker(setup):
    octoprint, ports, ca, ca_copy = setup
    tls = {"ca_certs": ca, "certfile": None, "keyfile": None, "ciphers": None}
    # (what is saved, what the form changes): each change reaches a listener of the same
    # broker that takes the right password. The first two saved settings cannot work on
    # their port (TLS or WebSockets to a plain MQTT listener): the change is what connects.
    cases = {
        "TLS switched off": (
            _broker(port=ports["plain"], tls_active=True, tls=tls),
            {"tls_active": False},
        ),
        "another transport": (
            _broker(port=ports["plain"], transport="websockets"),
            {"transport": "tcp"},
        ),
        "another WebSocket path": (
            _broker(port=ports["ws"], transport="websockets"),
            {"ws_path": "/elsewhere"},
        ),
        "other TLS files": (
            _broker(port=ports["tls"], tls_active=True, tls=tls),
            {"tls": {**tls, "ca_certs": ca_copy}},
        ),
        "host-name check switched off": (
            _broker(port=ports["tls"], tls_active=True, tls=tls),
            {"tls_insecure": True},
        ),
    }
    problems = []  # every case is tried, so that a failure lists all that leak
    for name, (saved, change) in cases.items():
        octoprint.save_settings({"plugins": {"mqtt": {"broker": saved}}})
        form = {**saved, "password": ""}
        same = _test(octoprint, {"broker": form}).json()
        if saved["port"] != ports["plain"] and not same["ok"]:
            problems.append(f"{name}: the saved settings themselves: {same}")
        changed = _test(octoprint, {"broker": {**form, **change}}).json()
        if changed["ok"] or not REFUSED.search(changed["reason"]):
            problems.append(f"{name}: the saved password was sent: {changed}")
        typed = _test(octoprint, {"broker": {**form, **change, "password": PASSWORD}}).json()
        if not typed["ok"]:
            problems.append(f"{name}: with the password typed in: {typed}")
    assert not problems, "\n".join(problems)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_malformed_forms_get_400_with_a_reason(setup):
    octoprint = setup[0]
    for form, culprit in [
        ({"broker": None}, "broker"),
        ({"broker": [1]}, "broker"),
        ({"broker": "127.0.0.1"}, "broker"),
        ({"broker": {"tls": [1]}}, "broker.tls"),
        ({"publish": 5}, "publish"),
        ("not an object", "settings"),
    ]:
        response = _test(octoprint, form)
        assert response.status_code == 400, (form, response.status_code, response.text[:500])
        body = response.json()
        assert body["ok"] is False and culprit in body["reason"], (form, body)
    # Still answering, and nothing was logged as a server error.
    assert _test(octoprint, {"broker": {"password": PASSWORD}}).json()["ok"] is True
    assert "Traceback" not in octoprint.log_text()
