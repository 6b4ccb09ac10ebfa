//! The Python surface of the core (`octoprint_mqtt._core`). Everything else lives in the
//! modules below; this file only converts between Python and Rust.

#[macro_use]
mod logging;
mod config;
mod connection;
mod dispatch;
mod error;
mod events;
mod message;
mod payload;
mod probe;
mod pystr;
mod queue;
mod registry;
mod rules;
mod session;
mod status;
mod temperature;
mod tls;
mod topic;

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyString, PyTuple};

use crate::config::{PublishConfig, Settings};
use crate::connection::{Command, Handle, DISPATCH_CAPACITY};
use crate::dispatch::{Handler, SharedRegistry};
use crate::error::Error;
use crate::message::{Message, Qos};

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::InvalidTopic { .. }
            | Error::InvalidQos(_)
            | Error::Config(_)
            | Error::TooLarge { .. } => PyValueError::new_err(e.to_string()),
            Error::Payload(_) => PyTypeError::new_err(e.to_string()),
        }
    }
}

static LOG_RESET: OnceLock<Mutex<pyo3_log::ResetHandle>> = OnceLock::new();

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// One MQTT client: its own thread, connection, offline queue and status.
#[pyclass(frozen, module = "octoprint_mqtt._core")]
struct Core {
    handle: Handle,
    /// Read on the caller's thread for every event; replaced whole on each settings save.
    publishing: RwLock<Arc<PublishConfig>>,
    /// Used while `client.client_id` is unset; the same for the core's whole life.
    client_id: String,
    temperatures: Mutex<temperature::Tracker>,
    registry: SharedRegistry,
    /// The settings warnings of the last `configure`: OctoPrint configures again at startup
    /// and on every save, and a value already reported is not reported again.
    warned: Mutex<Vec<String>>,
    callback_errors: dispatch::ErrorCount,
}

impl Core {
    fn registry(&self) -> std::sync::MutexGuard<'_, registry::Registry<Handler>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publishing(&self) -> Arc<PublishConfig> {
        self.publishing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The plugin's own messages (events, progress, temperatures, metadata): QoS 0, kept while
    /// offline unless `publish.queueWhileOffline` is off.
    fn send_own(
        &self,
        cfg: &PublishConfig,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> PyResult<bool> {
        self.send(Message {
            topic,
            payload,
            qos: Qos::AtMostOnce,
            retain,
            queue_offline: cfg.queue_events_offline,
        })
    }

    fn send(&self, msg: Message) -> PyResult<bool> {
        message::check_size(&msg.topic, &msg.payload)?;
        // What the caller is told: would this message be delivered (now or after a reconnect)?
        let shared = &self.handle.shared;
        if shared.refuse_too_large(&msg) {
            return Ok(false);
        }
        let accepted = shared.is_connected() || (msg.queue_offline && shared.keeps_offline());
        // False after stop() (OctoPrint still fires a few events while shutting down) and when
        // the core is too far behind to take it.
        // Handed over even when not `accepted`: the core counts the refusal (or sends it, if
        // it connected meanwhile).
        let handed = self.handle.publish(msg);
        Ok(accepted && handed)
    }
}

#[pymethods]
impl Core {
    #[new]
    fn new() -> PyResult<Self> {
        let defaults = Settings::default();
        let thread_error =
            |e| PyRuntimeError::new_err(format!("cannot start the MQTT threads: {e}"));
        let (inbox, outbox) = dispatch::channel(DISPATCH_CAPACITY);
        let registry = SharedRegistry::default();
        let callback_errors = dispatch::ErrorCount::default();
        dispatch::spawn(outbox, registry.clone(), callback_errors.clone()).map_err(thread_error)?;
        let handle =
            Handle::spawn(defaults.publish.offline_queue_size, inbox).map_err(thread_error)?;
        Ok(Core {
            registry,
            callback_errors,
            handle,
            publishing: RwLock::new(Arc::new(defaults.publishing())),
            client_id: config::generate_client_id(),
            temperatures: Mutex::new(temperature::Tracker::default()),
            warned: Mutex::new(Vec::new()),
        })
    }

