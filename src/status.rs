//! What the Python side can read at any time without asking the core's thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
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
    /// Bumped on every change of the fields above, so a watcher can wait for the next one.
    pub version: u64,
}

#[derive(Debug, Default)]
pub struct Counters {
    /// Written to the socket (QoS 0) or acknowledged by the broker (QoS 1 and 2).
    pub published: AtomicU64,
    /// Accepted while offline and kept for later.
    pub queued: AtomicU64,
    /// Lost: offline queue overflow, or the core could not keep up.
    pub dropped: AtomicU64,
    /// Refused while offline because the sender did not allow queueing.
    pub refused: AtomicU64,
    pub received: AtomicU64,
    /// Received, but dropped because the callbacks' queue was full.
    pub dispatch_dropped: AtomicU64,
    pub reconnects: AtomicU64,
    pub queue_depth: AtomicU64,
}

#[derive(Debug)]
pub struct Shared {
    pub connected: AtomicBool,
    /// Whether messages sent now would be kept until a connection exists: true before the
    /// first settings and while a broker is configured, false when idle or stopped.
    pub keeps_offline: AtomicBool,
    pub counters: Counters,
    snapshot: Mutex<Snapshot>,
    changed: Condvar,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            connected: AtomicBool::new(false),
            keeps_offline: AtomicBool::new(true),
            counters: Counters::default(),
            snapshot: Mutex::new(Snapshot {
                state: State::Starting,
                broker: None,
                since: SystemTime::now(),
                last_error: None,
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
