//! What the Python side can read at any time without asking the core's thread.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the first settings.
    Starting,
    /// No broker configured.
    Idle,
    Connecting,
    Connected,
    /// The last attempt failed; the next one is scheduled.
    BackingOff,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::BackingOff => "backing_off",
            State::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: State,
    pub broker: Option<String>,
    pub since: SystemTime,
    pub last_error: Option<String>,
    /// Other OctoPrints seen publishing under our base topic (instance.rs).
    pub others: Vec<crate::instance::Other>,
    /// Bumped on every change of the fields above, so a watcher can wait for the next one.
    pub version: u64,
}

#[derive(Debug, Default)]
pub struct Counters {
    /// Written to the socket (QoS 0) or acknowledged by the broker (QoS 1 and 2).
    pub published: AtomicU64,
    /// Accepted while offline and kept for later.
    pub queued: AtomicU64,
    /// Lost: queue overflow, the core could not keep up, or QoS 0 messages written to a
    /// connection that then went silent.
    pub dropped: AtomicU64,
    /// Refused by the broker, or over the packet size it takes: dropped, never sent again.
    pub rejected: AtomicU64,
    /// Refused while offline because the sender did not allow queueing.
    pub refused: AtomicU64,
    pub received: AtomicU64,
    /// Received, but dropped because the callbacks' queue was full.
    pub dispatch_dropped: AtomicU64,
    pub reconnects: AtomicU64,
    /// Not delivered yet: queued, handed to the client, or waiting for the broker's ack.
    pub queue_depth: AtomicU64,
}

/// Distinct keys seen at most this many times remembered: past it the memory starts afresh
/// (a few lines logged twice, instead of memory growing with every new topic).
const TOLD_MAX: usize = 256;

#[derive(Debug)]
pub struct Shared {
    pub connected: AtomicBool,
    /// Whether messages sent now would be kept until a connection exists: true before the
    /// first settings and while a broker is configured, false when idle or stopped.
    pub keeps_offline: AtomicBool,
    pub counters: Counters,
    /// Bytes of the messages waiting in the command channel (see `runner.rs`).
    pub commands_bytes: AtomicUsize,
    /// The largest packet the broker takes: what its CONNACK announced (MQTT 5) or what its
    /// dropping the connection taught (see `runner.rs`); `usize::MAX` while unknown.
    max_packet: AtomicUsize,
    /// Messages refused for their size, by topic, already logged.
    told: Mutex<HashSet<String>>,
    snapshot: Mutex<Snapshot>,
    changed: Condvar,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            connected: AtomicBool::new(false),
            keeps_offline: AtomicBool::new(true),
            counters: Counters::default(),
            commands_bytes: AtomicUsize::new(0),
            max_packet: AtomicUsize::new(usize::MAX),
            told: Mutex::new(HashSet::new()),
            snapshot: Mutex::new(Snapshot {
                state: State::Starting,
                broker: None,
                since: SystemTime::now(),
                last_error: None,
                others: Vec::new(),
                version: 1,
            }),
            changed: Condvar::new(),
        }
    }
}

impl Shared {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    pub fn keeps_offline(&self) -> bool {
        self.keeps_offline.load(Relaxed)
    }

    /// Whether a message is taken (see [`crate::runner::Handle::offer`]): not over the
    /// broker's packet limit (else `rejected`), and connected or allowed to wait in the offline
    /// queue (else `refused`). Asked by the callers' threads and by the core's own timer.
    pub fn admits(&self, m: &crate::message::Message) -> bool {
        if self.refuse_too_large(m) {
            return false;
        }
        if !(self.is_connected() || (m.queue_offline && self.keeps_offline())) {
            Self::add(&self.counters.refused, 1);
            return false;
        }
        true
    }

    /// The one rule both threads ask: does this message fit the broker's packet limit?
    pub fn fits(&self, m: &crate::message::Message) -> bool {
        m.packet_size() <= self.max_packet.load(Relaxed)
    }