    /// Takes the whole `plugins.mqtt` settings tree (defaults merged). Connection settings
    /// that differ from the current ones make the core reconnect; the rest applies at once.
    /// With `connect=False` only the publishing settings (topics, filters) are taken: messages
    /// are formatted right and kept until a call with `connect=True`.
    #[pyo3(signature = (settings, connect=true))]
    fn configure(&self, settings: &Bound<'_, PyAny>, connect: bool) -> PyResult<()> {
        let tree: serde_json::Value = pythonize::depythonize(settings)
            .map_err(|e| PyValueError::new_err(format!("invalid MQTT settings: {e}")))?;
        let (settings, warnings) = config::parse_lenient(tree);
        {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            for w in warnings.iter().filter(|w| !warned.contains(w)) {
                warn!("{w}");
            }
            *warned = warnings;
        }
        if let Some(reset) = LOG_RESET.get() {
            // Pick up log levels changed in OctoPrint's logging settings.
            reset.lock().unwrap_or_else(|p| p.into_inner()).reset();
        }
        *self.publishing.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(settings.publishing());
        if !connect {
            return Ok(());
        }
        self.handle.control(Command::Configure {
            conn: Box::new(settings.connection(&self.client_id)),
            queue_capacity: settings.publish.offline_queue_size,
        });
        Ok(())
    }

    /// Publishes an OctoPrint event on `<base><eventTopic>` unless its class is switched off.
    /// Returns whether it was accepted (sent, or queued while offline).
    #[pyo3(signature = (event, payload=None))]
    fn publish_event(
        &self,
        event: &Bound<'_, PyString>,
        payload: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        // Borrowed, not copied: see pystr.rs (this runs for every OctoPrint event).
        let (event, encodable) = match pystr::utf8(event) {
            Some(text) => (std::borrow::Cow::Borrowed(text), true),
            None => (event.to_string_lossy(), false),
        };
        let event = event.as_ref();
        let cfg = self.publishing();
        if !cfg.event_active || !cfg.events.enabled(events::classify(event)) {
            return Ok(false);
        }
        let topic = cfg.event_topic(event);
        if !encodable {
            return Err(Error::topic(&topic, topic::LONE_SURROGATE).into());
        }
        topic::validate_topic(&topic)?;
        let payload = payload::encode_event(payload, event, &cfg.timestamp_field, unix_now());
        let retain = cfg.retain && events::retain_follows_broker(event);
        self.send_own(&cfg, topic, payload, retain)
    }

    /// Print (`kind="printing"`, always retained) or slicing (`"slicing"`, retained per
    /// `broker.retain`) progress on `<base><progressTopic>`, with the timestamp added.
    /// `queue=None` follows `publish.queueWhileOffline`.
    #[pyo3(signature = (kind, payload, queue=None))]
    fn publish_progress(
        &self,
        kind: &str,
        payload: &Bound<'_, PyAny>,
        queue: Option<bool>,
    ) -> PyResult<bool> {
        let cfg = self.publishing();
        let retain = match kind {
            "printing" => true,
            "slicing" => cfg.retain,
            other => {
                return Err(PyValueError::new_err(format!(
                    "progress kind must be 'printing' or 'slicing', not {other:?}"
                )))
            }
        };
        if !cfg.progress_active {
            return Ok(false);
        }
        let topic = cfg.progress_topic(kind);
        topic::validate_topic(&topic)?;
        let payload =
            payload::encode_stamped(Some(payload), None, &cfg.timestamp_field, unix_now());
        self.send(Message {
            topic,
            payload,
            qos: Qos::AtMostOnce,
            retain,
            queue_offline: queue.unwrap_or(cfg.queue_events_offline),
        })
    }

