"""Type stub of the native core (src/lib.rs)."""

from typing import Any, Mapping, Optional

__version__: str

class Core:
    """One MQTT client with its own thread, offline queue and status."""

    def __init__(self) -> None: ...
    def configure(self, settings: Mapping[str, Any], connect: bool = True) -> None:
        """Takes the whole ``plugins.mqtt`` settings tree; reconnects only when connection
        settings changed. ``connect=False`` takes only the publishing settings (messages are
        kept until a call with ``connect=True``). ValueError for unparsable settings."""
    def publish_event(self, event: str, payload: Optional[Any] = None) -> bool:
        """Publishes an OctoPrint event as JSON; False when its class is off or it was refused
        while offline. Raises ValueError when the configured topic is invalid."""
    def publish_progress(
        self, kind: str, payload: Mapping[str, Any], queue: Optional[bool] = None
    ) -> bool:
        """Progress on ``<base><progressTopic>`` (kind ``printing``: always retained;
        ``slicing``: retained per ``broker.retain``) with the timestamp added.
        ``queue=None`` follows ``publish.queueWhileOffline``."""
    def publish_temperatures(self, data: Mapping[str, Any]) -> int:
        """One sample of OctoPrint's printer callback; publishes the heaters that changed by
        the threshold (or are new) and returns how many."""
    def publish_metadata(self, metadata: Optional[Mapping[str, Any]] = None) -> int:
        """The configured metadata keys (dots walk into nested dicts) of a file's metadata,
        or with ``None`` an empty payload per key (clears retained values)."""
    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: Optional[bool] = None,
        queue: bool = False,
    ) -> bool:
        """Publishes bytes; ``retain=None`` follows ``broker.retain``. ValueError for a bad
        topic or QoS."""
    def stop(self, timeout: float = 1.0) -> bool:
        """Disconnects cleanly and stops the thread; False if that took longer than timeout."""
    @property
    def connected(self) -> bool: ...
    def status(self) -> dict[str, Any]:
        """state, broker, since, last_error and the counters published, queued, dropped,
        refused, received, reconnects, queue_depth."""

def encode_json(value: Any) -> bytes:
    """Any Python value as the JSON text the plugin publishes."""

def encode_event(
    event: str,
    payload: Optional[Any],
    timestamp_field: str = "_timestamp",
    timestamp: int = 0,
) -> bytes:
    """An event's JSON payload exactly as ``Core.publish_event`` builds it."""
