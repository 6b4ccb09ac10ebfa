"""Type stub of the native core (src/lib.rs)."""

from typing import Any, Callable, Iterable, Mapping, Optional

__version__: str

class Core:
    """One MQTT client with its own thread, offline queue and status."""

    def __init__(self) -> None: ...
    def configure(self, settings: Mapping[str, Any], connect: bool = True) -> None:
        """Takes the whole ``plugins.mqtt`` settings tree; reconnects only when connection
        settings changed. ``connect=False`` takes only the publishing settings (messages are
        kept until a call with ``connect=True``). ValueError for unparsable settings."""
    def publish_event(self, event: str, payload: Optional[Any] = None) -> bool:
        """Publishes an OctoPrint event as JSON; False when its class is off, when
        ``publish.eventExclude`` names it, or when it was refused while offline. Raises
        ValueError when the configured topic is invalid."""
    def publish_progress(
        self, kind: str, payload: Mapping[str, Any], queue: Optional[bool] = None
    ) -> bool:
        """Progress on ``<base><progressTopic>`` (kind ``printing``: always retained;
        ``slicing``: retained per ``broker.retain``) with the timestamp added.
        ``queue=None`` follows ``publish.queueWhileOffline``."""
    def publish_temperatures(self, data: Mapping[str, Any]) -> int:
        """One sample of OctoPrint's printer callback; publishes the heaters that changed by
        the threshold (or are new), paced by ``publish.temperatureInterval``, keeps the sample
        for the state topic, and returns how many messages went out now."""
    def printer_state(
        self, state_id: str, state_string: str, job: Optional[Mapping[str, Any]] = None
    ) -> int:
        """A ``PrinterStateChanged`` (its ``state_id`` and ``state_string``) with the job as
        ``printer.get_current_job()`` reports it: the state topic at once when it changed."""
    def printer_error(self, error: str) -> int:
        """An ``Error`` event's text: reported in the state until the printer connects again."""
    def printer_data(
        self,
        job: Optional[Mapping[str, Any]] = None,
        progress: Optional[Mapping[str, Any]] = None,
    ) -> int:
        """``job`` and ``progress`` of OctoPrint's current data: a new job is published at
        once, new progress at most once per ``publish.stateInterval``."""
    def homeassistant_device(
        self,
        device: Mapping[str, Any],
        generated_node_id: str,
        blocked_by: Optional[str] = None,
    ) -> int:
        """What Home Assistant's discovery says of the device (``name``, ``manufacturer``,
        ``model``, ``sw_version``, ``configuration_url``, ``heaters``), the node id used while
        ``homeassistant.nodeId`` is unset, and the plugin doing discovery instead (ours then
        stays off). Publishes the configs that changed; returns how many messages."""
    def homeassistant_uninstall(self) -> int:
        """Clears the discovery configs published (empty retained payloads); none are
        published again until restart."""
    def homeassistant_status(self) -> dict[str, Any]:
        """``{node_id, entities, off, other_plugin}``; ``off`` is None while discovery
        publishes, else ``setting``, ``no_state_topic``, ``other_plugin`` or ``uninstalling``."""
    def identify(self, instance_id: str, host: str, version: str) -> None:
        """This OctoPrint's stable instance id (identity.py): the client id while
        ``client.client_id`` is unset becomes ``octoprint-mqtt-<id>``, and
        ``<base>mqtt/instance`` announces ``{id, host, version, since}``."""
    @property
    def default_client_id(self) -> str:
        """The client id used while ``client.client_id`` is unset."""
    def set_control_handler(
        self, handler: Optional[Callable[[str, dict[str, Any]], tuple[bool, Any]]]
    ) -> None:
        """Remote control's printer actions: ``handler(command, args)`` returns ``(True,
        result)`` or ``(False, reason)``. Called on the core's control thread, one request at a
        time, only for requests that passed the core's checks (docs/control.md)."""
    def publish_metadata(self, metadata: Optional[Mapping[str, Any]] = None) -> int:
        """The configured metadata keys (dots walk into nested dicts) of a file's metadata,
        or with ``None`` an empty payload per key (clears retained values)."""
    def publish(
        self,
        topic: str,
        payload: Any,
        retained: Optional[Any] = None,
        qos: int = 0,
        allow_queueing: Any = False,
        raw_data: Any = False,
    ) -> bool:
        """``mqtt_publish``: str as UTF-8, else JSON; with ``raw_data`` bytes as they are,
        numbers as text, None as empty. ``retained=None`` follows ``broker.retain``; the flags
        take any truthy value. False when offline without ``allow_queueing``, after stop(), or
        when the core is too far behind to take it. ValueError for a bad topic or QoS, TypeError for
        an unsendable payload."""
    def subscribe(
        self,
        topic: str,
        callback: Callable[..., Any],
        args: Optional[Iterable[Any]] = None,
        kwargs: Optional[Mapping[str, Any]] = None,
        qos: int = 0,
    ) -> None:
        """``mqtt_subscribe``: ``callback(topic, payload: bytes, *args, retained=, qos=,
        **kwargs)`` on the callback thread. ValueError for a bad filter or QoS."""
    def unsubscribe(self, callback: Any, topic: Optional[str] = None) -> None:
        """``mqtt_unsubscribe``: by ``==`` on the callback, and the exact filter if given."""
    def stop(self, timeout: float = 1.0) -> bool:
        """Disconnects cleanly and stops the thread; False if that took longer than timeout."""
    @property
    def timestamp_field(self) -> str:
        """The timestamp property's name in force: ``timestamp_fieldname``, or
        ``_timestamp`` when that is not a non-empty string."""
    @property
    def connected(self) -> bool: ...
    def status(self) -> dict[str, Any]:
        """state, broker, since, last_error, version and the counters published, queued,
        dropped, refused, rejected, received, dispatch_dropped, reconnects and queue_depth
        (everything not delivered yet: queued, handed to the client, awaiting the broker's ack)."""
    def wait_status(self, seen: int, timeout: float = 1.0) -> int:
        """Waits without the GIL until the status version differs from ``seen`` (state,
        broker or last error changed) or ``timeout`` passed; returns the current version."""

