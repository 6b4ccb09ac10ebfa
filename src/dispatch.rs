//! The thread that runs subscription callbacks. Received messages arrive through a bounded
//! channel from the core's thread, so a slow callback delays only other callbacks, never the
//! connection (keepalive, publishing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// Exceptions raised by callbacks, all of them (`callback_errors` in the status).
pub type ErrorCount = Arc<AtomicU64>;

pub fn spawn(
    outbox: Outbox,
    registry: SharedRegistry,
    errors: ErrorCount,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("mqtt-callbacks".into())
        .spawn(move || {
            // Ends when the core's thread drops its sender (at stop).
            let Outbox {
                rx: messages,
                waiting,
            } = outbox;
            let done = |m: &Incoming| waiting.fetch_sub(m.payload.len(), Relaxed);
            let mut failures = Failures::default();
            loop {
                // Woken for a summary that falls due while no message comes.
                let first = match failures.next_due() {
                    None => match messages.recv() {
                        Ok(m) => Some(m),
                        Err(_) => break,
                    },
                    Some(due) => {
                        match messages.recv_timeout(due.saturating_duration_since(Instant::now())) {
                            Ok(m) => Some(m),
                            Err(RecvTimeoutError::Timeout) => None,
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                };
                let mut run = Dispatch {
                    registry: &registry,
                    errors: &errors,
                    failures: &mut failures,
                };
                // What else is waiting goes out under the same hold of the GIL: taking it
                // for every message halved the rate callbacks can be called at. Bounded, so
                // that OctoPrint's threads get the GIL between batches.
                Python::attach(|py| {
                    if let Some(first) = first {
                        run.deliver(py, &first);
                        done(&first);
                        for m in messages.try_iter().take(BATCH) {
                            run.deliver(py, &m);
                            done(&m);
                        }
                    }
                    for summary in run.failures.due(Instant::now()) {
                        log_summary(py, &summary);
                    }
                });
            }
        })
}

struct Dispatch<'a> {
    registry: &'a SharedRegistry,
    errors: &'a ErrorCount,
    failures: &'a mut Failures,
}

impl Dispatch<'_> {
    fn deliver(&mut self, py: Python<'_>, m: &Incoming) {
        // Copy the targets out first: callbacks may subscribe or unsubscribe, and no Python
        // code may run while the registry's lock is held (another thread holding the GIL may
        // wait on it).
        let targets: Vec<(u64, Handler)> = {
            let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            reg.matching(&m.topic)
                .map(|e| (e.id, e.handler.clone_ref(py)))
                .collect()
        };
        if targets.is_empty() {
            return;
        }
        let topic = PyString::new(py, &m.topic);
        let payload = PyBytes::new(py, &m.payload);
        for (id, handler) in targets {
            match call(py, &handler, &topic, &payload, m) {
                Ok(()) if self.failures.is_empty() => {}
                Ok(()) => {
                    if let Some(summary) = self.failures.succeeded(id, Instant::now()) {
                        log_summary(py, &summary);
                    }
                }
                Err(err) => self.failed(py, id, &handler.callback, &m.topic, err),
            }
        }
    }

    fn failed(&mut self, py: Python<'_>, id: u64, callback: &Py<PyAny>, topic: &str, err: PyErr) {
        self.errors.fetch_add(1, Relaxed);
        let now = Instant::now();
        if self.failures.known(id) {
            if let Some(summary) = self.failures.failed_again(id, now, describe(py, &err)) {
                log_summary(py, &summary);
            }
            return;
        }
        let filter = {
            let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
            let filter = reg.entries().find(|e| e.id == id).map(|e| e.filter.clone());
            filter.unwrap_or_else(|| topic.to_owned())
        };
        let name = callback
            .bind(py)
            .repr()
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "<callback>".into());
        self.failures.failed_first(id, now, name, filter);
        log_failure(py, callback, topic, err);
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
        let logger = plugin_logger(py)?;
        let kwargs = PyDict::new(py);
        // into_value() keeps the traceback attached to the exception.
        kwargs.set_item("exc_info", err.clone_ref(py).into_value(py))?;
        logger.call_method(
            "error",
            (
                "A subscription callback %r raised an exception for a message on %r; the other callbacks still run (its further failures are counted and summarised)",
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

fn plugin_logger(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import("logging")?
        .call_method1("getLogger", (crate::logging::TARGET,))
}

/// `ExcType: message`, short enough for one log line.
fn describe(py: Python<'_>, err: &PyErr) -> String {
    let kind = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = err
        .value(py)
        .str()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut text = if message.is_empty() {
        kind
    } else {
        format!("{kind}: {message}")
    };
    if let Some((cut, _)) = text.char_indices().nth(DESCRIBE_MAX) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

const DESCRIBE_MAX: usize = 200;

fn log_summary(py: Python<'_>, s: &Summary) {
    let secs = s.period.as_secs_f64();
    let period = if secs < 10.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    };
    let state = if s.recovered {
        "its latest call succeeded"
    } else {
        "it is still failing"
    };
    let logged = plugin_logger(py).and_then(|logger| {
        logger.call_method1(
            "error",
            (
                "A subscription callback %s on %r failed %d more times in the last %s (last: %s); %s",
                &s.callback,
                &s.filter,
                s.count,
                period,
                &s.last,
                state,
            ),
        )
    });
    if let Err(err) = logged {
        err.print(py);
    }
}

/// Between two log lines about one failing callback, at least this long.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// The callbacks that raised, by subscription: after the first failure's traceback, further
/// failures are counted and summarised (at most once a minute, and as soon as the callback
/// first runs without error again) instead of logging a traceback for each message.
#[derive(Default)]
struct Failures {
    by_id: HashMap<u64, Failing>,
}

struct Failing {
    callback: String,
    filter: String,
    /// When the last line about it (the traceback or a summary) was logged.
    logged_at: Instant,
    /// Failures since then.
    unreported: u64,
    last: String,
    summaries: u64,
}

#[derive(Debug, PartialEq)]
struct Summary {
    callback: String,
    filter: String,
    count: u64,
    period: Duration,
    last: String,
    recovered: bool,
}

impl Failing {
    fn summary(&mut self, now: Instant, recovered: bool) -> Summary {
        let summary = Summary {
            callback: self.callback.clone(),
            filter: self.filter.clone(),
            count: self.unreported,
            period: now.saturating_duration_since(self.logged_at),
            last: self.last.clone(),
            recovered,
        };
        self.unreported = 0;
        self.logged_at = now;
        self.summaries += 1;
        summary
    }

    fn quiet_since(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.logged_at) >= SUMMARY_INTERVAL
    }
}

impl Failures {
    fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn known(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// A first failure: the caller logs its traceback.
    fn failed_first(&mut self, id: u64, now: Instant, callback: String, filter: String) {
        self.by_id.insert(
            id,
            Failing {
                callback,
                filter,
                logged_at: now,
                unreported: 0,
                last: String::new(),
                summaries: 0,
            },
        );
    }

    fn failed_again(&mut self, id: u64, now: Instant, last: String) -> Option<Summary> {
        let f = self.by_id.get_mut(&id)?;
        f.unreported += 1;
        f.last = last;
        f.quiet_since(now).then(|| f.summary(now, false))
    }

    fn succeeded(&mut self, id: u64, now: Instant) -> Option<Summary> {
        let f = self.by_id.get_mut(&id)?;
        if f.unreported == 0 {
            // Healthy for a minute: a failure after this is news again, with its traceback.
            if f.quiet_since(now) {
                self.by_id.remove(&id);
            }
            return None;
        }
        // The first recovery is told at once; one that keeps alternating, once a minute.
        (f.summaries == 0 || f.quiet_since(now)).then(|| f.summary(now, true))
    }

    /// When the next summary is due, if one is pending.
    fn next_due(&self) -> Option<Instant> {
        self.by_id
            .values()
            .filter(|f| f.unreported > 0)
            .map(|f| f.logged_at + SUMMARY_INTERVAL)
            .min()
    }

    /// The summaries due at `now` (failures no message has reported since a minute); forgets
    /// the callbacks that have been quiet for that long.
    fn due(&mut self, now: Instant) -> Vec<Summary> {
        let mut due = Vec::new();
        self.by_id.retain(|_, f| {
            if !f.quiet_since(now) {
                return true;
            }
            if f.unreported == 0 {
                return false;
            }
            due.push(f.summary(now, false));
            true
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = SUMMARY_INTERVAL;

    fn failing(failures: &mut Failures, id: u64, now: Instant) {
        failures.failed_first(id, now, format!("cb{id}"), "f/#".into());
    }

    #[test]
    fn failures_are_counted_then_summarised_once_a_minute() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        failing(&mut f, 1, t0);
        for i in 1..=499 {
            let at = t0 + Duration::from_millis(i);
            assert_eq!(f.failed_again(1, at, format!("E: {i}")), None);
        }
        assert_eq!(f.next_due(), Some(t0 + MINUTE));
        assert!(f.due(t0 + MINUTE / 2).is_empty());
        let s = f.failed_again(1, t0 + MINUTE, "E: last".into()).unwrap();
        assert_eq!(
            (s.count, s.last.as_str(), s.recovered),
            (500, "E: last", false)
        );
        assert_eq!((s.callback.as_str(), s.filter.as_str()), ("cb1", "f/#"));
        assert_eq!(s.period, MINUTE);
        assert_eq!(f.next_due(), None, "nothing unreported");
        // Still failing a minute later: due without any message.
        f.failed_again(1, t0 + MINUTE + MINUTE / 2, "E: x".into());
        assert!(f.due(t0 + MINUTE * 3 / 2).is_empty());
        let due = f.due(t0 + MINUTE * 2);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].count, due[0].recovered), (1, false));
    }

    #[test]
    fn the_first_recovery_is_summarised_at_once_later_ones_once_a_minute() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        failing(&mut f, 7, t0);
        // A success right after the traceback: nothing to summarise.
        assert_eq!(f.succeeded(7, t0), None);
        f.failed_again(7, t0, "E".into());
        f.failed_again(7, t0, "E".into());
        let s = f.succeeded(7, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!((s.count, s.recovered), (2, true));
        // Alternating failure and success: no line per message.
        for i in 2..50 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(f.failed_again(7, at, "E".into()), None);
            assert_eq!(f.succeeded(7, at), None);
        }
        let s = f.succeeded(7, t0 + Duration::from_secs(1) + MINUTE);
        assert_eq!(s.map(|s| s.count), Some(48));
        // Healthy for a minute: forgotten, so a new failure gets a traceback again.
        assert_eq!(
            f.succeeded(7, t0 + Duration::from_secs(1) + MINUTE * 2),
            None
        );
        assert!(!f.known(7));
        assert!(f.is_empty());
    }

    #[test]
    fn quiet_callbacks_are_forgotten_and_others_kept() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        failing(&mut f, 1, t0);
        failing(&mut f, 2, t0 + MINUTE / 2);
        assert!(f.due(t0 + MINUTE).is_empty());
        assert!(!f.known(1) && f.known(2));
        assert_eq!(f.failed_again(3, t0, "E".into()), None, "unknown id");
    }
}
