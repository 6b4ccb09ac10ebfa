"""OctoPrint MQTT: publishes OctoPrint's events to an MQTT broker, through a Rust core.

OctoPrint imports this module to discover the plugin. The implementation (and with it the
native module) is loaded in ``__plugin_load__``, after ``__plugin_check__`` made sure the
native module can load, so a broken install disables the plugin with a clear log line
instead of failing OctoPrint's plugin loading.
"""

import logging

from .update import CORE_DIST, PLUGIN_DIST

__plugin_name__ = "MQTT"
__plugin_description__ = (
    "Publishes OctoPrint events, progress and temperatures to an MQTT broker "
    "and lets other plugins publish and subscribe through it."
)
__plugin_author__ = "octoprint-mqtt developers"
__plugin_license__ = "AGPLv3"
__plugin_url__ = "https://github.com/octoprint-mqtt/octoprint-mqtt"
__plugin_pythoncompat__ = ">=3.8,<4"

_logger = logging.getLogger("octoprint.plugins.mqtt")


def __plugin_check__():
    # The versions first: they need only metadata, and a core of another version may not even
    # import (a name the plugin needs is missing), which would say the wrong thing below.
    problem = _core_mismatch()
    if problem:
        _logger.error("The MQTT plugin is disabled: %s", problem)
        return False
    try:
        from . import plugin  # noqa: F401  (imports the native module)
    except ImportError as exc:
        _logger.error(
            "The MQTT plugin is disabled: its native part (the %s package) "
            "cannot be loaded (%s). Reinstall the plugin with pip into OctoPrint's virtualenv; "
            "pip takes the native part as a prebuilt wheel, and a wheel for this machine and "
            "Python may be missing.",
            CORE_DIST,
            exc,
        )
        return False
    return True


def _core_mismatch():
    """Why the installed native part does not belong to this plugin, or None. The plugin pins
    it exactly, but `pip install --no-deps` or a half-finished upgrade can still pair the two
    wrongly, and the core's interface changes with every version."""
    from importlib import metadata

    try:
        plugin_version = metadata.version(PLUGIN_DIST)
        core_version = metadata.version(CORE_DIST)
    except metadata.PackageNotFoundError:
        return None  # not installed by pip (run from a checkout): nothing to compare
    if plugin_version == core_version:
        return None
    return (
        f"{PLUGIN_DIST} {plugin_version} needs {CORE_DIST} {plugin_version}, "
        f"but {core_version} is installed. Reinstall the plugin with pip: "
        f"pip install {PLUGIN_DIST}=={plugin_version}"
    )


def __plugin_load__():
    from .plugin import MqttPlugin

    global __plugin_implementation__, __plugin_hooks__, __plugin_helpers__
    plugin = MqttPlugin()
    __plugin_implementation__ = plugin
    __plugin_helpers__ = {
        "mqtt_publish": plugin.mqtt_publish,
        "mqtt_publish_with_timestamp": plugin.mqtt_publish_with_timestamp,
        "mqtt_subscribe": plugin.mqtt_subscribe,
        "mqtt_unsubscribe": plugin.mqtt_unsubscribe,
    }
    __plugin_hooks__ = {
        "octoprint.comm.protocol.gcode.received": plugin.on_gcode_received,
        "octoprint.plugin.softwareupdate.check_config": plugin.get_update_information,
        "octoprint.access.permissions": plugin.get_additional_permissions,
    }
