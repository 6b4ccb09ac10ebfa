"""A real Mosquitto broker and an MQTT subscriber, for the tests and the demo script.

Nothing here is mocked. Every wait has a timeout so that a broken plugin makes a test fail
with a useful message instead of hanging the run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

import paho.mqtt.client as mqtt

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

# --------------------------------------------------------------------------
# Networking helpers
# --------------------------------------------------------------------------


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the OS picks it), never one this process
    was given before: two calls before anything binds (a broker with two listeners) could
    otherwise get the same port."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for_port(
    host: str,
    port: int,
    timeout: float,
    proc: subprocess.Popen | None = None,
) -> None:
    """Wait until host:port accepts TCP connections.

    If `proc` is given and exits meanwhile, fail at once rather than waiting
    out the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {port} opened")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} not accepting after {timeout}s") from None
            time.sleep(0.05)


# --------------------------------------------------------------------------
# Mosquitto
# --------------------------------------------------------------------------


class Broker:
    """A real Mosquitto process on a free loopback port.

    `extra_conf` is appended verbatim to the generated config so that tests can
    add password files, ACLs or extra (TLS) listeners.
    """

    def __init__(
        self,
        extra_conf: str = "",
        workdir: Path | None = None,
        port: int | None = None,
        quiet: bool = False,
        own_session: bool = False,
    ) -> None:
        """quiet=True logs only errors and warnings: for runs of a million messages.

        own_session=True starts Mosquitto in a session of its own (the demo): a terminal's
        Ctrl-C then reaches only the demo, which stops the broker last, after the clients.
        """
        self.host = "127.0.0.1"
        self.quiet = quiet
        self.own_session = own_session
        self.port = port or free_port(self.host)
        self.extra_conf = extra_conf
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.stdout_path = self.workdir / "mosquitto.stdout"
        self.proc: subprocess.Popen | None = None
        self._paused = False

    def config_text(self) -> str:
        # Mosquitto started as root drops privileges to user "mosquitto", who
        # could not write the log in our temp dir; keep the current user.
        user = pwd.getpwuid(os.getuid()).pw_name
        return "\n".join(
            [
                f"user {user}",
                f"listener {self.port} {self.host}",
                "allow_anonymous true",
                "persistence false",
                f"log_dest file {self.log_path}",
                "log_type error\nlog_type warning" if self.quiet else "log_type all",
                "connection_messages true",
                self.extra_conf,
                "",
            ]
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        self.conf_path.write_text(self.config_text())
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )
        self._paused = False
        try:
            wait_for_port(self.host, self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.kill()
            raise RuntimeError(
                f"mosquitto did not start: {exc}\n{self.stdout_path.read_text()}\n{self.log_text()}"
            ) from exc

    def stop(self, timeout: float = 5.0) -> None:
        if not self.running:
            return
        # A stopped process only acts on SIGTERM once it is continued.
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if not self.running:
            return
        self.proc.kill()
        self.proc.wait(5)
        self._paused = False

    def pause(self) -> None:
        """Freeze the broker: TCP stays open but nothing is answered."""
        if self.running:
            self.proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self.running and self._paused:
            self.proc.send_signal(signal.SIGCONT)
            self._paused = False

    def restart(self) -> None:
        """Stop and start again on the same port (clients may reconnect)."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


# --------------------------------------------------------------------------
# MQTT subscriber
# --------------------------------------------------------------------------


class Message(NamedTuple):
    """One received message.

    Per MQTT 3.1.1 the broker clears `retain` on live deliveries; it is set only
    on messages replayed from its retained store at subscribe time, so use
    read_retained() to check what the broker keeps.
    """

    topic: str
    payload: bytes
    retain: bool
    qos: int
    received_at: float  # time.monotonic() when the subscriber got it


class Subscriber:
    """Records every message on `topic_filter`, thread-safe, with timed waits."""

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str = "#",
        qos: int = 1,
        timeout: float = 10.0,
        client_id: str = "",
        clean_session: bool = True,
    ) -> None:
        """clean_session=False (with a client_id) keeps the session, and the messages queued
        for it, at the broker while this subscriber is disconnected."""
        self.host = host
        self.port = port
        self._timeout = timeout
        self._cond = threading.Condition()
        self._messages: list[Message] = []
        self._filters: dict[str, int] = {}
        self._acked_mids: set[int] = set()
        self._connected = False
        self._resubscribe_mids: set[int] = set()

        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean_session,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        # Fast reconnects keep broker-restart tests short.
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        try:
            self._wait(lambda: self._connected, timeout, f"connect to {host}:{port}")
            if topic_filter:
                self.subscribe(topic_filter, qos)
        except BaseException:
            self.close()  # do not leak paho's network thread
            raise

    # -- paho callbacks (run on paho's network thread) --------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        with self._cond:
            filters = dict(self._filters)
        # After a broker restart the session is gone: subscribe again, and
        # only then report "connected" so wait_connected() covers the SUBACKs.
        mids = {client.subscribe(f, qos)[1] for f, qos in filters.items()}
        with self._cond:
            self._resubscribe_mids = mids
            self._connected = True
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._cond:
            self._acked_mids.add(mid)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        message = Message(
            topic=msg.topic,
            payload=bytes(msg.payload),
            retain=bool(msg.retain),
            qos=msg.qos,
            received_at=time.monotonic(),
        )
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    # -- internals --------------------------------------------------------

    def _wait(self, ready: Callable[[], object], timeout: float, what: str):
        with self._cond:
            result = self._cond.wait_for(ready, timeout)
        if not result:
            raise AssertionError(f"timed out after {timeout}s waiting to {what}")
        return result

    def _matching(self, topic: str | None, predicate=None) -> list[Message]:
        # Caller holds the lock (or accepts a racy snapshot).
        return [
            m
            for m in self._messages
            if (topic is None or mqtt.topic_matches_sub(topic, m.topic))
            and (predicate is None or predicate(m))
        ]

    def _describe_received(self) -> str:
        with self._cond:
            received = list(self._messages)
        if not received:
            return "  (nothing received)"
        return "\n".join(
            f"  {m.topic} retain={int(m.retain)} qos={m.qos} {m.payload[:200]!r}" for m in received
        )

    # -- public API -------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait for the (re)connection and re-subscription, e.g. after Broker.restart()."""
        self._wait(
            lambda: self._connected and self._resubscribe_mids <= self._acked_mids,
            timeout,
            "(re)connect and re-subscribe",
        )

    def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and return only once the broker sent SUBACK."""
        with self._cond:
            self._filters[topic_filter] = qos
        result, mid = self._client.subscribe(topic_filter, qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"subscribe({topic_filter!r}) failed: {result}")
        self._wait(lambda: mid in self._acked_mids, self._timeout, f"SUBACK {topic_filter}")

    def wait_for(
        self,
        topic: str,
        timeout: float = 10.0,
        predicate: Callable[[Message], bool] | None = None,
    ) -> Message:
        """First message (already received or arriving) matching topic filter."""
        with self._cond:
            found = self._cond.wait_for(lambda: self._matching(topic, predicate), timeout)
        if not found:
            raise AssertionError(
                f"no message on {topic!r} matching {predicate} within {timeout}s; "
                f"received:\n{self._describe_received()}"
            )
        return found[0]

    def wait_count(self, topic: str, n: int, timeout: float = 10.0) -> list[Message]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._matching(topic)) >= n, timeout)
            found = self._matching(topic)
        if not ok:
            raise AssertionError(
                f"expected {n} messages on {topic!r} within {timeout}s, got "
                f"{len(found)}; received:\n{self._describe_received()}"
            )
        return found

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Publish on this subscriber's own connection (a client of the same broker node)."""
        self._client.publish(topic, payload, qos=qos)
        return True

    def messages(self, topic: str | None = None) -> list[Message]:
        with self._cond:
            return self._matching(topic)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def read_retained(
    host: str, port: int, topic_filter: str = "#", duration: float = 0.5
) -> dict[str, Message]:
    """Connect as a late subscriber and return the retained messages by topic."""
    sub = Subscriber(host, port, topic_filter)
    try:
        # The broker sends retained messages right after SUBACK; give them
        # a moment to arrive.
        time.sleep(duration)
        return {m.topic: m for m in sub.messages() if m.retain}
    finally:
        sub.close()


def read_retained_v5(host: str, port: int, topic: str, timeout: float = 3.0):
    """The retained message on `topic` as a late MQTT 5 subscriber gets it (paho's message,
    with its `properties`), or None when none arrives within `timeout`."""
    got: list = []
    arrived = threading.Event()

    def on_message(client, userdata, msg) -> None:
        if msg.retain:
            got.append(msg)
            arrived.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *args: c.subscribe(topic, qos=0)
    client.on_message = on_message
    client.connect(host, port)
    client.loop_start()
    try:
        arrived.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else None