    /// One sample from OctoPrint's printer callback, `{"time": t, "<heater>": {"actual": a,
    /// "target": t}, ...}`: publishes the heaters that changed enough. Returns how many.
    fn publish_temperatures(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let cfg = self.publishing();
        if !cfg.temperature_active {
            return Ok(0);
        }
        let data = payload::as_dict(data)
            .ok_or_else(|| PyTypeError::new_err("temperature data must be a mapping"))?;
        let time = match data.get_item("time")? {
            Some(t) => t
                .extract::<f64>()
                .map(|t| t as u64)
                .unwrap_or_else(|_| unix_now()),
            None => unix_now(),
        };
        let mut tracker = self.temperatures.lock().unwrap_or_else(|p| p.into_inner());
        let mut published = 0;
        for (heater, values) in data.iter() {
            let (Ok(heater), Some(values)) =
                (heater.extract::<String>(), payload::as_dict(&values))
            else {
                continue; // "time", or something a plugin added that is not a heater
            };
            let reading = temperature::Reading {
                actual: reading(&values, "actual")?,
                target: reading(&values, "target")?,
            };
            if !tracker.should_publish(&heater, reading, cfg.temperature_threshold) {
                continue;
            }
            let topic = cfg.temperature_topic(&heater);
            topic::validate_topic(&topic)?;
            let mut body = Vec::with_capacity(64);
            body.extend_from_slice(b"{\"actual\":");
            payload::write_reading(&mut body, reading.actual);
            body.extend_from_slice(b",\"target\":");
            payload::write_reading(&mut body, reading.target);
            body.push(b',');
            body.extend_from_slice(&payload::encode_key(&cfg.timestamp_field));
            body.extend_from_slice(format!(":{time}}}").as_bytes());
            self.send_own(&cfg, topic, body, cfg.retain)?;
            published += 1;
        }
        Ok(published)
    }

    /// File metadata on `<base><metadataTopic>` for each key of `publish.metadataKeys` (dots
    /// walk into nested dicts): the value at print start, or with `metadata=None` an empty
    /// payload per key, which clears the retained value when the job ends. Returns how many.
    #[pyo3(signature = (metadata=None))]
    fn publish_metadata(&self, metadata: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        let cfg = self.publishing();
        if !cfg.metadata_active {
            return Ok(0);
        }
        let mut published = 0;
        for key in &cfg.metadata_keys {
            let payload = match metadata {
                None => Vec::new(),
                Some(m) => match lookup(m, key)? {
                    Some(value) => payload::encode_text(&value),
                    None => continue,
                },
            };
            let topic = cfg.metadata_topic(key);
            if let Err(e) = topic::validate_topic(&topic) {
                warn!("Metadata key {key:?} cannot be published: {e}");
                continue;
            }
            self.send_own(&cfg, topic, payload, cfg.retain)?;
            published += 1;
        }
        Ok(published)
    }

    /// `mqtt_publish`: a `str` goes out as UTF-8, anything else as JSON, unless `raw_data`, where
    /// bytes go out as they are, numbers as their text and None as an empty payload.
    /// `retained=None` follows `broker.retain`. Returns whether the message was accepted (sent,
    /// or queued because `allow_queueing`); False when offline without queueing.
    #[pyo3(signature = (topic, payload, retained=None, qos=0, allow_queueing=None, raw_data=None))]
    fn publish(
        &self,
        topic: &Bound<'_, PyString>,
        payload: &Bound<'_, PyAny>,
        retained: Option<&Bound<'_, PyAny>>,
        qos: i64,
        allow_queueing: Option<&Bound<'_, PyAny>>,
        raw_data: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let topic = topic_text(topic)?;
        topic::validate_topic(topic)?;
        let qos = Qos::try_from(qos)?;
        // Any truthy value, as Python code passes them (`retained=1`).
        let truthy = |v: Option<&Bound<'_, PyAny>>| v.map_or(Ok(false), |v| v.is_truthy());
        let allow_queueing = truthy(allow_queueing)?;
        let payload = helper_payload(payload, truthy(raw_data)?)?;
        let retain = match retained.filter(|r| !r.is_none()) {
            Some(r) => r.is_truthy()?,
            None => self.publishing().retain,
        };
        self.send(Message {
            topic: topic.to_owned(),
            payload,
            qos,
            retain,
            queue_offline: allow_queueing,
        })
    }

