"""A remote control client for the tests: publishes requests the way Home Assistant, Node-RED
or a farm dashboard would (MQTT 3.1.1 or 5) and collects the answers."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ALL_COMMANDS = (
    "connect",
    "disconnect",
    "start",
    "pause",
    "resume",
    "cancel",
    "gcode",
    "temperature",
    "home",
    "jog",
    "status",
)


def control_settings(*allowed: str, **extra) -> dict:
    """`control` settings: on, with the named commands allowed."""
    return {
        "active": True,
        "commands": {name: name in allowed for name in ALL_COMMANDS},
        **extra,
    }


@dataclass
class Answer:
    topic: str
    body: dict
    correlation: bytes | None
    received_at: float


class Requester:
    """Sends requests to `<base>control/<command>` and records every answer it sees on the
    response topic (and, with MQTT 5, on its own response topic)."""

    def __init__(self, host: str, port: int, base: str, protocol: int = 4, timeout=10.0):
        self.base = base
        self.v5 = protocol == 5
        # Outside the base topic: the plugin answers on no topic of its own.
        self.own_topic = f"replies/{base}{uuid.uuid4().hex[:8]}"
        self._cond = threading.Condition()
        self._answers: list[Answer] = []
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        filters = [(f"{base}control/response", 1)]
        if self.v5:
            filters.append((self.own_topic, 1))
        self._client.subscribe(filters)
        if not self._subscribed.wait(timeout):
            self.close()
            raise AssertionError("the requester could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        props = getattr(msg, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props else None
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {"unreadable": msg.payload.decode("utf-8", "replace")}
        with self._cond:
            self._answers.append(Answer(msg.topic, body, correlation, time.monotonic()))
            self._cond.notify_all()

    def send(
        self,
        command: str,
        payload: dict | str | bytes | None = None,
        *,
        retain: bool = False,
        qos: int = 1,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        topic: str | None = None,
    ) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        props = None
        if self.v5 and (response_topic or correlation):
            props = Properties(PacketTypes.PUBLISH)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation:
                props.CorrelationData = correlation
        info = self._client.publish(
            topic or f"{self.base}control/{command}",
            payload if payload is not None else b"",
            qos=qos,
            retain=retain,
            properties=props,
        )
        info.wait_for_publish(10)

    def answers(self, **match) -> list[Answer]:
        with self._cond:
            return [a for a in self._answers if _matches(a, match)]

    def wait_answer(self, timeout: float = 10.0, **match) -> Answer:
        """The first answer whose body has the given values (`id=`, `command=`, `ok=`)."""
        with self._cond:
            found = self._cond.wait_for(
                lambda: [a for a in self._answers if _matches(a, match)], timeout
            )
            if not found:
                raise AssertionError(
                    f"no answer matching {match} within {timeout}s; got "
                    f"{[a.body for a in self._answers]}"
                )
            return found[0]

    def request(self, command: str, payload: dict | None = None, timeout=10.0, **kw) -> dict:
        """Sends a request with a fresh id and returns its answer's body."""
        body = dict(payload or {})
        body.setdefault("id", uuid.uuid4().hex)
        self.send(command, body, **kw)
        return self.wait_answer(timeout, id=body["id"]).body

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _matches(answer: Answer, match: dict) -> bool:
    return all(answer.body.get(k, object()) == v for k, v in match.items())
