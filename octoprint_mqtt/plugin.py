"""The OctoPrint side of the plugin: settings, lifecycle and event forwarding.

Everything that does not need OctoPrint's objects (the connection, topics, JSON, queueing)
happens in the Rust core; this class reads the settings once per save and pushes them there.
"""

import octoprint.plugin

# The only import of the native module.
from ._core import Core


def settings_defaults():
    """The settings tree of compat.md section 2, plus keys added since."""
    return {
        "broker": {
            "url": None,
            "port": 1883,
            "username": None,
            "password": None,
            "keepalive": 60,
            "tls": {},
            "tls_active": False,
            "tls_insecure": False,
            "protocol": "MQTTv311",
            "retain": True,
            "lwRetain": True,
            "clean_session": True,
        },
        "client": {"client_id": None},
        "publish": {
            "baseTopic": "octoprint/",
            "eventTopic": "event/{event}",
            "eventActive": True,
            "events": {
                "server": True,
                "comm": True,
                "files": True,
                "printjob": True,
                "gcode": True,
                "position": True,
                "timelapse": True,
                "slicing": True,
                "settings": True,
                "unclassified": True,
            },
            "printerData": False,
            "progressTopic": "progress/{progress}",
            "progressActive": True,
            "temperatureTopic": "temperature/{temp}",
            "temperatureActive": True,
            "temperatureThreshold": 0.1,
            "metadataTopic": "metadata/{key}",
            "metadataActive": False,
            "metadataKeys": "",
            "lwTopic": "mqtt",
            "lwActive": True,
            # Added: keep events while the broker is unreachable, up to this many messages.
            "queueWhileOffline": True,
            "offlineQueueSize": 10000,
        },
        "timestamp_fieldname": "_timestamp",
    }


class MqttPlugin(
    octoprint.plugin.SettingsPlugin,
    octoprint.plugin.StartupPlugin,
    octoprint.plugin.ShutdownPlugin,
    octoprint.plugin.EventHandlerPlugin,
    octoprint.plugin.TemplatePlugin,
    octoprint.plugin.AssetPlugin,
):
    def __init__(self):
        self._core = Core()
        self._event_error = None

    # ~~ settings

    def get_settings_defaults(self):
        return settings_defaults()

    def get_settings_restricted_paths(self):
        # The broker password is for admins only; OctoPrint never sends it to other users.
        return {"admin": [["broker", "password"]]}

    def on_settings_save(self, data):
        # Never log `data`: it may hold the broker password.
        result = octoprint.plugin.SettingsPlugin.on_settings_save(self, data)
        self._push_settings()
        return result

    def _push_settings(self):
        try:
            self._core.configure(self._settings.get_all_data(merged=True))
        except ValueError as exc:
            self._logger.error("The MQTT settings cannot be used: %s", exc)

    # ~~ lifecycle

    def on_startup(self, host, port):
        # Before OctoPrint fires Startup: the core keeps events until the broker answers.
        self._push_settings()

    def on_shutdown(self):
        if not self._core.stop(1.0):
            self._logger.warning("The MQTT core did not stop within a second; leaving it")

    # ~~ events

    def on_event(self, event, payload):
        try:
            self._core.publish_event(event, payload)
        except ValueError as exc:
            # A bad topic template would fail for every event: say it once per distinct cause.
            if str(exc) != self._event_error:
                self._event_error = str(exc)
                self._logger.error("Cannot publish OctoPrint events: %s", exc)

    # ~~ UI

    def get_template_configs(self):
        return [{"type": "settings", "custom_bindings": False}]

    def is_template_autoescaped(self):
        return True

    def get_assets(self):
        return {}