    /// `mqtt_subscribe`: `callback(topic, payload: bytes, *args, retained=, qos=, **kwargs)` for
    /// every message matching `topic` (a filter: `+` and `#` allowed). The same filter and an
    /// equal callback registered again is ignored.
    #[pyo3(signature = (topic, callback, args=None, kwargs=None, qos=0))]
    fn subscribe(
        &self,
        py: Python<'_>,
        topic: &Bound<'_, PyString>,
        callback: &Bound<'_, PyAny>,
        args: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
        qos: i64,
    ) -> PyResult<()> {
        let topic = topic_text(topic)?;
        topic::validate_filter(topic)?;
        let qos = Qos::try_from(qos)?;
        if !callback.is_callable() {
            return Err(PyTypeError::new_err("callback must be callable"));
        }
        let args = match args {
            None => PyTuple::empty(py),
            Some(a) => a
                .try_iter()
                .and_then(|it| it.collect::<PyResult<Vec<_>>>())
                .and_then(|items| PyTuple::new(py, items))
                .map_err(|_| PyTypeError::new_err("args must be a tuple or list"))?,
        };
        // Compare outside the lock: `==` may run Python code.
        let same_filter: Vec<Py<PyAny>> = self
            .registry()
            .entries()
            .filter(|e| e.filter == topic)
            .map(|e| e.handler.callback.clone_ref(py))
            .collect();
        for existing in same_filter {
            if existing.bind(py).eq(callback)? {
                return Ok(());
            }
        }
        let handler = Handler {
            callback: callback.clone().unbind(),
            args: args.unbind(),
            kwargs: kwargs.map(|k| k.copy()).transpose()?.map(Bound::unbind),
        };
        let change = self.registry().add(topic, qos, handler);
        if let Some(registry::BrokerChange::Subscribe(filter, qos)) = change {
            self.handle.control(Command::Subscribe { filter, qos });
        }
        Ok(())
    }

    /// `mqtt_unsubscribe`: removes the subscriptions whose callback `==` this one (and whose
    /// filter is `topic`, when given); unsubscribes at the broker the filters nobody uses any
    /// more. Anything that is not a registered callback is ignored, and so is a topic nobody
    /// can have subscribed to (one with a lone surrogate).
    #[pyo3(signature = (callback, topic=None))]
    fn unsubscribe(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        topic: Option<&Bound<'_, PyString>>,
    ) -> PyResult<()> {
        let topic = match topic.map(|t| pystr::utf8(t)) {
            None => None,
            Some(Some(topic)) => Some(topic),
            Some(None) => return Ok(()),
        };
        let candidates: Vec<(u64, Py<PyAny>)> = self
            .registry()
            .entries()
            .filter(|e| topic.is_none_or(|t| e.filter == t))
            .map(|e| (e.id, e.handler.callback.clone_ref(py)))
            .collect();
        let mut ids = Vec::new();
        for (id, existing) in candidates {
            if existing.bind(py).eq(callback).unwrap_or(false) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let (changes, removed) = self.registry().remove(&ids);
        drop(removed); // after the registry's lock is released
        for change in changes {
            if let registry::BrokerChange::Unsubscribe(filter) = change {
                self.handle.control(Command::Unsubscribe { filter });
            }
        }
        Ok(())
    }

    /// Disconnects cleanly (status `disconnected`, then DISCONNECT) and stops the thread.
    /// Returns False if it did not finish within `timeout` seconds.
    #[pyo3(signature = (timeout=1.0))]
    fn stop(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 60.0));
        py.detach(|| self.handle.shutdown(timeout))
    }

    /// The timestamp property's name in force (`timestamp_fieldname`, or `_timestamp` when
    /// that is unusable): the Python helpers add the same one.
    #[getter]
    fn timestamp_field(&self) -> String {
        self.publishing().timestamp_field.clone()
    }

    #[getter]
    fn connected(&self) -> bool {
        self.handle.shared.is_connected()
    }

    /// Waits (without the GIL) until the state, broker or last error changed since version
    /// `seen`, or `timeout` seconds passed; returns the current version. Counters do not
    /// count as a change: they move all the time.
    #[pyo3(signature = (seen, timeout=1.0))]
    fn wait_status(&self, py: Python<'_>, seen: u64, timeout: f64) -> u64 {
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 60.0));
        py.detach(|| self.handle.shared.wait_change(seen, timeout))
    }

    /// State, broker, since (Unix seconds), last error and counters, as a dict.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.handle.shared.snapshot();
        let c = &self.handle.shared.counters;
        let d = PyDict::new(py);
        d.set_item("state", s.state.as_str())?;
        d.set_item("broker", s.broker)?;
        d.set_item(
            "since",
            s.since
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        )?;
        d.set_item("last_error", s.last_error)?;
        d.set_item("version", s.version)?;
        use std::sync::atomic::Ordering::Relaxed;
        for (name, v) in [
            ("published", &c.published),
            ("queued", &c.queued),
            ("dropped", &c.dropped),
            ("refused", &c.refused),
            ("rejected", &c.rejected),
            ("received", &c.received),
            ("dispatch_dropped", &c.dispatch_dropped),
            ("reconnects", &c.reconnects),
            ("queue_depth", &c.queue_depth),
        ] {
            d.set_item(name, v.load(Relaxed))?;
        }
        d.set_item("callback_errors", self.callback_errors.load(Relaxed))?;
        Ok(d)
    }
}

