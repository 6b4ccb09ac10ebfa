"""Test consumer modelled on camera snapshot publishers.

On a request message it publishes a JPEG-sized blob of random bytes with ``raw_data=True``
and logs (and publishes) its sha256, so the test can check that the exact bytes went out. The
request subscription carries ``args`` and ``kwargs`` that the callback logs back. Every step is
logged as one line ``E2E <plugin> <step> <json>``.
"""

import hashlib
import json
import os
import threading

import octoprint.plugin

REQUEST_TOPIC = "test/cmd/snapshot"
SNAPSHOT_SIZE = 300 * 1024


class CameraSnapshotConsumer(octoprint.plugin.StartupPlugin, octoprint.plugin.SettingsPlugin):
    def __init__(self):
        self.mqtt_publish = None
        self.mqtt_subscribe = None
        self.base_topic = None

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
        if not helpers or "mqtt_publish" not in helpers or "mqtt_subscribe" not in helpers:
            self._report("no-helpers", helpers=sorted(helpers or {}))
            return
        self.mqtt_publish = helpers["mqtt_publish"]
        self.mqtt_subscribe = helpers["mqtt_subscribe"]
        self.base_topic = self._settings.global_get(["plugins", "mqtt", "publish", "baseTopic"])
        # Twice, as plugins that subscribe again (e.g. after a settings save) do: the same
        # filter and an equal callback (a fresh bound method) must be called once per message.
        for _ in range(2):
            self.mqtt_subscribe(
                REQUEST_TOPIC,
                self._on_request,
                args=("cam0", 3),
                kwargs={"quality": "high", "rotate": 90},
            )
        self._report("startup", helpers=sorted(helpers), base=self.base_topic)

    def _on_request(
        self, topic, payload, camera, index, retained=None, qos=None, quality=None, rotate=None
    ):
        self._report(
            "request",
            topic=topic,
            payload=repr(payload),
            payload_type=type(payload).__name__,
            is_take=payload == b"take",
            camera=camera,
            index=index,
            quality=quality,
            rotate=rotate,
            retained=retained,
            qos=qos,
            thread=threading.current_thread().name,
        )
        if payload != b"take":
            return
        data = os.urandom(SNAPSHOT_SIZE)
        digest = hashlib.sha256(data).hexdigest()
        topic_base = f"{self.base_topic}camera/{camera}"
        accepted = self.mqtt_publish(f"{topic_base}/snapshot", data, retained=False, raw_data=True)
        size_accepted = self.mqtt_publish(
            f"{topic_base}/size", len(data), retained=False, raw_data=True
        )
        digest_accepted = self.mqtt_publish(f"{topic_base}/sha256", digest, retained=False)
        self._report(
            "snapshot",
            topic=f"{topic_base}/snapshot",
            sha256=digest,
            size=len(data),
            accepted=[accepted, size_accepted, digest_accepted],
        )


__plugin_name__ = "E2E camera snapshot consumer"
__plugin_version__ = "1.0.0"
__plugin_pythoncompat__ = ">=3.7,<4"
__plugin_implementation__ = CameraSnapshotConsumer()
