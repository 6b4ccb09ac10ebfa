"""Test consumer modelled on Home Assistant discovery plugins (OctoPrint-HomeAssistant).

A single-file OctoPrint plugin: it fetches the MQTT helpers at startup (usually before the
broker connection is up), builds its topics from the MQTT plugin's settings, publishes retained
discovery configs with queueing, watches the MQTT plugin's status topic and republishes when
Home Assistant announces itself. Every step is logged as one line
``E2E <plugin> <step> <json>`` that the end-to-end tests parse.
"""

import json
import threading

import octoprint.plugin

HELPER_NAMES = (
    "mqtt_publish",
    "mqtt_publish_with_timestamp",
    "mqtt_subscribe",
    "mqtt_unsubscribe",
)
NODE_ID = "e2e_printer"
STATE_CONFIG_TOPIC = f"homeassistant/sensor/{NODE_ID}_state/config"
CONNECTED_CONFIG_TOPIC = f"homeassistant/binary_sensor/{NODE_ID}_connected/config"
HASS_STATUS_TOPIC = "homeassistant/status"


def device_info():
    return {
        "identifiers": [NODE_ID],
        "name": "E2E Printer",
        "manufacturer": "OctoPrint",
        "model": "Virtual printer",
        "sw_version": "1.0",
    }


def state_sensor_config(base, status_topic):
    return {
        "name": "Printer state",
        "unique_id": f"{NODE_ID}_state",
        "state_topic": f"{base}event/PrinterStateChanged",
        "value_template": "{{ value_json.state_string }}",
        "json_attributes_topic": f"{base}event/PrinterStateChanged",
        "availability": [
            {
                "topic": status_topic,
                "payload_available": "connected",
                "payload_not_available": "disconnected",
            }
        ],
        "device": device_info(),
        "precision": 1.5,
        "enabled_by_default": True,
        "unit_of_measurement": None,
    }


def connected_sensor_config(base, status_topic):
    return {
        "name": "Printer connected",
        "unique_id": f"{NODE_ID}_connected",
        "state_topic": f"{base}event/Connected",
        "payload_on": "on",
        "payload_off": "off",
        "availability_topic": status_topic,
        "device": device_info(),
        "tags": ["ü-nicode", "✓"],
    }


class HassDiscoveryConsumer(octoprint.plugin.StartupPlugin, octoprint.plugin.SettingsPlugin):
    def __init__(self):
        self.mqtt_publish = None
        self.mqtt_publish_with_timestamp = None
        self.mqtt_subscribe = None
        self.mqtt_unsubscribe = None
        self.base_topic = None
        self.status_topic = None

    def get_settings_defaults(self):
        return {}

    def _report(self, step, **data):
        self._logger.info("E2E %s %s %s", self._identifier, step, json.dumps(data, sort_keys=True))

    def on_after_startup(self):
        helpers = self._plugin_manager.get_helpers("mqtt", *HELPER_NAMES)
        if not helpers or set(HELPER_NAMES) - set(helpers):
            self._report("no-helpers", helpers=sorted(helpers or {}))
            return
        self.mqtt_publish = helpers["mqtt_publish"]
        self.mqtt_publish_with_timestamp = helpers["mqtt_publish_with_timestamp"]
        self.mqtt_subscribe = helpers["mqtt_subscribe"]
        self.mqtt_unsubscribe = helpers["mqtt_unsubscribe"]

        self.base_topic = self._settings.global_get(["plugins", "mqtt", "publish", "baseTopic"])
        lw_topic = self._settings.global_get(["plugins", "mqtt", "publish", "lwTopic"])
        self._report("startup", helpers=sorted(helpers), base=self.base_topic, lw=lw_topic)
        if not isinstance(self.base_topic, str) or not isinstance(lw_topic, str):
            return
        self.status_topic = self.base_topic + lw_topic

        self.mqtt_subscribe(self.status_topic, self._on_mqtt_status)
        self.mqtt_subscribe(HASS_STATUS_TOPIC, self._on_hass_status)
        self._report("subscribed", topics=[self.status_topic, HASS_STATUS_TOPIC])

        accepted = self._publish_state_config()
        self._report("early-discovery", topic=STATE_CONFIG_TOPIC, accepted=accepted)

        try:
            self.mqtt_publish("bad/+/topic", {"state": "never sent"}, allow_queueing=True)
        except ValueError as exc:
            self._report("bad-topic-caught", error=str(exc))
        else:
            self._report("bad-topic-accepted")

    def _publish_state_config(self):
        return self.mqtt_publish(
            STATE_CONFIG_TOPIC,
            state_sensor_config(self.base_topic, self.status_topic),
            retained=True,
            allow_queueing=True,
        )

    def _publish_connected_config(self):
        return self.mqtt_publish(
            CONNECTED_CONFIG_TOPIC,
            connected_sensor_config(self.base_topic, self.status_topic),
            retained=True,
            allow_queueing=True,
        )

    # Same signature as OctoPrint-HomeAssistant's callback.
    def _on_mqtt_status(self, topic, message, retained=None, qos=None, *args, **kwargs):
        self._report(
            "status",
            topic=topic,
            payload=repr(message),
            payload_type=type(message).__name__,
            retained=retained,
            qos=qos,
            thread=threading.current_thread().name,
        )
        if message == b"connected":
            self._logger.info("E2E-HASS the MQTT plugin is connected, publishing discovery")
            self._report(
                "discovery-on-connected",
                state=self._publish_state_config(),
                connected=self._publish_connected_config(),
            )

    def _on_hass_status(self, topic, message, retained=None, qos=None, *args, **kwargs):
        if message == b"online":
            self._report(
                "hass-online",
                retained=retained,
                state=self._publish_state_config(),
                connected=self._publish_connected_config(),
            )
        else:
            self._report("hass-status-ignored", payload=repr(message))


__plugin_name__ = "E2E Home Assistant discovery consumer"
__plugin_version__ = "1.0.0"
__plugin_pythoncompat__ = ">=3.7,<4"
__plugin_implementation__ = HassDiscoveryConsumer()