/// The bytes `mqtt_publish` sends for a payload (compat.md section 4).
fn helper_payload(payload: &Bound<'_, PyAny>, raw_data: bool) -> PyResult<Vec<u8>> {
    if let Ok(s) = payload.cast::<PyString>() {
        return Ok(pystr::text(s).as_bytes().to_vec());
    }
    let is_bytes = payload.is_instance_of::<PyBytes>() || payload.is_instance_of::<PyByteArray>();
    if !raw_data {
        if is_bytes {
            return Err(PyTypeError::new_err(
                "bytes payloads are sent with raw_data=True; without it the payload is JSON-encoded",
            ));
        }
        return Ok(payload::encode_value(payload));
    }
    if payload.is_none() {
        Ok(Vec::new())
    } else if let Ok(b) = payload.cast::<PyBytes>() {
        Ok(b.as_bytes().to_vec())
    } else if let Ok(b) = payload.cast::<PyByteArray>() {
        Ok(b.to_vec())
    } else if payload.is_instance_of::<PyInt>()
        || payload.is_instance_of::<PyFloat>()
        || payload.is_instance_of::<PyBool>()
    {
        match payload.str() {
            Ok(text) => Ok(text.to_string_lossy().as_bytes().to_vec()),
            // An int beyond Python's int-to-str limit: its digits all the same.
            Err(err) if payload.is_instance_of::<PyInt>() => payload::int_digits(payload)
                .map(String::into_bytes)
                .ok_or(err),
            Err(err) => Err(err),
        }
    } else {
        Err(PyTypeError::new_err(format!(
            "raw_data payloads must be bytes, bytearray, str, int, float or None, not {}",
            payload.get_type().name()?
        )))
    }
}

/// A heater's `actual` or `target`: a number, or nothing (missing, None, NaN, not a number).
fn reading(values: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<f64>> {
    Ok(values
        .get_item(key)?
        .and_then(|v| v.extract::<f64>().ok())
        .filter(|v| v.is_finite()))
}

/// `key` in a metadata dict: the literal key first, else a dotted path through nested dicts.
fn lookup<'py>(metadata: &Bound<'py, PyAny>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(dict) = payload::as_dict(metadata) else {
        return Ok(None);
    };
    if let Some(v) = dict.get_item(key)? {
        return Ok(Some(v));
    }
    let mut current = metadata.clone();
    for part in key.split('.') {
        let Some(next) = payload::as_dict(&current)
            .map(|d| d.get_item(part))
            .transpose()?
            .flatten()
        else {
            return Ok(None);
        };
        current = next;
    }
    Ok(Some(current))
}

/// Raises ValueError when `topic` cannot be published to.
#[pyfunction]
fn validate_topic(topic: &Bound<'_, PyString>) -> PyResult<()> {
    Ok(topic::validate_topic(topic_text(topic)?)?)
}

/// A topic or filter as Rust text; a ValueError like any other topic MQTT cannot carry when
/// UTF-8 cannot encode it, rather than a lossy copy naming another topic.
fn topic_text<'a>(topic: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    pystr::utf8(topic)
        .ok_or_else(|| Error::topic(&topic.to_string_lossy(), topic::LONE_SURROGATE).into())
}

/// One connection attempt with the settings tree `settings` (unsaved settings from the
/// dialog), on a client of its own: the live connection is not touched. Waits at most
/// `timeout` seconds, without the GIL. Returns `{ok, reason, broker, protocol, elapsed}`.
#[pyfunction]
#[pyo3(signature = (settings, timeout=5.0))]
fn test_connection<'py>(
    py: Python<'py>,
    settings: &Bound<'py, PyAny>,
    timeout: f64,
) -> PyResult<Bound<'py, PyDict>> {
    // Read as `configure` reads it: a value the live connection would replace by its default
    // is replaced here too, and named in `warnings`, rather than failing the whole test.
    let tree: serde_json::Value = pythonize::depythonize(settings)
        .map_err(|e| PyValueError::new_err(format!("invalid MQTT settings: {e}")))?;
    let (settings, warnings) = config::parse_lenient(tree);
    let timeout = Duration::from_secs_f64(timeout.clamp(0.1, 30.0));
    let out = py.detach(|| probe::test_connection(&settings, timeout));
    let d = PyDict::new(py);
    d.set_item("ok", out.ok)?;
    d.set_item("reason", out.reason)?;
    d.set_item("broker", out.broker)?;
    d.set_item("protocol", out.protocol)?;
    d.set_item("elapsed", out.elapsed.as_secs_f64())?;
    d.set_item("warnings", warnings)?;
    Ok(d)
}

