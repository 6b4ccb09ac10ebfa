"""The OctoPrint side of the plugin: settings, lifecycle and event forwarding.

Everything that does not need OctoPrint's objects (the connection, topics, JSON, queueing)
happens in the Rust core; this class reads the settings once per save and pushes them there.
"""

import ipaddress
import json
import os
import re
import secrets
import socket
import threading
import time
from collections import OrderedDict

import octoprint.plugin
from octoprint import __version__ as OCTOPRINT_VERSION
from octoprint.printer import PrinterCallback
from octoprint.util import RepeatedTimer

# The native part: the octoprint-mqtt-core distribution, pinned to this plugin's version.
from octoprint_mqtt_core._core import (
    Core,
    default_settings,
    progress_percent,
    setting_rules,
    validate_topic,
)
from octoprint_mqtt_core._core import __version__ as PLUGIN_VERSION

from . import api, control, identity, validation
from .status_push import StatusPusher
from .update import PLUGIN_DIST, UpdateCheck

PROGRESS_INTERVAL = 5.0
# Events that mean a file is selected or printing: the progress check runs while one is.
JOB_EVENTS = frozenset(("FileSelected", "PrintStarted", "PrintResumed", "PrintPaused"))
JOB_END_EVENTS = frozenset(("PrintDone", "PrintFailed", "PrintCancelled"))
# Distinct error texts remembered so as to log each once: the most recent ones. Event names
# come from other plugins too, and one with a bad character in a varying part (a file name)
# makes a new error text each time.
REPORTED_ERRORS_MAX = 100
# Events after which the device Home Assistant's discovery describes may have changed.
DEVICE_EVENTS = frozenset(("Connected", "PrinterProfileModified", "SettingsUpdated"))
# The plugin that does Home Assistant discovery through our helpers: with it loaded ours
# stays off, or every entity would appear twice.
OTHER_DISCOVERY_PLUGINS = {"homeassistant": "OctoPrint-HomeAssistant"}
# In the plugin's data folder: a file of OctoPrint's base folder, not of config.yaml, so a
# copied configuration does not clone it.
NODE_ID_FILE = "homeassistant-node-id"
# The discovery config topics published, kept across restarts: a config no longer wanted when
# OctoPrint starts again (discovery turned off in config.yaml, the other plugin installed) is
# cleared then.
PUBLISHED_FILE = "homeassistant-published.json"
# Home Assistant's rule for a node id (the core's discovery::valid_node_id checks the setting).
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def settings_defaults():
    """The settings tree of docs/behaviour.md §2, plus keys added since: the core's, which
    reads them (a fresh copy on each call)."""
    return default_settings()


def own_base_topic(name):
    """`octoprint/<name>/` for "Use topics of their own for this printer": the name made one
    topic level that every dashboard can type (lower case, `-` for anything else)."""
    level = re.sub(r"[^a-z0-9_]+", "-", str(name).lower()).strip("-")[:64]
    return f"octoprint/{level or 'printer'}/"


def is_paused_for_user(line):
    # Marlin sends "echo:busy: paused for user"; OctoPrint's virtual printer drops the colon.
    return line.startswith("echo:busy") and "paused for user" in line