    pub fn max_packet(&self) -> Option<usize> {
        Some(self.max_packet.load(Relaxed)).filter(|&m| m != usize::MAX)
    }

    pub fn set_max_packet(&self, max: Option<usize>) {
        self.max_packet.store(max.unwrap_or(usize::MAX), Relaxed);
    }

    /// True the first time a topic is refused for its size: a camera publishing a snapshot
    /// every ten seconds gets one log line, not one per snapshot.
    pub fn first_refusal(&self, topic: &str) -> bool {
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        if told.contains(topic) {
            return false;
        }
        if told.len() >= TOLD_MAX {
            told.clear();
        }
        told.insert(topic.to_owned());
        true
    }

    /// Refuses a message over the broker's packet limit: counted as rejected, logged the
    /// first time for its topic. True when refused. Both the helpers (before queueing) and the
    /// core's thread (for what was queued before the limit was known) ask this.
    pub fn refuse_too_large(&self, m: &crate::message::Message) -> bool {
        let Some(max) = self.max_packet().filter(|&max| m.packet_size() > max) else {
            return false;
        };
        Self::add(&self.counters.rejected, 1);
        if self.first_refusal(&m.topic) {
            warn!(
                "Not sending the {}-byte message on {}: the MQTT broker takes packets of at most {max} bytes (announced by it, or learnt when it dropped the connection after a larger one); dropped (not logged again for this topic)",
                m.packet_size(),
                shown(&m.topic)
            );
        }
        true
    }

    /// A new broker: what the last one refused says nothing about this one.
    pub fn forget_refusals(&self) {
        self.set_max_packet(None);
        self.told.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the state; `since` moves only when the state really changes.
    pub fn set(&self, state: State, broker: Option<String>, last_error: Option<String>) {
        self.connected.store(state == State::Connected, Relaxed);
        let keeps = matches!(
            state,
            State::Starting | State::Connecting | State::Connected | State::BackingOff
        );
        self.keeps_offline.store(keeps, Relaxed);
        let mut s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let before = (s.state, s.broker.clone(), s.last_error.clone());
        if s.state != state {
            s.since = SystemTime::now();
        }
        s.state = state;
        s.broker = broker;
        if last_error.is_some() {
            s.last_error = last_error;
        }
        if before != (s.state, s.broker.clone(), s.last_error.clone()) {
            s.version += 1;
            self.changed.notify_all();
        }
    }

    /// Another OctoPrint publishes under our base topic.
    pub fn add_other(&self, other: crate::instance::Other) {
        let mut s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        s.others.push(other);
        s.version += 1;
        self.changed.notify_all();
    }

    /// Waits until the snapshot's version differs from `seen` or `timeout` passed, and
    /// returns the current version. Lets the Python side push status changes the moment they
    /// happen without asking the core's thread anything.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> u64 {
        let s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.version == seen)
            .unwrap_or_else(|p| p.into_inner());
        s.version
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// A topic for a log line: long ones cut (a 60 KB topic helps nobody).
pub fn shown(topic: &str) -> String {
    let mut s: String = topic.chars().take(80).collect();
    if s.len() < topic.len() {
        s.push('…');
    }
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_state_change_wakes_a_waiter_and_a_repeat_does_not() {
        let shared = Arc::new(Shared::default());
        let v = shared.wait_change(0, Duration::ZERO);
        assert_eq!(shared.wait_change(v, Duration::from_millis(10)), v);
        let waiter = {
            let shared = shared.clone();
            std::thread::spawn(move || shared.wait_change(v, Duration::from_secs(10)))
        };
        shared.set(State::Connecting, Some("h:1".into()), None);
        assert_eq!(waiter.join().unwrap(), v + 1);
        shared.set(State::Connecting, Some("h:1".into()), None);
        assert_eq!(shared.wait_change(v + 1, Duration::from_millis(10)), v + 1);
    }
}
