"""TLS through the native core against real Mosquitto TLS listeners.

Each broker has its plain listener (for a subscriber that watches what the core publishes)
and one TLS listener with the server certificate under test. The certificates come from
tls_certs.py, made once per session. A good setup must connect and get a message through; a
bad one must name what is wrong: handshake failures put the core in "backing_off" with a
reason from failure.rs, unusable TLS files leave it "idle" with an ERROR naming the setting.
"""

from __future__ import annotations

import logging

import pytest
from support.corekit import (
    LOGGER,
    event_json,
    tls_settings,
    unique_base,
    wait_state,
    wait_until,
)
from support.tls_certs import (
    CLIENT_CERT_REJECTED,
    EXPIRED,
    NOT_TRUSTED,
    WRONG_NAME,
    TlsBroker,
)


def assert_gets_through(core_factory, subscriber_factory, tb: TlsBroker, **kwargs) -> None:
    """The core connects over TLS and what it publishes reaches a plain-port subscriber."""
    base = unique_base()
    sub = subscriber_factory(tb.broker.host, tb.broker.port, f"{base}#")
    core = core_factory(tls_settings(tb, base, **kwargs))
    wait_state(core, "connected")
    sub.wait_for(f"{base}mqtt", predicate=lambda m: m.payload == b"connected")
    assert core.publish_event("Dwelling", {"over": "tls"}) is True
    sub.wait_for(f"{base}event/Dwelling", predicate=lambda m: event_json(m)["over"] == "tls")
    assert core.status()["last_error"] is None


def failure_reason(core_factory, tb: TlsBroker, **kwargs) -> str:
    """The core's reason for a failed TLS connection (it keeps retrying)."""
    core = core_factory(tls_settings(tb, **kwargs))
    status = wait_state(core, "backing_off")
    assert not core.connected
    return status["last_error"]


def error_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]


def setup_error(core_factory, caplog, tb: TlsBroker, **kwargs) -> tuple[str, str]:
    """TLS settings that can never work: the core stays idle and logs one ERROR.
    Returns (status last_error, the ERROR log message)."""
    core = core_factory(tls_settings(tb, **kwargs))
    status = wait_until(
        lambda: (s := core.status())["last_error"] and s, 5.0, "a configuration error"
    )
    assert status["state"] == "idle", status
    assert not core.connected
    records = error_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert status["last_error"] in message
    assert "fix the settings" in message
    return status["last_error"], message


# --------------------------------------------------------------------------
# Good setups
# --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_server_certificate_from_the_configured_ca(
    tls_broker, core_factory, subscriber_factory, certs, host
):
    tb = tls_broker(certs.server)
    assert_gets_through(core_factory, subscriber_factory, tb, host=host, ca=certs.ca)


def test_mqtt5_over_tls(tls_broker, core_factory, subscriber_factory, certs):
    tb = tls_broker(certs.server)
    assert_gets_through(core_factory, subscriber_factory, tb, ca=certs.ca, protocol="MQTTv5")


def test_tls_insecure_accepts_a_certificate_for_another_name(
    tls_broker, core_factory, subscriber_factory, certs
):
    tb = tls_broker(certs.server_wrong_name)
    assert_gets_through(core_factory, subscriber_factory, tb, ca=certs.ca, insecure=True)


@pytest.mark.parametrize("tls12", [False, True], ids=["tls13", "tls12"])
@pytest.mark.parametrize(
    "cert_attr, key_attr",
    [
        ("client_rsa", "client_rsa_pkcs8"),
        ("client_rsa", "client_rsa_pkcs1"),
        ("client_ec", "client_ec_pkcs8"),
        ("client_ec", "client_ec_sec1"),
        ("client_combined", None),  # certificate and key in one file, keyfile unset
    ],
)
def test_client_certificate_accepted(
    tls_broker, core_factory, subscriber_factory, certs, cert_attr, key_attr, tls12
):
    tb = tls_broker(certs.server, require_certificate=True, tls12=tls12)
    key = getattr(certs, key_attr) if key_attr else None
    assert_gets_through(
        core_factory, subscriber_factory, tb, ca=certs.ca, cert=getattr(certs, cert_attr), key=key
    )


# broker.tls.ciphers takes OpenSSL's names (what the classic plugin passed to OpenSSL). The
# server key is ECDSA, and the listener offers TLS 1.2 only with this one suite.
ONLY_ECDSA_AES256 = ("ciphers ECDHE-ECDSA-AES256-GCM-SHA384",)


@pytest.mark.parametrize(
    "ciphers",
    ["ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"],
)
def test_ciphers_setting_selects_the_suites(
    tls_broker, core_factory, subscriber_factory, certs, ciphers
):
    tb = tls_broker(certs.server, tls12=True, extra=ONLY_ECDSA_AES256)
    assert_gets_through(core_factory, subscriber_factory, tb, ca=certs.ca, ciphers=ciphers)


