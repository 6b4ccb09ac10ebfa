//! Every message on its way to the broker, in one owner: waiting in the bounded queue, handed
//! to rumqttc and not yet written, written and not yet acknowledged (QoS 1/2). It keeps their
//! byte counts and bounds, the drops those bounds cost (reported per episode) and the depth
//! the status shows. The runner decides when to hand, re-send or give up; this only keeps
//! the books. rumqttc's own replay is not used: it cannot drop a message the broker refuses,
//! nor keep the offline queue's bounds.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::message::{Identity, Message, Qos};
use crate::queue::{OfflineQueue, BYTES_MAX};
use crate::status::Shared;

/// While connected, messages waiting for the client are in transit, not offline: a burst may
/// exceed the offline bound by this much before anything is dropped.
pub const IN_TRANSIT_MIN: usize = 100_000;
/// Bytes (topics and payloads) handed to the client and not yet written, at most (one
/// message always goes): big payloads (camera snapshots) would otherwise fill the client's
/// whole request buffer, and a clean close must get its goodbye past them within the close
/// budget.
const HANDED_BYTES_MAX: usize = 1 << 20;
/// Bytes handed or written and not yet acknowledged, at most (one message always goes): a
/// frozen broker that keeps TCP open must not collect the whole queue in transit.
const IN_FLIGHT_BYTES_MAX: usize = 16 << 20;

/// What a write reported: a QoS 0 message is done (given back), a QoS 1/2 one waits for its
/// acknowledgement.
pub enum Written<'a> {
    Done(Message),
    Kept(&'a Message),
}

pub struct Delivery {
    shared: Arc<Shared>,
    /// Waiting for the client (offline, or its request buffer is full).
    waiting: OfflineQueue,
    /// Handed to rumqttc, not yet written to the socket, in order.
    handed: VecDeque<Message>,
    handed_bytes: usize,
    /// QoS 1/2: written, not yet acknowledged, by packet id, in order.
    unacked: VecDeque<(u16, Message, Instant)>,
    /// Bytes of `handed` and `unacked` together.
    in_flight_bytes: usize,
    /// `publish.offlineQueueSize`.
    offline_capacity: usize,
    /// Messages dropped for want of room since the drops began; reported when they end.
    overflow: Option<Overflow>,
}

struct Overflow {
    /// Dropped while connected (a burst) or offline (an outage).
    connected: bool,
    count: u64,
}

impl Delivery {
    pub fn new(shared: Arc<Shared>, offline_capacity: usize) -> Self {
        Delivery {
            shared,
            waiting: OfflineQueue::new(offline_capacity),
            handed: VecDeque::new(),
            handed_bytes: 0,
            unacked: VecDeque::new(),
            in_flight_bytes: 0,
            offline_capacity,
            overflow: None,
        }
    }

    pub fn push(&mut self, m: Message, connected: bool) {
        let dropped = self.waiting.push_back(m);
        self.note_drops(dropped, connected);
    }

    /// Puts a message in front of everything waiting (the status message at connect); room is
    /// made by dropping the oldest of the others, never it.
    pub fn push_front(&mut self, m: Message, connected: bool) {
        let dropped = self.waiting.push_first(m);
        self.note_drops(dropped, connected);
    }

    /// The queue's bound: the offline bound, raised while connected (see IN_TRANSIT_MIN).
    pub fn set_bound(&mut self, offline_capacity: Option<usize>, connected: bool) {
        if let Some(c) = offline_capacity {
            self.offline_capacity = c;
        }
        let bound = if connected {
            self.offline_capacity.max(IN_TRANSIT_MIN)
        } else {
            self.offline_capacity
        };
        let dropped = self.waiting.set_capacity(bound);
        self.note_drops(dropped, connected);
    }

    /// The next waiting message, if the in-transit bounds let another go.
    pub fn next_to_hand(&self) -> Option<&Message> {
        let m = self.waiting.front()?;
        let cost = m.cost();
        let over_handed = !self.handed.is_empty() && self.handed_bytes + cost > HANDED_BYTES_MAX;
        let over_in_flight =
            !self.in_transit_is_empty() && self.in_flight_bytes + cost > IN_FLIGHT_BYTES_MAX;
        (!over_handed && !over_in_flight).then_some(m)
    }

    /// Takes the next waiting message out (one that will not be sent).
    pub fn pop_waiting(&mut self) -> Option<Message> {
        self.waiting.pop_front()
    }

    /// The next waiting message went to the client.
    pub fn hand_next(&mut self) {
        if let Some(m) = self.waiting.pop_front() {
            self.hand(m);
        }
    }

    /// A message that did not wait in the queue (the goodbye) went to the client.
    pub fn hand(&mut self, m: Message) {
        self.handed_bytes += m.cost();
        self.in_flight_bytes += m.cost();
        self.handed.push_back(m);
    }

