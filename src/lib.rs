//! The Python surface of the core (`octoprint_mqtt._core`). Everything else lives in the
//! modules below; this file only converts between Python and Rust.

#[macro_use]
mod logging;
mod announce;
mod config;
mod control;
mod delivery;
mod discovery;
mod dispatch;
mod error;
mod events;
mod executor;
mod failure;
mod glob;
mod instance;
mod lenient;
mod link;
mod message;
mod outgoing;
mod payload;
mod printer;
mod probe;
mod pystr;
mod queue;
mod registry;
mod rules;
mod runner;
mod status;
mod subscriptions;
mod temperature;
mod tls;
mod topic;

use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::config::{PublishConfig, Settings};
use crate::dispatch::{Handler, SharedRegistry};
use crate::error::Error;
use crate::message::{Message, Qos};
use crate::runner::{Command, Handle, DISPATCH_CAPACITY};

impl From<Error> for PyErr {
    /// Every Python exception the core raises is made here.
    fn from(e: Error) -> PyErr {
        match e {
            Error::InvalidTopic { .. }
            | Error::InvalidQos(_)
            | Error::Config(_)
            | Error::TooLarge { .. }
            | Error::ArgumentValue(_) => PyValueError::new_err(e.to_string()),
            Error::Payload(_) | Error::ArgumentType(_) => PyTypeError::new_err(e.to_string()),
            Error::Threads(_) => PyRuntimeError::new_err(e.to_string()),
            Error::Python(e) => e,
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
    /// Used while `client.client_id` is unset: random until the plugin gives this OctoPrint's
    /// stable id (`identify`).
    client_id: RwLock<String>,
    /// What `<base>mqtt/instance` says of us (instance.rs), once identified.
    card: Mutex<Option<instance::Card>>,
    /// Shared with the core's thread, which sends what falls due later.
    printer: Arc<printer::Printer>,
    /// Shared with the core's thread, which repeats them after Home Assistant's birth.
    discovery: Arc<discovery::Discovery>,
    progress: Arc<announce::Memo>,
    control_handler: executor::Handler,
    subscriptions: subscriptions::Subscriptions,
    /// The settings warnings of the last `configure`: OctoPrint configures again at startup
    /// and on every save, and a value already reported is not reported again.
    warned: Mutex<Vec<String>>,
    callback_errors: dispatch::ErrorCount,
}

impl Core {
    fn publishing(&self) -> Arc<PublishConfig> {
        self.publishing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn send(&self, msg: Message) -> PyResult<bool> {
        message::check_size(&msg.topic, &msg.payload)?;
        Ok(self.handle.offer(msg))
    }

    fn online(&self) -> bool {
        self.handle.shared.is_connected()
    }

    /// Sends what the printer's state produced and wakes the core's thread for what waits.
    fn deliver(&self, out: printer::Out) -> PyResult<usize> {
        if let Some(at) = out.wake {
            self.handle.control(Command::Wake(at));
        }
        let n = self.send_all(out.messages)?;
        match out.error {
            Some(e) => Err(e.into()),
            None => Ok(n),
        }
    }

    /// Discovery's messages. While offline only clears are sent (kept for the connection):
    /// every connect publishes the configs in force. Asked after discovery took the change,
    /// so a connect that comes after this check publishes it.
    fn send_discovery(&self, messages: Vec<Message>) -> PyResult<usize> {
        let online = self.online();
        self.send_all(
            messages
                .into_iter()
                .filter(|m| online || m.payload.is_empty())
                .collect(),
        )
    }

    /// Sends each; returns how many.
    fn send_all(&self, messages: Vec<Message>) -> PyResult<usize> {
        let n = messages.len();
        for m in messages {
            self.send(m)?;
        }
        Ok(n)
    }
}

#[pymethods]
impl Core {
    #[new]
    fn new() -> PyResult<Self> {
        let defaults = Settings::default();
        let thread_error = |e: std::io::Error| Error::Threads(e.to_string());
        let (inbox, outbox) = dispatch::channel(DISPATCH_CAPACITY);
        let registry = SharedRegistry::default();
        let callback_errors = dispatch::ErrorCount::default();
        dispatch::spawn(outbox, registry.clone(), callback_errors.clone()).map_err(thread_error)?;
        let publishing = Arc::new(defaults.publishing());
        let printer = Arc::new(printer::Printer::new(publishing.clone(), unix_now));
        let discovery = Arc::new(discovery::Discovery::default());
        let progress = Arc::new(announce::Memo::default());
        let control_handler = executor::Handler::default();
        let peers = runner::Peers {
            dispatch: inbox,
            subscriptions: registry.clone(),
            printer: printer.clone(),
            discovery: discovery.clone(),
            progress: progress.clone(),
            control_handler: control_handler.clone(),
        };
        let handle =
            Handle::spawn(defaults.publish.offline_queue_size, peers).map_err(thread_error)?;
        Ok(Core {
            subscriptions: subscriptions::Subscriptions::new(registry),
            callback_errors,
            handle,
            publishing: RwLock::new(publishing),
            client_id: RwLock::new(config::generate_client_id()),
            card: Mutex::new(None),
            printer,
            discovery,
            progress,
            control_handler,
            warned: Mutex::new(Vec::new()),
        })
    }

    /// Takes the whole `plugins.mqtt` settings tree (defaults merged). Connection settings
    /// that differ from the current ones make the core reconnect; the rest applies at once.
    /// With `connect=False` only the publishing settings (topics, filters) are taken: messages
    /// are formatted right and kept until a call with `connect=True`.
    #[pyo3(signature = (settings, connect=true))]
    fn configure(&self, settings: &Bound<'_, PyAny>, connect: bool) -> PyResult<()> {
        let tree: serde_json::Value =
            pythonize::depythonize(settings).map_err(|e| Error::Config(e.to_string()))?;
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
        let publishing = Arc::new(settings.publishing());
        *self.publishing.write().unwrap_or_else(|p| p.into_inner()) = publishing.clone();
        self.progress.keep_only(&if publishing.progress_active {
            vec![
                publishing.progress_topic("printing"),
                publishing.progress_topic("slicing"),
            ]
        } else {
            Vec::new()
        });
        let moved = self
            .printer
            .configure(publishing, self.online(), Instant::now());
        self.deliver(moved)?;
        self.send_discovery(self.discovery.configure(settings.discovery()))?;
        self.handle.control(Command::Birth(settings.birth_topic()));
        self.handle.control(Command::Control(settings.control()));
        self.handle.control(Command::Instance {
            base: settings.publish.base_topic.clone(),
            card: self.card.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        });
        if !connect {
            return Ok(());
        }
        self.handle.control(Command::Configure {
            conn: Box::new(
                settings.connection(&self.client_id.read().unwrap_or_else(|p| p.into_inner())),
            ),
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
        match outgoing::event(&self.publishing(), event, payload, unix_now())? {
            Some(m) => self.send(m),
            None => Ok(false),
        }
    }

    /// Print (`kind="printing"`) or slicing (`"slicing"`) progress on `<base><progressTopic>`,
    /// with the timestamp added. `queue=None` follows `publish.queueWhileOffline`.
    #[pyo3(signature = (kind, payload, queue=None))]
    fn publish_progress(
        &self,
        kind: &str,
        payload: &Bound<'_, PyAny>,
        queue: Option<bool>,
    ) -> PyResult<bool> {
        match outgoing::progress(&self.publishing(), kind, payload, queue, unix_now())? {
            Some(m) => {
                self.progress.note(&m);
                self.send(m)
            }
            None => Ok(false),
        }
    }

    /// One sample from OctoPrint's printer callback: publishes the heaters that changed
    /// enough (paced by `publish.temperatureInterval`) and keeps the sample for the state
    /// topic. Returns how many messages went out now.
    fn publish_temperatures(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let cfg = self.publishing();
        if !cfg.temperature_active && !cfg.state_active {
            return Ok(0);
        }
        let sample = outgoing::sample(data, unix_now())?;
        self.deliver(
            self.printer
                .temperatures(sample, self.online(), Instant::now()),
        )
    }

    /// A state change (OctoPrint's `PrinterStateChanged`: `state_id` and `state_string`), with
    /// the job as `printer.get_current_job()` reports it now. Publishes the state topic at once
    /// when anything changed. Returns how many messages.
    #[pyo3(signature = (state_id, state_string, job=None))]
    fn printer_state(
        &self,
        state_id: &str,
        state_string: &str,
        job: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let job = outgoing::printer_job(job)?;
        self.deliver(self.printer.state_changed(
            state_id,
            state_string,
            job,
            self.online(),
            Instant::now(),
        ))
    }

    /// OctoPrint's `Error` event: the state reports `error` until the printer connects again.
    fn printer_error(&self, error: &str) -> PyResult<usize> {
        self.deliver(self.printer.error(error, self.online(), Instant::now()))
    }

    /// OctoPrint's current data (`job` and `progress` of `on_printer_send_current_data`): a new
    /// job is published at once, new progress at most once per `publish.stateInterval`.
    #[pyo3(signature = (job=None, progress=None))]
    fn printer_data(
        &self,
        job: Option<&Bound<'_, PyAny>>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let job = outgoing::printer_job(job)?;
        let progress = outgoing::printer_progress(progress)?;
        self.deliver(
            self.printer
                .data(job, progress, self.online(), Instant::now()),
        )
    }

    /// What Home Assistant's discovery names the device after (`name`, `manufacturer`,
    /// `model`, `sw_version`, `configuration_url`, `heaters`), the node id generated for this
    /// OctoPrint (used while `homeassistant.nodeId` is unset), and the plugin that does
    /// discovery instead, when one is loaded. Publishes what changed; returns how many.
    /// `earlier`: the config topics an earlier run published (`homeassistant_status()`'s
    /// `topics`, kept by the plugin); those no longer wanted are cleared.
    #[pyo3(signature = (device, generated_node_id, blocked_by=None, earlier=Vec::new()))]
    fn homeassistant_device(
        &self,
        device: &Bound<'_, PyAny>,
        generated_node_id: &str,
        blocked_by: Option<String>,
        earlier: Vec<String>,
    ) -> PyResult<usize> {
        let device: discovery::Device = pythonize::depythonize(device)
            .map_err(|e| Error::ArgumentType(format!("device: {e}")))?;
        self.send_discovery(self.discovery.identify(
            device,
            generated_node_id.to_string(),
            blocked_by,
            earlier,
        ))
    }

    /// The plugin is being uninstalled: clears its discovery configs (empty retained
    /// payloads) and publishes none until OctoPrint restarts. Returns how many.
    fn homeassistant_uninstall(&self) -> PyResult<usize> {
        self.send_discovery(self.discovery.uninstall())
    }

    /// `{node_id, entities, off, other_plugin, topics}`: `off` is None while discovery publishes,
    /// else `"setting"`, `"no_state_topic"`, `"other_plugin"` or `"uninstalling"`.
    fn homeassistant_status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.discovery.report();
        let d = PyDict::new(py);
        d.set_item("node_id", r.node_id)?;
        d.set_item("entities", r.entities)?;
        let (off, other) = match r.off {
            None => (None, None),
            Some(discovery::Off::Setting) => (Some("setting"), None),
            Some(discovery::Off::NoStateTopic) => (Some("no_state_topic"), None),
            Some(discovery::Off::OtherPlugin(p)) => (Some("other_plugin"), Some(p)),
            Some(discovery::Off::Uninstalling) => (Some("uninstalling"), None),
        };
        d.set_item("off", off)?;
        d.set_item("other_plugin", other)?;
        d.set_item("topics", r.topics)?;
        Ok(d)
    }

    /// This OctoPrint's stable instance id (made once by the plugin, see identity.py), its
    /// host name and the plugin's version: the client id while `client.client_id` is unset
    /// becomes `octoprint-mqtt-<id>`, and `<base>mqtt/instance` announces us. Call before
    /// `configure(..., connect=True)`.
    fn identify(&self, instance_id: &str, host: &str, version: &str) -> PyResult<()> {
        let client_id = format!("octoprint-mqtt-{instance_id}");
        if instance_id.is_empty() || client_id.len() > 65_535 {
            return Err(
                Error::ArgumentValue("instance_id must be 1 to 65,520 bytes".into()).into(),
            );
        }
        *self.client_id.write().unwrap_or_else(|p| p.into_inner()) = client_id;
        let card = instance::Card {
            id: instance_id.to_string(),
            host: host.to_string(),
            version: version.to_string(),
            since: unix_now(),
        };
        *self.card.lock().unwrap_or_else(|p| p.into_inner()) = Some(card.clone());
        self.handle.control(Command::Instance {
            base: self.publishing().base_topic.clone(),
            card: Some(card),
        });
        Ok(())
    }

    /// The client id used while `client.client_id` is unset.
    #[getter]
    fn default_client_id(&self) -> String {
        self.client_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Remote control's handler: `handler(command, args) -> (ok, result_or_reason)`, called
    /// on a thread of its own for each accepted request, one at a time (docs/behaviour.md
    /// §5.11 gives each command's `args`). None removes it.
    fn set_control_handler(&self, handler: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let new = match handler {
            None => None,
            Some(h) if h.is_callable() => Some(h.clone().unbind()),
            Some(_) => {
                return Err(
                    Error::ArgumentType("the control handler must be callable".into()).into(),
                )
            }
        };
        let old = std::mem::replace(
            &mut *self
                .control_handler
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            new,
        );
        // Dropped after the lock is released: a Python `__del__` may run.
        drop(old);
        Ok(())
    }

    /// File metadata on `<base><metadataTopic>` for each key of `publish.metadataKeys`; with
    /// `metadata=None` an empty payload per key. Returns how many.
    #[pyo3(signature = (metadata=None))]
    fn publish_metadata(&self, metadata: Option<&Bound<'_, PyAny>>) -> PyResult<usize> {
        self.send_all(outgoing::metadata(&self.publishing(), metadata)?)
    }

    /// `mqtt_publish`. Returns whether the message was accepted (sent, or queued because
    /// `allow_queueing`); False when offline without queueing or over the broker's limit.
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
        let call = outgoing::HelperCall {
            topic,
            payload,
            retained,
            qos,
            allow_queueing,
            raw_data,
        };
        self.send(outgoing::helper(&self.publishing(), call)?)
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
        let topic = outgoing::topic_text(topic)?;
        topic::validate_filter(topic)?;
        let qos = Qos::try_from(qos)?;
        if !callback.is_callable() {
            return Err(Error::ArgumentType("callback must be callable".into()).into());
        }
        let args = match args {
            None => PyTuple::empty(py),
            Some(a) => a
                .try_iter()
                .and_then(|it| it.collect::<PyResult<Vec<_>>>())
                .and_then(|items| PyTuple::new(py, items))
                .map_err(|_| Error::ArgumentType("args must be a tuple or list".into()))?,
        };
        let handler = Handler {
            callback: callback.clone().unbind(),
            args: args.unbind(),
            kwargs: kwargs.map(|k| k.copy()).transpose()?.map(Bound::unbind),
        };
        self.subscriptions
            .subscribe(py, topic, qos, handler, |c| self.handle.control(c))
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
        self.subscriptions
            .unsubscribe(py, callback, topic, |c| self.handle.control(c));
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
        d.set_item("other_instances", pythonize::pythonize(py, &s.others)?)?;
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

/// The print progress in whole percent as the progress and state topics give it, from
/// OctoPrint's `progress` dict.
#[pyfunction]
fn progress_percent(progress: &Bound<'_, PyAny>) -> PyResult<i64> {
    Ok(outgoing::printer_progress(Some(progress))?.map_or(0, |p| p.percent))
}

/// Raises ValueError when `topic` cannot be published to.
#[pyfunction]
fn validate_topic(topic: &Bound<'_, PyString>) -> PyResult<()> {
    Ok(topic::validate_topic(outgoing::topic_text(topic)?)?)
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
    let tree: serde_json::Value =
        pythonize::depythonize(settings).map_err(|e| Error::Config(e.to_string()))?;
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
    Ok(pythonize::pythonize(py, &config::default_tree())?)
}

/// The field rules as data, `[{path, kind, ...}]`: the settings page checks with them.
#[pyfunction]
fn setting_rules(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    Ok(pythonize::pythonize(py, &rules::page_rules())?)
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
        pythonize::depythonize::<serde_json::Value>(v).map_err(|e| Error::Config(e.to_string()))
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
    m.add_function(wrap_pyfunction!(progress_percent, m)?)?;
    m.add_function(wrap_pyfunction!(test_connection, m)?)?;
    m.add_function(wrap_pyfunction!(same_broker, m)?)?;
    m.add_function(wrap_pyfunction!(default_settings, m)?)?;
    m.add_function(wrap_pyfunction!(setting_rules, m)?)?;
    m.add_function(wrap_pyfunction!(settings_problems, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
