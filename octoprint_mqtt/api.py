"""The plugin's HTTP API (``/api/plugin/mqtt``) and status messages, behind a permission of
its own: GET returns the connection status, the ``test_connection`` command tries unsaved
settings from the dialog on a throwaway client.
"""

import copy
import logging

import flask
from octoprint.access import ADMIN_GROUP
from octoprint.access.permissions import Permissions

from octoprint_mqtt_core._core import same_broker
from octoprint_mqtt_core._core import test_connection as core_test_connection

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


def push_status(plugin_manager, identifier, status, homeassistant):
    """Sends the status to the browsers of users who hold the permission, and nobody else.
    Discovery's report rides along: its configs go out as counted messages, so the page's
    entity count follows the pushes the counters cause."""
    plugin_manager.send_plugin_message(
        identifier,
        {"type": "status", "status": status, "homeassistant": homeassistant},
        permissions=[_permission()],
    )


def status(core):
    _require_permission()
    return flask.jsonify(status=core.status(), homeassistant=core.homeassistant_status())


def _merge(base, extra):
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def _shape_problem(stored, form, path="settings"):
    """Why `form` cannot be laid over `stored`: a section (a dict in the settings) given as
    something else, such as ``"broker": null``. None when it can."""
    if not isinstance(form, dict):
        return f"{path} must be an object"
    for key, value in form.items():
        if isinstance(stored.get(key), dict):
            problem = _shape_problem(
                stored[key], value, key if path == "settings" else f"{path}.{key}"
            )
            if problem:
                return problem
    return None


def settings_to_test(stored, form):
    """The settings a test uses: the stored ones with the dialog's values on top. A blank
    password means "the saved one", but only for the very endpoint it was saved for (host,
    port, user, TLS and its files, transport, WebSocket path; see `same_broker`): who may test
    cannot read the password, and must not be able to have it sent elsewhere, or in clear."""
    settings = _merge(stored, form)
    if not (form.get("broker") or {}).get("password"):
        saved = (stored.get("broker") or {}).get("password")
        settings.setdefault("broker", {})["password"] = (
            saved if same_broker(stored, settings) else None
        )
    return settings


def test_connection(stored, lock, data):
    """`stored`: the settings in force; `lock` keeps tests from piling up in OctoPrint's
    request threads (each may wait TEST_TIMEOUT)."""
    _require_permission()
    form = data.get("settings")
    if form is None:
        form = {}
    problem = _shape_problem(stored, form)
    if problem:
        return flask.jsonify(ok=False, reason=problem), 400
    if not lock.acquire(blocking=False):
        return flask.jsonify(ok=False, reason="another connection test is running"), 409
    try:
        settings = settings_to_test(stored, form)
        try:
            result = core_test_connection(settings, TEST_TIMEOUT)
        except ValueError as exc:
            result = {
                "ok": False,
                "reason": str(exc),
                "broker": None,
                "elapsed": 0.0,
                "warnings": [],
            }
    finally:
        lock.release()
    _logger.info(
        "Connection test%s: %s",
        f" to {result['broker']}" if result.get("broker") else "",
        result["reason"],
    )
    for warning in result["warnings"]:
        _logger.info("Connection test: %s", warning)
    return flask.jsonify(result)