/// Whether the settings tree `candidate` connects to the same broker endpoint, the same way,
/// as `saved` (the settings in force): host, port, user name, TLS with its files and checks,
/// transport and WebSocket path. Judged on the values as the connection reads them, so
/// that no spelling of a setting can differ without counting as a change: both are parsed
/// the way the connection test parses them.
#[pyfunction]
fn same_broker(saved: &Bound<'_, PyAny>, candidate: &Bound<'_, PyAny>) -> bool {
    let lenient = |tree: &Bound<'_, PyAny>| {
        pythonize::depythonize::<serde_json::Value>(tree)
            .ok()
            .map(|tree| config::parse_lenient(tree).0)
    };
    let (Some(saved), Some(candidate)) = (lenient(saved), lenient(candidate)) else {
        return false;
    };
    match (saved.connection(""), candidate.connection("")) {
        (Some(a), Some(b)) => a.same_endpoint(&b),
        _ => false,
    }
}

/// The whole `plugins.mqtt` settings tree with its defaults: what the plugin gives OctoPrint.
#[pyfunction]
fn default_settings(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    pythonize::pythonize(py, &config::default_tree())
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// The field rules as data, `[{path, kind, ...}]`: the settings page checks with them.
#[pyfunction]
fn setting_rules(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    pythonize::pythonize(py, &rules::page_rules())
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// `{(section, key): reason}` for each value of `changes` (a partial settings tree, as a save
/// sends it) the field rules refuse, judged with `merged` (the settings in force).
#[pyfunction]
fn settings_problems<'py>(
    py: Python<'py>,
    changes: &Bound<'py, PyAny>,
    merged: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let tree = |v: &Bound<'py, PyAny>| {
        pythonize::depythonize::<serde_json::Value>(v)
            .map_err(|e| PyValueError::new_err(format!("invalid MQTT settings: {e}")))
    };
    let found = PyDict::new(py);
    for (path, reason) in rules::problems(&tree(changes)?, &tree(merged)?) {
        found.set_item(PyTuple::new(py, path)?, reason)?;
    }
    Ok(found)
}

/// Any Python value as the JSON text the plugin publishes.
#[pyfunction]
fn encode_json<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &payload::encode_value(value))
}

/// An event's JSON payload exactly as `Core.publish_event` builds it.
#[pyfunction]
#[pyo3(signature = (event, payload, timestamp_field="_timestamp", timestamp=0))]
fn encode_event<'py>(
    py: Python<'py>,
    event: &str,
    payload: Option<&Bound<'py, PyAny>>,
    timestamp_field: &str,
    timestamp: u64,
) -> Bound<'py, PyBytes> {
    PyBytes::new(
        py,
        &payload::encode_event(payload, event, timestamp_field, timestamp),
    )
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // rumqttc logs every packet at debug level, and warns of what the core reports itself in
    // plainer words (a refused publish): only its errors reach OctoPrint's log.
    let logger = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::LoggersAndLevels)?
        .filter_target("rumqttc".into(), log::LevelFilter::Error);
    if let Ok(reset) = logger.install() {
        let _ = LOG_RESET.set(Mutex::new(reset));
    }
    m.add_class::<Core>()?;
    m.add_function(wrap_pyfunction!(encode_json, m)?)?;
    m.add_function(wrap_pyfunction!(encode_event, m)?)?;
    m.add_function(wrap_pyfunction!(validate_topic, m)?)?;
    m.add_function(wrap_pyfunction!(test_connection, m)?)?;
    m.add_function(wrap_pyfunction!(same_broker, m)?)?;
    m.add_function(wrap_pyfunction!(default_settings, m)?)?;
    m.add_function(wrap_pyfunction!(setting_rules, m)?)?;
    m.add_function(wrap_pyfunction!(settings_problems, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
