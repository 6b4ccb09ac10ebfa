"""Test consumer modelled on PSU Control MQTT and Enclosure plugins.

It switches a simulated power supply on command messages, publishes the state retained and a
timestamped status dict, and unsubscribes on request: once passing a topic string instead of a
callback (a mistake published plugins make; it must be a silent no-op), then for real, all
filters of one callback and one filter of another. Every step is logged as one line
``E2E <plugin> <step> <json>``.
"""

import json

import octoprint.plugin

SET_TOPIC = "test/cmd/psu/set"
TOGGLE_TOPIC = "test/cmd/psu/toggle"
UNSUBSCRIBE_TOPIC = "test/cmd/psu/unsubscribe"
X_TOPICS = ("a/b", "a/c")


class PsuControlConsumer(octoprint.plugin.StartupPlugin, octoprint.plugin.SettingsPlugin):
    def __init__(self):
        self.mqtt_publish = None
        self.mqtt_publish_with_timestamp = None
        self.mqtt_subscribe = None
        self.mqtt_unsubscribe = None
        self.state_topic = None
        self.status_topic = None
        self.power_on = False

    def get_settings_defaults(self):
        return {}

    def _report(self, step, **data):
        self._logger.info("E2E %s %s %s", self._identifier, step, json.dumps(data, sort_keys=True))

    def on_after_startup(self):
        helpers = self._plugin_manager.get_helpers(
            "mqtt",
            "mqtt_publish",
            "mqtt_publish_with_timestamp",
            "mqtt_subscribe",
            "mqtt_unsubscribe",
        )
        if not helpers or len(helpers) != 4:
            self._report("no-helpers", helpers=sorted(helpers or {}))
            return
        self.mqtt_publish = helpers["mqtt_publish"]
        self.mqtt_publish_with_timestamp = helpers["mqtt_publish_with_timestamp"]
        self.mqtt_subscribe = helpers["mqtt_subscribe"]
        self.mqtt_unsubscribe = helpers["mqtt_unsubscribe"]

        base = self._settings.global_get(["plugins", "mqtt", "publish", "baseTopic"])
        self.state_topic = f"{base}plugin/psucontrol/state"
        self.status_topic = f"{base}plugin/psucontrol/status"

        # One callback on two filters, another on two filters, each a fresh bound method.
        self.mqtt_subscribe(SET_TOPIC, self._on_cmd)
        self.mqtt_subscribe(TOGGLE_TOPIC, self._on_cmd)
        for topic in X_TOPICS:
            self.mqtt_subscribe(topic, self._on_x)
        self.mqtt_subscribe(UNSUBSCRIBE_TOPIC, self._on_unsubscribe_request)

        try:
            self.mqtt_publish_with_timestamp("bad/+/topic", {"state": "never sent"})
        except ValueError as exc:
            self._report("bad-topic-caught", error=str(exc))
        else:
            self._report("bad-topic-accepted")
        self._report("startup", helpers=sorted(helpers), base=base)

    def _on_cmd(self, topic, payload, retained=None, qos=None, *args, **kwargs):
        self._report(
            "cmd",
            topic=topic,
            payload=repr(payload),
            payload_type=type(payload).__name__,
            retained=retained,
            qos=qos,
        )
        if topic == TOGGLE_TOPIC:
            power_on = not self.power_on
        elif payload == b"on":
            power_on = True
        elif payload == b"off":
            power_on = False
        else:
            self._report("cmd-ignored", payload=repr(payload))
            return
        self.power_on = power_on
        state = "on" if power_on else "off"
        state_accepted = self.mqtt_publish(self.state_topic, state, retained=True)
        status = {"state": state, "source": topic, "nested": {"volts": 12.0, "rails": [3, 5]}}
        status_accepted = self.mqtt_publish_with_timestamp(self.status_topic, status, retained=True)
        # The helper adds the timestamp to this very dict.
        accepted = [state_accepted, status_accepted]
        self._report("state", state=state, accepted=accepted, status=status)

    def _on_x(self, topic, payload, *args, **kwargs):
        self._report("x", topic=topic, payload=repr(payload))

    def _on_unsubscribe_request(self, topic, payload, *args, **kwargs):
        if payload == b"by-topic-string":
            # Wrong on purpose: a topic instead of the callback. Must be ignored silently.
            steps = [("topic-string", lambda: self.mqtt_unsubscribe(SET_TOPIC))]
        elif payload == b"go":
            steps = [
                ("all-of-on_cmd", lambda: self.mqtt_unsubscribe(self._on_cmd)),
                ("on_x-a/b", lambda: self.mqtt_unsubscribe(self._on_x, topic="a/b")),
            ]
        else:
            self._report("unsubscribe-ignored", payload=repr(payload))
            return
        results = {}
        for name, call in steps:
            try:
                results[name] = repr(call())
            except Exception as exc:
                results[name] = f"raised {type(exc).__name__}: {exc}"
        self._report("unsubscribed", request=payload.decode(), results=results)


__plugin_name__ = "E2E PSU control consumer"
__plugin_version__ = "1.0.0"
__plugin_pythoncompat__ = ">=3.7,<4"
__plugin_implementation__ = PsuControlConsumer()
