"""The plugin's HTTP API (``/api/plugin/mqtt``) and status messages, behind a permission of
its own: GET returns the connection status, the ``test_connection`` command tries unsaved
settings from the dialog on a throwaway client.
"""

import copy
import logging

import flask
from octoprint.access import ADMIN_GROUP
from octoprint.access.permissions import Permissions

from ._core import test_connection as core_test_connection

TEST_TIMEOUT = 5.0

_logger = logging.getLogger("octoprint.plugins.mqtt")

PERMISSION = {
    "key": "ADMIN",
    "name": "Connection status and test",
    "description": "See the MQTT connection status and test broker settings",
    "roles": ["admin"],
    # Testing makes OctoPrint connect to any host and port the user enters.
    "dangerous": True,
    "default_groups": [ADMIN_GROUP],
}


def _permission():
    # Created by OctoPrint from PERMISSION when the plugin is loaded.
    return Permissions.PLUGIN_MQTT_ADMIN


def _require_permission():
    if not _permission().can():
        flask.abort(403)


def push_status(plugin_manager, identifier, status):
    """Sends the status to the browsers of users who hold the permission, and nobody else."""
    plugin_manager.send_plugin_message(
        identifier, {"type": "status", "status": status}, permissions=[_permission()]
    )


def status(core):
    _require_permission()
    return flask.jsonify(status=core.status())


def _merge(base, extra):
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def _target(settings):
    broker = settings.get("broker") or {}
    return (
        str(broker.get("url") or "").strip(),
        str(broker.get("port") or "").strip(),
        broker.get("username") or None,
    )


def settings_to_test(stored, form):
    """The settings a test uses: the stored ones with the dialog's values on top. A blank
    password means "the saved one", but only for the broker and user it was saved for: who may
    test must not be able to send the saved password to a host of their choosing."""
    settings = _merge(stored, form)
    entered = (form.get("broker") or {}).get("password")
    if not entered:
        same = _target(settings) == _target(stored)
        settings["broker"]["password"] = (
            (stored.get("broker") or {}).get("password") if same else None
        )
    return settings


def test_connection(stored, lock, data):
    """`stored`: the settings in force; `lock` keeps tests from piling up in OctoPrint's
    request threads (each may wait TEST_TIMEOUT)."""
    _require_permission()
    form = data.get("settings") or {}
    if not isinstance(form, dict):
        flask.abort(400, description="settings must be an object")
    if not lock.acquire(blocking=False):
        return flask.jsonify(ok=False, reason="another connection test is running"), 409
    try:
        settings = settings_to_test(stored, form)
        try:
            result = core_test_connection(settings, TEST_TIMEOUT)
        except ValueError as exc:
            result = {"ok": False, "reason": str(exc), "broker": None, "elapsed": 0.0}
    finally:
        lock.release()
    _logger.info(
        "Connection test%s: %s",
        f" to {result['broker']}" if result.get("broker") else "",
        result["reason"],
    )
    return flask.jsonify(result)
