"""The broker's user name and password: refused credentials give a clear reason and back off
without hammering, the password never reaches a log, and in a real OctoPrint it goes to the
users with the SETTINGS permission and a wrong one can be corrected.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from support.corekit import settings_for, wait_state
from support.e2ekit import (
    STATUS_TOPIC,
    broker_settings,
    payload_is,
    wait_until,
)


def test_credentials_refused_with_a_clear_reason_and_no_password_in_logs(
    core_factory, password_broker_factory, caplog
):
    b = password_broker_factory("printer", "right-pw", anonymous=False)
    secret = "wr0ng-S3CRET-pw"
    core = core_factory(settings_for(b, broker={"username": "printer", "password": secret}))
    status = wait_state(core, "backing_off")
    assert "refused" in status["last_error"]
    assert any(w in status["last_error"] for w in ("user name or password", "not authorised"))
    core.configure(settings_for(b, broker={"username": "printer", "password": "right-pw"}))
    wait_state(core, "connected", timeout=10)
    assert secret not in caplog.text and "right-pw" not in caplog.text


def test_wrong_credentials_back_off_without_hammering(core_factory, password_broker_factory):
    b = password_broker_factory("u", "right", anonymous=False)
    core = core_factory(settings_for(b, broker={"username": "u", "password": "wrong"}))
    status = wait_state(core, "backing_off")
    assert "refused" in status["last_error"]
    time.sleep(6.5)  # attempts at 0, 1, 3 and 7 s: at most 3 in this window (plus slack)
    attempts = b.log_text().count("New connection from")
    assert 2 <= attempts <= 4, attempts
    core.configure(settings_for(b, broker={"username": "u", "password": "right"}))
    wait_state(core, "connected", timeout=10)


SECRET = "s3cr3t-pw-XYZ"


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_password_is_never_logged(broker, subscriber_factory, octoprint_factory):
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory(
        {
            "broker": {
                "url": broker.host,
                "port": broker.port,
                "username": "e2e-user",
                "password": SECRET,
            }
        },
        # Debug logging, so that a password in a debug line is caught too.
        log_levels={"octoprint.plugins.mqtt": "DEBUG"},
    )
    sub.wait_for(STATUS_TOPIC, timeout=30, predicate=payload_is(b"connected"))
    # The broker allows anonymous clients but logs the username it was given.
    assert "u'e2e-user'" in broker.log_text(), broker.log_text()[-3000:]

    # A settings round trip through the API exercises the plugin's save path.
    assert "mqtt" in octoprint.settings()["plugins"]
    octoprint.save_settings({"plugins": {"mqtt": {"broker": {"password": SECRET}}}})
    octoprint.stop()

    logs = [octoprint.serve_log_path, *Path(octoprint.basedir, "logs").glob("*")]
    for path in logs:
        assert SECRET not in path.read_text(errors="replace"), f"password in {path}"
    assert " - octoprint.plugins.mqtt - " in octoprint.log_text()


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_password_goes_to_the_settings_permission_not_only_admins(broker, octoprint_factory):
    # OctoPrint's "admin" restriction level means the SETTINGS permission: a user who is no
    # admin but was given it reads the password; one without it (the Users group) does not.
    secret = "settings-perm-pw-4711"
    settings = broker_settings(broker)
    settings["broker"].update(username="e2e-user", password=secret)
    octoprint = octoprint_factory(settings, start=False)
    viewer_key = octoprint.add_user("viewer", "viewer-pw-for-tests")
    manager_key = octoprint.add_user("manager", "manager-pw-for-tests")
    users_path = octoprint.basedir / "users.yaml"
    users = yaml.safe_load(users_path.read_text())
    users["manager"]["permissions"] = ["SETTINGS"]
    users_path.write_text(yaml.safe_dump(users))
    octoprint.start()

    manager = octoprint.get_as(manager_key, "/api/currentuser")
    assert "admin" not in manager["groups"] and "SETTINGS" in manager["permissions"], manager
    admin_broker = octoprint.settings()["plugins"]["mqtt"]["broker"]
    assert admin_broker["password"] == secret, admin_broker
    manager_broker = octoprint.get_as(manager_key, "/api/settings")["plugins"]["mqtt"]["broker"]
    assert manager_broker["password"] == secret, manager_broker
    viewer_broker = octoprint.get_as(viewer_key, "/api/settings")["plugins"]["mqtt"]["broker"]
    assert viewer_broker.get("password") is None, viewer_broker
    # Only the password is hidden.
    assert viewer_broker["username"] == "e2e-user", viewer_broker


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_wrong_then_right_password(password_broker_factory, subscriber_factory, octoprint_factory):
    user, wrong, right = "e2e-user", "wrong-pw-Q7e1", "right-pw-K9x3"
    broker = password_broker_factory(user, right)
    sub = subscriber_factory(broker.host, broker.port)
    octoprint = octoprint_factory({}, log_levels={"octoprint.plugins.mqtt": "DEBUG"})
    refused = re.compile(r"bad user name or password|not authorised")

    settings = {"url": broker.host, "port": broker.port, "username": user, "password": wrong}
    octoprint.save_settings({"plugins": {"mqtt": {"broker": settings}}})
    wait_until(
        lambda: refused.search(octoprint.log_text()),
        20,
        lambda: "no failed login in octoprint.log:\n" + octoprint.log_text()[-3000:],
    )
    assert not sub.messages(STATUS_TOPIC), sub.messages(STATUS_TOPIC)

    octoprint.save_settings({"plugins": {"mqtt": {"broker": {"password": right}}}})
    sub.wait_for(STATUS_TOPIC, timeout=20, predicate=payload_is(b"connected"))
    assert f"u'{user}'" in broker.log_text(), broker.log_text()[-3000:]
    octoprint.stop()

    logs = [octoprint.serve_log_path, *Path(octoprint.basedir, "logs").glob("*")]
    assert any("DEBUG" in path.read_text(errors="replace") for path in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in (wrong, right):
            assert secret not in text, f"password {secret!r} in {path}"