def progress_percent(progress: Mapping[str, Any]) -> int:
    """Whole percent of OctoPrint's ``progress`` dict (PrintTimeGenius's time ratio when it is
    the origin of ``printTimeLeft``), as the progress and state topics give it."""

def validate_topic(topic: str) -> None:
    """ValueError when ``topic`` cannot be published to (empty, wildcards, NUL, too long)."""

def test_connection(settings: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One connection attempt with a settings tree, on a throwaway client (no last will, its
    own client id), waiting at most ``timeout`` s without the GIL. The settings are read as
    ``Core.configure`` reads them: a value it would replace by its default is replaced, and
    named in ``warnings``. Returns ``ok``, ``reason``, ``broker``, ``protocol``, ``elapsed``
    (seconds) and ``warnings``. ValueError when ``settings`` is no settings tree at all."""

def default_settings() -> dict[str, Any]:
    """The whole ``plugins.mqtt`` settings tree with its defaults (a fresh copy per call)."""

def setting_rules() -> list[dict[str, Any]]:
    """The field rules as data: ``path`` ([section, key]) and ``kind`` (``whole`` with
    ``min``/``max``, ``number`` with ``min``, ``host``, ``base_topic``, ``template`` with
    ``placeholder``/``sample``), plus ``unit`` for numbers."""

def settings_problems(
    changes: Mapping[str, Any], merged: Mapping[str, Any]
) -> dict[tuple[str, ...], str]:
    """``{(section, key): reason}`` for each value in ``changes`` the field rules refuse,
    topics judged with the base topic of ``changes`` or else of ``merged``."""

def same_broker(saved: Mapping[str, Any], candidate: Mapping[str, Any]) -> bool:
    """Whether the settings tree ``candidate`` reaches the same endpoint the same way as
    ``saved``: host, port, user name, TLS on/off with its files, ciphers and host-name check,
    transport and WebSocket path, as the connection (and the test) reads them. False when
    either is no settings tree or has no broker."""

def encode_json(value: Any) -> bytes:
    """Any Python value as the JSON text the plugin publishes."""

def encode_event(
    event: str,
    payload: Optional[Any],
    timestamp_field: str = "_timestamp",
    timestamp: int = 0,
) -> bytes:
    """An event's JSON payload exactly as ``Core.publish_event`` builds it."""
