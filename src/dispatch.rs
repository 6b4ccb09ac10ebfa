//! The thread that runs subscription callbacks. Received messages arrive through a bounded
//! channel from the core's thread, so a slow callback delays only other callbacks, never the
//! connection (keepalive, publishing).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::message::Incoming;
use crate::registry::Registry;

/// What `mqtt_subscribe` registered besides the filter.
pub struct Handler {
    pub callback: Py<PyAny>,
    pub args: Py<PyTuple>,
    /// Copied at registration and never handed out: callbacks get a fresh dict per call.
    pub kwargs: Option<Py<PyDict>>,
}

impl Handler {
    fn clone_ref(&self, py: Python<'_>) -> Handler {
        Handler {
            callback: self.callback.clone_ref(py),
            args: self.args.clone_ref(py),
            kwargs: self.kwargs.as_ref().map(|k| k.clone_ref(py)),
        }
    }
}

/// Messages delivered per hold of the GIL, at most.
const BATCH: usize = 256;
/// Payload bytes waiting for the callbacks, at most (one message always fits): the message
/// bound alone would let ten thousand subscribed camera snapshots pile up.
pub const BYTES_MAX: usize = 64 << 20;

/// The core's side of the callbacks' queue: bounded in messages and in payload bytes.
pub struct Inbox {
    tx: SyncSender<Incoming>,
    waiting: Arc<AtomicUsize>,
}

/// The callbacks' thread's side.
pub struct Outbox {
    rx: Receiver<Incoming>,
    waiting: Arc<AtomicUsize>,
}

pub fn channel(capacity: usize) -> (Inbox, Outbox) {
    let (tx, rx) = sync_channel(capacity);
    let waiting = Arc::new(AtomicUsize::new(0));
    (
        Inbox {
            tx,
            waiting: waiting.clone(),
        },
        Outbox { rx, waiting },
    )
}

impl Inbox {
    /// Never waits; gives the message back when the queue is full. After the callbacks'
    /// thread is gone (at stop) messages are dropped quietly.
    pub fn try_send(&self, m: Incoming) -> Result<(), Incoming> {
        let len = m.payload.len();
        let before = self.waiting.fetch_add(len, Relaxed);
        if before > 0 && before + len > BYTES_MAX {
            self.waiting.fetch_sub(len, Relaxed);
            return Err(m);
        }
        match self.tx.try_send(m) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(m)) => {
                self.waiting.fetch_sub(len, Relaxed);
                Err(m)
            }
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }
}

pub type SharedRegistry = Arc<Mutex<Registry<Handler>>>;

pub fn spawn(outbox: Outbox, registry: SharedRegistry) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("mqtt-callbacks".into())
        .spawn(move || {
            // Ends when the core's thread drops its sender (at stop).
            let Outbox {
                rx: messages,
                waiting,
            } = outbox;
            let done = |m: &Incoming| waiting.fetch_sub(m.payload.len(), Relaxed);
            while let Ok(first) = messages.recv() {
                // What else is waiting goes out under the same hold of the GIL: taking it
                // for every message halved the rate callbacks can be called at. Bounded, so
                // that OctoPrint's threads get the GIL between batches.
                Python::attach(|py| {
                    deliver(py, &registry, &first);
                    done(&first);
                    for m in messages.try_iter().take(BATCH) {
                        deliver(py, &registry, &m);
                        done(&m);
                    }
                });
            }
        })
}

fn deliver(py: Python<'_>, registry: &SharedRegistry, m: &Incoming) {
    // Copy the targets out first: callbacks may subscribe or unsubscribe, and no Python code
    // may run while the registry's lock is held (another thread holding the GIL may wait on it).
    let targets: Vec<Handler> = {
        let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
        reg.matching(&m.topic)
            .map(|e| e.handler.clone_ref(py))
            .collect()
    };
    if targets.is_empty() {
        return;
    }
    let topic = PyString::new(py, &m.topic);
    let payload = PyBytes::new(py, &m.payload);
    for handler in targets {
        if let Err(err) = call(py, &handler, &topic, &payload, m) {
            log_failure(py, &handler.callback, &m.topic, err);
        }
    }
}

/// `callback(topic, payload, *args, retained=..., qos=..., **kwargs)`
fn call(
    py: Python<'_>,
    handler: &Handler,
    topic: &Bound<'_, PyString>,
    payload: &Bound<'_, PyBytes>,
    m: &Incoming,
) -> PyResult<()> {
    let mut positional = vec![topic.clone().into_any(), payload.clone().into_any()];
    positional.extend(handler.args.bind(py).iter());
    let positional = PyTuple::new(py, positional)?;
    let named = PyDict::new(py);
    named.set_item("retained", m.retain)?;
    named.set_item("qos", m.qos)?;
    if let Some(kwargs) = &handler.kwargs {
        named.update(kwargs.bind(py).as_mapping())?;
    }
    handler.callback.bind(py).call(positional, Some(&named))?;
    Ok(())
}

/// Through Python's logging with the traceback, under the plugin's logger.
fn log_failure(py: Python<'_>, callback: &Py<PyAny>, topic: &str, err: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", (crate::logging::TARGET,))?;
        let kwargs = PyDict::new(py);
        // into_value() keeps the traceback attached to the exception.
        kwargs.set_item("exc_info", err.clone_ref(py).into_value(py))?;
        logger.call_method(
            "error",
            (
                "A subscription callback %r raised an exception for a message on %r; the other callbacks still run",
                callback.bind(py),
                topic,
            ),
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if logged.is_err() {
        err.print(py);
    }
}
