"""Test connection: the one-shot probe against real brokers (each outcome in words, the
live connection untouched, the stored-password rule of the test API), and through a real
OctoPrint against a real password-checking Mosquitto.

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
import time

import pytest
import requests
from support.corekit import (
    connected_core,
    settings_for,
    tls_settings,
)
from support.mqtt_env import free_port, wait_for_port
from support.tls_certs import WRONG_NAME, make_certs

from octoprint_mqtt_core._core import test_connection as probe


@pytest.fixture
def password_broker(password_broker_factory):
    return password_broker_factory(USER, PASSWORD)


def with_user(b, password, **broker):
    return settings_for(b, broker={"username": USER, "password": password, **broker})


def test_each_outcome_in_words(password_broker):
    b = password_broker
    ok = probe(with_user(b, PASSWORD))
    assert ok["ok"] is True, ok
    assert ok["reason"] == f"connected to {b.host}:{b.port} with MQTT 3.1.1"
    assert ok["broker"] == f"{b.host}:{b.port}" and ok["elapsed"] < 2

    v5 = probe(with_user(b, PASSWORD, protocol="MQTTv5"))
    assert v5["ok"] and v5["reason"].endswith("with MQTT 5"), v5

    refused = probe(with_user(b, "wrong"))
    assert refused["ok"] is False
    assert refused["reason"] == (
        "the broker refused the connection: not authorised"
        " (check the user name, the password and the broker's ACL)"
    ), refused
    refused5 = probe(with_user(b, "wrong", protocol="MQTTv5"))
    # Mosquitto 2.0 answers "not authorised" to a bad password in both protocols.
    assert refused5["reason"] == refused["reason"], refused5

    dns = probe(settings_for(b, broker={"url": "no-such-host.invalid"}))
    assert dns["reason"].startswith("cannot resolve the broker's host name"), dns

    nothing = probe({"broker": {"url": "127.0.0.1", "port": b.port + 1 if b.port < 65535 else 1}})
    assert nothing["reason"].startswith("connection refused by 127.0.0.1:"), nothing

    assert probe({})["reason"].startswith("no broker host is set")
    # Read as the live connection reads it: the default port, and a warning saying so.
    far = probe(settings_for(b, broker={"port": 70000}))
    assert far["broker"].endswith(":1883") and "65535" in far["warnings"][0], far


def test_a_silent_broker_times_out_within_the_limit(broker):
    broker.pause()  # the kernel still accepts the TCP connection; nobody answers
    started = time.monotonic()
    out = probe(settings_for(broker), 1.0)
    elapsed = time.monotonic() - started
    assert out["ok"] is False
    assert (
        out["reason"]
        == f"timed out connecting to {broker.host}:{broker.port} (no answer within 1 s)"
    )
    assert 0.9 < elapsed < 2.5, elapsed


def test_tls_name_mismatch(tls_broker, certs):  # noqa: F811
    tb = tls_broker(certs.server_wrong_name)
    out = probe(tls_settings(tb, ca=certs.ca))
    assert not out["ok"] and out["reason"].startswith(WRONG_NAME), out
    good = probe(tls_settings(tb, ca=certs.ca, insecure=True))
    assert good["ok"], good


def test_the_live_connection_is_not_touched(core_factory, session_broker, subscriber_factory):
    # Same client id as the live client: the broker would drop one of them if the test used it.
    core, sub, base = connected_core(
        core_factory, session_broker, subscriber_factory, client={"client_id": "printer-7"}
    )
    settings = settings_for(session_broker, base, client={"client_id": "printer-7"})
    for _ in range(3):
        assert probe(settings)["ok"]
    time.sleep(0.5)
    status = core.status()
    assert status["state"] == "connected" and status["reconnects"] == 0, status
    # No `disconnected` (no last will, no status message) and no second `connected`.
    assert [m.payload for m in sub.messages(f"{base}mqtt")] == [b"connected"]
    assert "printer-7-test" in session_broker.log_text()


def test_the_saved_password_goes_only_to_its_own_broker():
    from octoprint_mqtt.api import settings_to_test

    stored = {"broker": {"url": "10.0.0.5", "port": 1883, "username": "u", "password": "s3cret"}}
    same = settings_to_test(stored, {"broker": {"url": "10.0.0.5", "port": "1883", "password": ""}})
    assert same["broker"]["password"] == "s3cret"
    elsewhere = settings_to_test(stored, {"broker": {"url": "evil.example", "password": ""}})
    assert elsewhere["broker"]["password"] is None
    other_user = settings_to_test(stored, {"broker": {"username": "v", "password": None}})
    assert other_user["broker"]["password"] is None
    typed = settings_to_test(stored, {"broker": {"url": "evil.example", "password": "typed"}})
    assert typed["broker"]["password"] == "typed"
    assert stored["broker"]["password"] == "s3cret"
    # The same host, port and user, reached another way: no saved password either.
    for change in [
        {"tls_active": True},
        {"transport": "websockets"},
    ]:
        other_way = settings_to_test(stored, {"broker": {**change, "password": ""}})
        assert other_way["broker"]["password"] is None, change
    saved_tls = {"broker": {**stored["broker"], "tls_active": True, "tls": {"ca_certs": "/ca"}}}
    for change in [{"tls": {"ca_certs": "/mine.pem"}}, {"tls_insecure": True}]:
        other_way = settings_to_test(saved_tls, {"broker": {**change, "password": ""}})
        assert other_way["broker"]["password"] is None, change
    # TLS files do not matter while TLS is off: they are not used.
    files_only = settings_to_test(stored, {"broker": {"tls": {"ca_certs": "/x"}, "password": ""}})
    assert files_only["broker"]["password"] == "s3cret"
    saved_ws = {"broker": {**stored["broker"], "transport": "websockets", "ws_path": "/mqtt"}}
    other_path = settings_to_test(saved_ws, {"broker": {"ws_path": "/other", "password": ""}})
    assert other_path["broker"]["password"] is None
    # The path as the connection reads it: "mqtt" is "/mqtt".
    same_path = settings_to_test(saved_ws, {"broker": {"ws_path": "mqtt", "password": ""}})
    assert same_path["broker"]["password"] == "s3cret"


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