    /// The oldest handed message reached the socket.
    pub fn written(&mut self, pkid: u16) -> Option<Written<'_>> {
        let m = self.handed.pop_front()?;
        self.handed_bytes -= m.cost();
        if m.qos == Qos::AtMostOnce {
            self.in_flight_bytes -= m.cost();
            return Some(Written::Done(m));
        }
        self.unacked.push_back((pkid, m, Instant::now()));
        self.unacked.back().map(|(_, m, _)| Written::Kept(m))
    }

    /// The broker acknowledged (or refused) this packet id.
    pub fn take_unacked(&mut self, pkid: u16) -> Option<Message> {
        self.take_unacked_where(|p, _| p == pkid)
    }

    fn take_unacked_where(&mut self, pick: impl Fn(u16, &Message) -> bool) -> Option<Message> {
        let i = self.unacked.iter().position(|(p, m, _)| pick(*p, m))?;
        let (_, m, _) = self.unacked.remove(i)?;
        self.in_flight_bytes -= m.cost();
        Some(m)
    }

    pub fn is_unacked(&self, pkid: u16) -> bool {
        self.unacked.iter().any(|(p, _, _)| *p == pkid)
    }

    pub fn oldest_unacked(&self) -> Option<u16> {
        self.unacked.front().map(|(p, _, _)| *p)
    }

    pub fn newest_unacked(&self) -> Option<u16> {
        self.unacked.back().map(|(p, _, _)| *p)
    }

    /// QoS 1/2 messages written no longer than `within` ago and not acknowledged, oldest first.
    pub fn unacked_since(&self, within: Duration) -> impl Iterator<Item = &Message> {
        self.unacked
            .iter()
            .filter(move |(_, _, at)| at.elapsed() <= within)
            .map(|(_, m, _)| m)
    }

    /// Takes that unacknowledged message out (it will not be sent again).
    pub fn take_unacked_message(&mut self, id: &Identity) -> Option<Message> {
        self.take_unacked_where(|_, m| m.is(id))
    }

    /// The message being written when the connection broke (rumqttc never reported it).
    pub fn handed_front(&self) -> Option<&Message> {
        self.handed.front()
    }

    pub fn take_handed_front(&mut self) -> Option<Message> {
        let m = self.handed.pop_front()?;
        self.handed_bytes -= m.cost();
        self.in_flight_bytes -= m.cost();
        Some(m)
    }

    pub fn in_transit_is_empty(&self) -> bool {
        self.handed.is_empty() && self.unacked.is_empty()
    }

    pub fn waiting_is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Drops everything waiting (no broker any more); returns how many.
    pub fn clear_waiting(&mut self) -> usize {
        let n = self.waiting.len();
        while self.waiting.pop_front().is_some() {}
        n
    }

    /// Messages the client had not finished with go back in front of the queue, oldest first,
    /// but those `keep` turns down.
    pub fn requeue_in_flight(&mut self, keep: impl Fn(&Message) -> bool, connected: bool) {
        self.handed_bytes = 0;
        self.in_flight_bytes = 0;
        let back: Vec<Message> = self
            .unacked
            .drain(..)
            .map(|(_, m, _)| m)
            .chain(self.handed.drain(..))
            .filter(|m| keep(m))
            .collect();
        let dropped = self.waiting.requeue_front(back.into_iter());
        self.note_drops(dropped, connected);
    }

    /// Everything not delivered yet, for the status: waiting and in transit.
    pub fn update_depth(&self) {
        let depth = self.waiting.len() + self.handed.len() + self.unacked.len();
        self.shared
            .counters
            .queue_depth
            .store(depth as u64, Relaxed);
    }

    /// Counts messages the queue had no room for. The first drop of an episode is logged at
    /// once; how many it lost when it ends (the next connect, the connection lost, or a burst
    /// absorbed), worded for what it was: an outage, or a broker slower than the publishers.
    fn note_drops(&mut self, n: u64, connected: bool) {
        if n == 0 {
            return;
        }
        Shared::add(&self.shared.counters.dropped, n);
        if self
            .overflow
            .as_ref()
            .is_some_and(|o| o.connected != connected)
        {
            self.end_overflow();
        }
        if let Some(o) = &mut self.overflow {
            o.count += n;
            return;
        }
        let mib = BYTES_MAX >> 20;
        if connected {
            warn!(
                "Messages are published faster than the MQTT broker takes them ({} messages or {mib} MiB of topics and payloads waiting): dropping the oldest until it catches up",
                self.offline_capacity.max(IN_TRANSIT_MIN)
            );
        } else {
            warn!(
                "The offline queue is full ({} messages or {mib} MiB of topics and payloads): dropping the oldest messages until the broker takes them again (raise publish.offlineQueueSize to keep more small messages)",
                self.offline_capacity,
            );
        }
        self.overflow = Some(Overflow {
            connected,
            count: n,
        });
    }

    /// Reports the drops of the episode under way, if any.
    pub fn end_overflow(&mut self) {
        match self.overflow.take() {
            Some(Overflow { connected: true, count }) => warn!(
                "{count} messages were dropped while connected: they were published faster than the MQTT broker took them"
            ),
            Some(Overflow { connected: false, count }) => warn!(
                "{count} messages were dropped from the full offline queue while the broker was unreachable"
            ),
            None => {}
        }
    }

    /// A burst that dropped messages while connected is over once nothing waits.
    pub fn end_burst(&mut self) {
        if self.waiting.is_empty() && self.overflow.as_ref().is_some_and(|o| o.connected) {
            self.end_overflow();
        }
    }

    /// The connection was lost: a burst's drops are told as such, not as an outage's.
    pub fn end_connected_overflow(&mut self) {
        if self.overflow.as_ref().is_some_and(|o| o.connected) {
            self.end_overflow();
        }
    }
}