def test_ciphers_the_broker_does_not_offer(tls_broker, core_factory, certs):
    tb = tls_broker(certs.server, tls12=True, extra=ONLY_ECDSA_AES256)
    reason = failure_reason(core_factory, tb, ca=certs.ca, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert reason.startswith(
        "TLS: the broker refused the handshake; it shares none of the cipher suites in "
        "broker.tls.ciphers"
    ), reason


def test_unsupported_ciphers_are_refused_naming_the_supported_ones(
    tls_broker, core_factory, certs, caplog
):
    tb = tls_broker(certs.server)
    reason, _ = setup_error(core_factory, caplog, tb, ca=certs.ca, ciphers="HIGH:!aNULL:AES128-SHA")
    assert "broker.tls.ciphers" in reason
    assert "(HIGH, !aNULL, AES128-SHA)" in reason
    assert "supported: TLS_AES_256_GCM_SHA384:" in reason
    assert "ECDHE-RSA-AES128-GCM-SHA256" in reason


# --------------------------------------------------------------------------
# Handshake failures: backing_off with a specific reason
# --------------------------------------------------------------------------


def test_server_certificate_from_an_unknown_ca(tls_broker, core_factory, certs, caplog):
    tb = tls_broker(certs.server_untrusted)
    reason = failure_reason(core_factory, tb, ca=certs.ca)
    assert reason.startswith(NOT_TRUSTED), reason
    assert "broker.tls.ca_certs" in reason
    # The log line says where and why.
    lines = [r.getMessage() for r in caplog.records if "Cannot connect" in r.getMessage()]
    assert any(f"localhost:{tb.tls_port}" in m and NOT_TRUSTED in m for m in lines), lines


def test_system_cas_do_not_trust_a_private_ca(tls_broker, core_factory, certs):
    tb = tls_broker(certs.server)
    assert failure_reason(core_factory, tb).startswith(NOT_TRUSTED)


def test_server_certificate_for_another_name(tls_broker, core_factory, certs):
    tb = tls_broker(certs.server_wrong_name)
    reason = failure_reason(core_factory, tb, ca=certs.ca)
    assert reason.startswith(WRONG_NAME), reason
    assert "tls_insecure" in reason


def test_tls_insecure_still_rejects_an_unknown_ca(tls_broker, core_factory, certs):
    tb = tls_broker(certs.server_untrusted)
    reason = failure_reason(core_factory, tb, ca=certs.ca, insecure=True)
    assert reason.startswith(NOT_TRUSTED), reason


def test_tls_insecure_still_rejects_an_expired_certificate(tls_broker, core_factory, certs):
    tb = tls_broker(certs.server_expired)
    reason = failure_reason(core_factory, tb, ca=certs.ca, insecure=True)
    assert reason.startswith(EXPIRED), reason


def test_expired_server_certificate(tls_broker, core_factory, certs):
    tb = tls_broker(certs.server_expired)
    reason = failure_reason(core_factory, tb, ca=certs.ca)
    assert reason.startswith(EXPIRED), reason


def test_mqtt5_reports_the_same_reason(tls_broker, core_factory, certs):
    tb = tls_broker(certs.server_untrusted)
    reason = failure_reason(core_factory, tb, ca=certs.ca, protocol="MQTTv5")
    assert reason.startswith(NOT_TRUSTED), reason


# With TLS 1.3 the client finishes its side of the handshake before the broker checks the
# client certificate, so the broker's alert arrives on the first MQTT read (rumqttc wraps it
# in its packet decoder's error); with TLS 1.2, OpenSSL answers a missing client certificate
# with a plain handshake_failure. Both must still name the client certificate.


@pytest.mark.parametrize(
    "tls12, protocol",
    [
        pytest.param(False, "MQTTv311", id="tls13-mqtt311"),
        pytest.param(False, "MQTTv5", id="tls13-mqtt5"),
        pytest.param(True, "MQTTv311", id="tls12-mqtt311"),
    ],
)
def test_client_certificate_required_but_none_given(
    tls_broker, core_factory, certs, tls12, protocol
):
    tb = tls_broker(certs.server, require_certificate=True, tls12=tls12)
    reason = failure_reason(core_factory, tb, ca=certs.ca, protocol=protocol)
    assert reason.startswith("TLS:"), reason
    assert "client certificate" in reason and "broker.tls.certfile" in reason, reason


@pytest.mark.parametrize(
    "tls12",
    [
        pytest.param(False, id="tls13"),
        pytest.param(True, id="tls12"),
    ],
)
def test_client_certificate_from_an_unknown_ca(tls_broker, core_factory, certs, tls12):
    tb = tls_broker(certs.server, require_certificate=True, tls12=tls12)
    reason = failure_reason(
        core_factory,
        tb,
        ca=certs.ca,
        cert=certs.client_untrusted.cert,
        key=certs.client_untrusted.key,
    )
    assert reason.startswith(CLIENT_CERT_REJECTED), reason


def test_tls_to_a_plain_listener(tls_broker, core_factory, certs):
    tb = tls_broker(certs.server)
    reason = failure_reason(core_factory, tb, port=tb.broker.port, ca=certs.ca)
    assert reason.startswith("TLS:"), reason
    assert "TLS listener" in reason, reason


# --------------------------------------------------------------------------
# TLS files that cannot work: idle, one ERROR naming the setting
# --------------------------------------------------------------------------


def test_missing_ca_file(tls_broker, core_factory, certs, caplog, tmp_path):
    tb = tls_broker(certs.server)
    missing = tmp_path / "nope.crt"
    reason, _ = setup_error(core_factory, caplog, tb, ca=missing)
    assert "broker.tls.ca_certs" in reason and str(missing) in reason
    assert "does not exist" in reason


def test_ca_setting_pointing_to_a_directory(tls_broker, core_factory, certs, caplog):
    tb = tls_broker(certs.server)
    reason, _ = setup_error(core_factory, caplog, tb, ca=certs.directory)
    assert "broker.tls.ca_certs" in reason and "not a file" in reason


def test_ca_file_without_pem(tls_broker, core_factory, certs, caplog, tmp_path):
    tb = tls_broker(certs.server)
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("this is not a certificate\n")
    reason, _ = setup_error(core_factory, caplog, tb, ca=garbage)
    assert "broker.tls.ca_certs" in reason and str(garbage) in reason
    assert "no PEM certificate" in reason


def test_ca_file_with_broken_pem(tls_broker, core_factory, certs, caplog, tmp_path):
    tb = tls_broker(certs.server)
    broken = tmp_path / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n")
    reason, _ = setup_error(core_factory, caplog, tb, ca=broken)
    assert "broker.tls.ca_certs" in reason and str(broken) in reason
    assert "cannot read" in reason


def test_ca_file_with_a_pem_block_that_is_no_certificate(
    tls_broker, core_factory, certs, caplog, tmp_path
):
    tb = tls_broker(certs.server)
    bogus = tmp_path / "bogus.crt"
    bogus.write_text("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n")
    reason, _ = setup_error(core_factory, caplog, tb, ca=bogus)
    assert "broker.tls.ca_certs" in reason and str(bogus) in reason
    assert "peer" not in reason


def test_key_file_without_a_key(tls_broker, core_factory, certs, caplog):
    tb = tls_broker(certs.server, require_certificate=True)
    reason, _ = setup_error(
        core_factory, caplog, tb, ca=certs.ca, cert=certs.client_rsa, key=certs.client_rsa
    )
    assert "broker.tls.keyfile" in reason and str(certs.client_rsa) in reason
    assert "no usable private key" in reason


def test_certfile_without_key_and_no_keyfile(tls_broker, core_factory, certs, caplog):
    tb = tls_broker(certs.server, require_certificate=True)
    reason, _ = setup_error(core_factory, caplog, tb, ca=certs.ca, cert=certs.client_rsa)
    assert str(certs.client_rsa) in reason and "no usable private key" in reason
    # What to fix: set the keyfile, or put the key into the certfile.
    assert "broker.tls.keyfile" in reason and "broker.tls.certfile" in reason, reason


def test_keyfile_without_certfile(tls_broker, core_factory, certs, caplog):
    tb = tls_broker(certs.server, require_certificate=True)
    reason, _ = setup_error(core_factory, caplog, tb, ca=certs.ca, key=certs.client_rsa_pkcs8)
    assert "broker.tls.keyfile is set but broker.tls.certfile is not" in reason


def test_client_key_that_does_not_fit_the_certificate(tls_broker, core_factory, certs, caplog):
    tb = tls_broker(certs.server, require_certificate=True)
    reason, _ = setup_error(
        core_factory, caplog, tb, ca=certs.ca, cert=certs.client_rsa, key=certs.client_ec_sec1
    )
    assert "do not belong together" in reason
    assert "broker.tls.certfile" in reason and "broker.tls.keyfile" in reason


# --------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------


def test_tls_failures_are_logged_once_not_on_every_retry(
    tls_broker, core_factory, certs, caplog, tmp_path
):
    tb = tls_broker(certs.server_untrusted)
    retrying = core_factory(tls_settings(tb, ca=certs.ca))
    wait_state(retrying, "backing_off")
    # A second core whose CA file is missing: it never retries.
    idle = core_factory(tls_settings(tb, port=tb.broker.port, ca=tmp_path / "missing.crt"))
    wait_state(idle, "idle")
    tls_address = f"localhost:{tb.tls_port}"

    def lines(address: str, level: int) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == LOGGER and r.levelno == level and address in r.getMessage()
        ]

    def retries() -> list[str]:
        return [m for m in lines(tls_address, logging.DEBUG) if m.startswith("Still cannot")]

    # The first core tries at 0, 1 and 3 s: wait for the two retries (about 3 s).
    wait_until(lambda: len(retries()) >= 2, 8.0, "two retries")
    assert all(NOT_TRUSTED in m for m in retries()), retries()
    warnings = lines(tls_address, logging.WARNING)
    assert len(warnings) == 1 and NOT_TRUSTED in warnings[0], warnings
    assert retrying.status()["state"] == "backing_off"

    plain_address = f"localhost:{tb.broker.port}"
    errors = lines(plain_address, logging.ERROR)
    assert len(errors) == 1 and "broker.tls.ca_certs" in errors[0], errors
    assert lines(plain_address, logging.WARNING) == []
    assert idle.status()["state"] == "idle"