class MqttPlugin(
    octoprint.plugin.SettingsPlugin,
    octoprint.plugin.StartupPlugin,
    octoprint.plugin.ShutdownPlugin,
    octoprint.plugin.EventHandlerPlugin,
    octoprint.plugin.ProgressPlugin,
    octoprint.plugin.TemplatePlugin,
    octoprint.plugin.AssetPlugin,
    octoprint.plugin.SimpleApiPlugin,
    PrinterCallback,
):
    def __init__(self):
        self._core = Core()
        # Error text -> None, least recently seen first.
        self._reported_errors = OrderedDict()
        self._reported_lock = threading.Lock()
        self._printer_data = False
        self._metadata_active = False
        self._progress_lock = threading.Lock()
        self._progress_timer = None
        self._last_progress = None
        self._timestamp_field = self._core.timestamp_field
        self._status_pusher = None
        self._test_lock = threading.Lock()
        self._server = (None, None)
        self._generated_node_id = None
        self._published_topics = None  # as last stored; None until read at startup

    # ~~ settings

    def get_settings_defaults(self):
        return settings_defaults()

    def get_settings_version(self):
        return 1

    def on_settings_migrate(self, target, current):
        if current is not None:
            return
        # No settings version: either a fresh install, or settings written by the classic
        # plugin. That one published under "octoPrint/" without storing it (OctoPrint stores
        # only values that differ from the defaults), so keep its topics where they were.
        stored = self._settings.global_get(["plugins", "mqtt"], incl_defaults=False) or {}
        stored = {key: value for key, value in stored.items() if key != "_config_version"}
        if not stored:
            return
        if (stored.get("publish") or {}).get("baseTopic") is None:
            self._settings.set(["publish", "baseTopic"], "octoPrint/", force=True)
            self._logger.info(
                "Settings of the classic MQTT plugin found: keeping its base topic "
                "'octoPrint/' (change publish.baseTopic to move the topics)"
            )

    def get_settings_restricted_paths(self):
        # OctoPrint's "admin" level means the SETTINGS permission (Admins only by default, but
        # any group can be given it): those users get the password through /api/settings.
        return {"admin": [["broker", "password"]]}

    def on_settings_save(self, data):
        # Never log `data`: it may hold the broker password.
        bad = validation.problems(data, self._settings.get_all_data(merged=True))
        for path, message in bad.items():
            self._logger.warning("MQTT setting %s not saved: %s", ".".join(path), message)
        validation.drop(data, bad)
        validation.normalise(data)
        result = octoprint.plugin.SettingsPlugin.on_settings_save(self, data)
        self._push_settings()
        return result

    def on_settings_initialized(self):
        # OctoPrint fires Startup before on_startup: the topics must be known by then. No
        # connection yet (OctoPrint's command-line tools initialise plugins too).
        self._push_settings(connect=False)

    def _push_settings(self, connect=True):
        settings = self._settings.get_all_data(merged=True)
        publish = settings.get("publish") or {}
        self._printer_data = bool(publish.get("printerData"))
        self._metadata_active = bool(publish.get("metadataActive"))
        self._report(self._core.configure, settings, connect)
        self._store_published()
        # The core's reading of timestamp_fieldname (it falls back to `_timestamp` when the
        # value is not a name), so that the helpers stamp like the plugin's own messages.
        self._timestamp_field = self._core.timestamp_field

    def _report(self, call, *args):
        """Runs a core call; a ValueError (a bad topic template, bad settings) would repeat on
        every event, so each distinct one is logged once (while it is among the last
        REPORTED_ERRORS_MAX distinct ones)."""
        try:
            return call(*args)
        except ValueError as exc:
            self._log_once(exc)
        return None

    def _log_once(self, exc):
        text = str(exc)
        # Events, the comm thread and the progress timer report from their own threads.
        with self._reported_lock:
            if text in self._reported_errors:
                self._reported_errors.move_to_end(text)
                return
            self._reported_errors[text] = None
            if len(self._reported_errors) > REPORTED_ERRORS_MAX:
                self._reported_errors.popitem(last=False)
        self._logger.error("MQTT: %s", exc)

    # ~~ lifecycle

    def on_startup(self, host, port):
        self._server = (host, port)
        # The state topic's first message (at connect) needs the printer's state.
        data = self._printer.get_current_data() or {}
        self._report(
            self._core.printer_state,
            self._printer.get_state_id(),
            self._printer.get_state_string(),
            data.get("job"),
        )
        self._report(self._core.printer_data, data.get("job"), data.get("progress"))
        self._push_device()
        self._identify()
        # Before the connection: requests may arrive as soon as it is up.
        self._core.set_control_handler(
            control.Commands(
                self._printer, self._file_manager, self._printer_profile_manager, self._logger
            )
        )
        # Before OctoPrint fires Startup: the core keeps events until the broker answers.
        self._push_settings()
        # Overwrite progress retained by an earlier run; queued, so it follows `connected`.
        self._report(
            self._core.publish_progress,
            "printing",
            {"location": "", "path": "", "progress": 0},
            True,
        )
        self._report(
            self._core.publish_progress,
            "slicing",
            {
                "slicer": "",
                "source_location": "",
                "source_path": "",
                "destination_location": "",
                "destination_path": "",
                "progress": 0,
            },
            True,
        )
        self._printer.register_callback(self)
        self._status_pusher = StatusPusher(self._core, self._push_status, logger=self._logger)
        self._status_pusher.start()

    def _identify(self):
        # A data folder it cannot read must not keep the plugin from connecting: the core
        # keeps its random client id then.
        try:
            instance_id = identity.instance_id(
                self.get_plugin_data_folder(),
                self._settings.global_get_basefolder("base"),
                self._logger,
            )
            self._core.identify(instance_id, self._host_name(), PLUGIN_VERSION)
        except Exception:
            self._logger.exception("Cannot make this OctoPrint's MQTT instance id")

    def _host_name(self):
        return str(self._settings.global_get(["appearance", "name"]) or socket.gethostname())

    def on_plugin_pending_uninstall(self):
        # Home Assistant would keep the device (its retained configs) forever otherwise.
        self._report(self._core.homeassistant_uninstall)
        self._store_published()

    def on_shutdown(self):
        # No printer action after this: requests still waiting are answered by the core.
        self._core.set_control_handler(None)
        if self._status_pusher is not None:
            self._status_pusher.stop()
        self._printer.unregister_callback(self)
        with self._progress_lock:
            if self._progress_timer is not None:
                self._progress_timer.cancel()
        if not self._core.stop(1.0):
            self._logger.warning("The MQTT core did not stop within a second; leaving it")

    # ~~ events

    def on_event(self, event, payload):
        # Called for every OctoPrint event on its event thread: the core call inline, without
        # _report's extra call (see docs/benchmark.md).
        try:
            self._core.publish_event(event, payload)
        except ValueError as exc:
            self._log_once(exc)
        if event == "PrinterStateChanged":
            payload = payload or {}
            # The job as it is now: the state message that says "Printing" names the file.
            self._report(
                self._core.printer_state,
                str(payload.get("state_id") or "UNKNOWN"),
                str(payload.get("state_string") or ""),
                self._printer.get_current_job(),
            )
        elif event == "Error":
            self._report(self._core.printer_error, str((payload or {}).get("error") or ""))
        elif event in DEVICE_EVENTS:
            self._push_device()
        if event in JOB_EVENTS:
            self._start_progress_checks()
        if event == "PrintStarted" and self._metadata_active:
            metadata = self._file_metadata(payload)
            # None would clear the retained values (SD card prints have no metadata).
            if metadata is not None:
                self._report(self._core.publish_metadata, metadata)
        elif event in JOB_END_EVENTS:
            self._report(self._core.publish_metadata, None)

    def on_gcode_received(self, comm, line, *args, **kwargs):
        """Hook on the printer's comm thread, called for every line: one cheap check."""
        if is_paused_for_user(line):
            self._report(self._core.publish_event, "PausedForUser", None)
        return line

    def _file_metadata(self, payload):
        payload = payload or {}
        if payload.get("origin") != "local":
            return None  # files on the printer's SD card have no metadata in OctoPrint
        try:
            return self._file_manager.get_metadata(payload.get("origin"), payload.get("path"))
        except Exception:
            self._logger.exception("Cannot read the metadata of %s", payload.get("path"))
            return None

    # ~~ Home Assistant discovery (the configs are built in the core: discovery.rs)

    def _push_device(self):
        # Called from on_startup and on_event: a profile or data folder it cannot read must
        # not keep the plugin from connecting or handling the event.
        try:
            device, node_id = self._device_info(), self._node_id()
        except Exception:
            self._logger.exception("Cannot describe this OctoPrint for Home Assistant discovery")
            return
        other = next(
            (
                name
                for identifier, name in OTHER_DISCOVERY_PLUGINS.items()
                if self._plugin_manager.get_plugin(identifier) is not None
            ),
            None,
        )
        earlier = self._load_published() if self._published_topics is None else []
        try:
            self._core.homeassistant_device(device, node_id, other, earlier)
        except (TypeError, ValueError) as exc:
            self._log_once(exc)
        self._store_published()

    def _load_published(self):
        try:
            with open(self._data_path(PUBLISHED_FILE), encoding="utf-8") as f:
                topics = json.load(f)
        except FileNotFoundError:
            topics = []
        except (OSError, ValueError) as exc:
            self._logger.warning("Cannot read the discovery topics published before: %s", exc)
            topics = []
        if not (isinstance(topics, list) and all(isinstance(t, str) for t in topics)):
            topics = []
        self._published_topics = topics
        return topics

    def _store_published(self):
        """Keeps the config topics in force when they changed (after startup)."""
        if self._published_topics is None:
            return
        topics = self._core.homeassistant_status()["topics"]
        if topics == self._published_topics:
            return
        try:
            with open(self._data_path(PUBLISHED_FILE), "w", encoding="utf-8") as f:
                json.dump(topics, f)
            self._published_topics = topics
        except OSError as exc:
            self._logger.warning("Cannot keep the discovery topics published: %s", exc)

    def _data_path(self, name):
        return os.path.join(self.get_plugin_data_folder(), name)

    def _device_info(self):
        profile = self._printer_profile_manager.get_current_or_default() or {}
        # str(): a hand-edited config.yaml may hold numbers there.
        return {
            "name": self._host_name(),
            "manufacturer": "OctoPrint",
            "model": str(profile.get("model") or profile.get("name") or ""),
            "sw_version": OCTOPRINT_VERSION,
            "configuration_url": self._configuration_url(),
            "heaters": control.heaters_of(profile),
        }

    def _configuration_url(self):
        # What OctoPrint announces on the network (its discovery plugin), else the address it
        # listens on when that is one others can reach; otherwise none.
        public_host = self._settings.global_get(["plugins", "discovery", "publicHost"])
        public_port = self._settings.global_get(["plugins", "discovery", "publicPort"])
        host, port = public_host or self._server[0], public_port or self._server[1]
        if not host or not port or str(host).lower() == "localhost":
            return None
        try:
            address = ipaddress.ip_address(str(host))
        except ValueError:
            address = None  # a host name
        if address is not None and (address.is_loopback or address.is_unspecified):
            return None
        if address is not None and address.version == 6:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def _node_id(self):
        """The discovery node id of this OctoPrint while `homeassistant.nodeId` is unset:
        made once, kept in the plugin's data folder."""
        if self._generated_node_id is None:
            self._generated_node_id = self._load_node_id()
        return self._generated_node_id

    def _load_node_id(self):
        path = self._data_path(NODE_ID_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                stored = f.read().strip()
            if NODE_ID.fullmatch(stored):
                return stored
            self._logger.warning("%s holds no usable node id: making a new one", path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            self._logger.warning("Cannot read %s (%s): making a new node id", path, exc)
        node_id = "octoprint-" + secrets.token_hex(5)
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(node_id + "\n")
        except OSError as exc:
            self._logger.warning(
                "Cannot store the node id in %s (%s): it changes at the next start", path, exc
            )
        return node_id

    # ~~ progress

    def _job_active(self):
        if self._printer.is_printing() or self._printer.is_paused():
            return True
        job = self._printer.get_current_job() or {}
        return bool((job.get("file") or {}).get("path"))

    def _start_progress_checks(self):
        with self._progress_lock:
            if self._progress_timer is not None and self._progress_timer.is_alive():
                return
            self._progress_timer = RepeatedTimer(
                PROGRESS_INTERVAL,
                self._check_progress,
                run_first=True,
                condition=self._job_active,
                daemon=True,
            )
            self._progress_timer.start()

    def _check_progress(self):
        data = self._printer.get_current_data()
        job_file = (data.get("job") or {}).get("file") or {}
        location = job_file.get("origin") or ""
        path = job_file.get("path") or ""
        percent = progress_percent(data.get("progress") or {})
        if (location, path, percent) == self._last_progress:
            return
        self._last_progress = (location, path, percent)
        payload = {"location": location, "path": path, "progress": percent}
        if self._printer_data:
            payload["printer_data"] = data
        self._report(self._core.publish_progress, "printing", payload)

    def on_slicing_progress(
        self,
        slicer,
        source_location,
        source_path,
        destination_location,
        destination_path,
        progress,
    ):
        payload = {
            "slicer": slicer,
            "source_location": source_location,
            "source_path": source_path,
            "destination_location": destination_location,
            "destination_path": destination_path,
            "progress": progress,
        }
        self._report(self._core.publish_progress, "slicing", payload)

    # ~~ printer state and temperatures (PrinterCallback)

    def on_printer_send_current_data(self, data):
        # At most twice a second (OctoPrint throttles it); the core paces the state topic.
        self._report(self._core.printer_data, data.get("job"), data.get("progress"))

    def on_printer_add_temperature(self, data):
        self._report(self._core.publish_temperatures, data)

    # ~~ helpers for other plugins (docs/behaviour.md §4; exported in __init__.py)

    def mqtt_publish(
        self, topic, payload, retained=None, qos=0, allow_queueing=False, raw_data=False
    ):
        """Publishes `payload` on `topic`: a str as UTF-8, anything else as JSON, or with
        `raw_data=True` bytes as they are, numbers as text and None as an empty payload.
        `retained=None` follows the plugin's `broker.retain`. Returns True when the message was
        sent or queued (`allow_queueing=True` keeps it while offline), False when offline.
        Raises ValueError for a bad topic or QoS, TypeError for a payload it cannot send.
        Never waits on the network."""
        return self._core.publish(topic, payload, retained, qos, allow_queueing, raw_data)

    def mqtt_publish_with_timestamp(
        self, topic, payload, retained=None, qos=0, allow_queueing=False, timestamp=None
    ):
        """Like mqtt_publish for a dict, after adding the timestamp property (`_timestamp`
        unless configured otherwise) to it: `timestamp`, or now, in Unix seconds."""
        validate_topic(topic)
        if not payload:
            payload = {}
        if not isinstance(payload, dict):
            raise ValueError("mqtt_publish_with_timestamp needs a dict payload")
        payload[self._timestamp_field] = int(timestamp if timestamp is not None else time.time())
        return self._core.publish(topic, payload, retained, qos, allow_queueing, False)

    def mqtt_subscribe(self, topic, callback, args=None, kwargs=None, qos=0):
        """Calls `callback(topic, payload, *args, retained=bool, qos=int, **kwargs)` on the
        plugin's callback thread for every message matching the filter `topic` (`+` and `#`
        allowed); `payload` is bytes. Renewed after every reconnect. ValueError for a bad
        filter or QoS."""
        self._core.subscribe(topic, callback, args, kwargs, qos)

    def mqtt_unsubscribe(self, callback, topic=None):
        """Removes the subscriptions of `callback` (compared with ==), only those on the filter
        `topic` when given. Unknown callbacks are ignored."""
        self._core.unsubscribe(callback, topic)

    # ~~ software update

    def get_update_information(self):
        return {
            "mqtt": {
                "displayName": "MQTT",
                "displayVersion": self._plugin_version,
                # Not OctoPrint's pypi_release: that would offer a release whose native part
                # has no wheel for this machine (update.py).
                "type": "python_checker",
                "python_checker": UpdateCheck(),
                "current": self._plugin_version,
                "pip": f"{PLUGIN_DIST}=={{target_version}}",
            }
        }

    # ~~ UI: settings page, navbar indicator, status and connection test (api.py)

    def get_template_vars(self):
        # The page checks fields with the core's rules (see validation.py for the server side).
        return {"rules": setting_rules(), "own_base_topic": own_base_topic(self._host_name())}

    def get_template_configs(self):
        return [
            {"type": "settings", "custom_bindings": True},
            {"type": "navbar", "custom_bindings": True},
        ]

    def is_template_autoescaped(self):
        return True

    def get_assets(self):
        return {"js": ["js/mqtt.js"], "css": ["css/mqtt.css"]}

    def get_additional_permissions(self):
        return [api.PERMISSION]

    def is_api_protected(self):
        return True

    def get_api_commands(self):
        return {"test_connection": []}

    def on_api_get(self, request):
        return api.status(self._core)

    def on_api_command(self, command, data):
        stored = self._settings.get_all_data(merged=True)
        return api.test_connection(stored, self._test_lock, data)

    def _push_status(self, status):
        api.push_status(
            self._plugin_manager, self._identifier, status, self._core.homeassistant_status()
        )
