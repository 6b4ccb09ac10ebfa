//! The bounded queue of messages waiting for the broker. It keeps each message whole
//! (topic, QoS, retain flag) and in order; when full it drops the oldest and counts them.
//! Full means too many messages (`publish.offlineQueueSize`) or too many bytes of topics and
//! payloads: ten thousand queued camera snapshots would not fit in a Raspberry Pi's memory.

use std::collections::VecDeque;

use crate::message::Message;

/// Bytes of topics and payloads the queue keeps at most (the newest message always fits).
pub const BYTES_MAX: usize = 64 << 20;

#[derive(Debug)]
pub struct OfflineQueue {
    items: VecDeque<Message>,
    capacity: usize,
    bytes: usize,
    byte_capacity: usize,
}

impl OfflineQueue {
    pub fn new(capacity: usize) -> Self {
        Self::with_byte_capacity(capacity, BYTES_MAX)
    }

    pub fn with_byte_capacity(capacity: usize, byte_capacity: usize) -> Self {
        OfflineQueue {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
            byte_capacity,
        }
    }

    /// Appends a new message; returns how many old ones had to go to make room.
    pub fn push_back(&mut self, msg: Message) -> u64 {
        self.bytes += msg.cost();
        self.items.push_back(msg);
        self.trim()
    }

    /// Puts messages that were already on their way (handed to the client, or sent and not
    /// acknowledged) back in front, keeping their order: they are older than anything queued.
    pub fn requeue_front(&mut self, msgs: impl DoubleEndedIterator<Item = Message>) -> u64 {
        for msg in msgs.rev() {
            self.bytes += msg.cost();
            self.items.push_front(msg);
        }
        self.trim()
    }

    /// Puts a message in front that must go first (the status message at connect), making
    /// room by dropping the oldest of the others; returns how many.
    pub fn push_first(&mut self, msg: Message) -> u64 {
        self.bytes += msg.cost();
        self.items.push_front(msg);
        let mut n = 0;
        while self.items.len() > 1
            && (self.items.len() > self.capacity || self.bytes > self.byte_capacity)
        {
            let dropped = self.items.remove(1).expect("a second message");
            self.bytes -= dropped.cost();
            n += 1;
        }
        n
    }

    pub fn pop_front(&mut self) -> Option<Message> {
        let msg = self.items.pop_front()?;
        self.bytes -= msg.cost();
        Some(msg)
    }

    pub fn front(&self) -> Option<&Message> {
        self.items.front()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn set_capacity(&mut self, capacity: usize) -> u64 {
        self.capacity = capacity.max(1);
        self.trim()
    }

    fn trim(&mut self) -> u64 {
        let mut n = 0;
        while self.items.len() > self.capacity
            || (self.bytes > self.byte_capacity && self.items.len() > 1)
        {
            self.pop_front();
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Qos;

    fn msg(i: usize) -> Message {
        Message {
            topic: format!("t/{i}"),
            payload: vec![i as u8].into(),
            qos: if i % 2 == 0 {
                Qos::AtMostOnce
            } else {
                Qos::AtLeastOnce
            },
            retain: i % 3 == 0,
            queue_offline: true,
            expiry: None,
            correlation: None,
        }
    }

    #[test]
    fn keeps_order_and_fields() {
        let mut q = OfflineQueue::new(10);
        for i in 0..5 {
            assert_eq!(q.push_back(msg(i)), 0);
        }
        for i in 0..5 {
            assert_eq!(q.pop_front().unwrap(), msg(i));
        }
        assert!(q.is_empty());
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let mut q = OfflineQueue::new(3);
        let dropped: u64 = (0..5).map(|i| q.push_back(msg(i))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(q.pop_front().unwrap().topic, "t/2");
    }

    #[test]
    fn requeue_goes_in_front_in_order() {
        let mut q = OfflineQueue::new(10);
        q.push_back(msg(5));
        q.requeue_front(vec![msg(1), msg(2)].into_iter());
        let topics: Vec<_> = std::iter::from_fn(|| q.pop_front().map(|m| m.topic)).collect();
        assert_eq!(topics, ["t/1", "t/2", "t/5"]);
    }

    #[test]
    fn byte_bound_drops_oldest_but_keeps_the_newest() {
        let big = |i: u8, n: usize| Message {
            payload: vec![i; n].into(),
            ..msg(i as usize)
        };
        // Each costs its 3-byte topic and its payload.
        let mut q = OfflineQueue::with_byte_capacity(100, 16);
        assert_eq!(q.push_back(big(1, 4)), 0);
        assert_eq!(q.push_back(big(2, 4)), 0);
        assert_eq!(q.push_back(big(3, 4)), 1);
        assert_eq!(q.front().unwrap().payload, [2u8; 4][..]);
        assert_eq!(q.push_back(big(4, 50)), 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_front().unwrap().payload.len(), 50);
        assert_eq!(q.push_back(big(5, 10)), 0);
    }

    #[test]
    fn topics_count_against_the_byte_bound() {
        let long = |i: u8| Message {
            topic: "t".repeat(6),
            payload: vec![i].into(),
            ..msg(i as usize)
        };
        let mut q = OfflineQueue::with_byte_capacity(100, 20);
        assert_eq!(q.push_back(long(1)), 0);
        assert_eq!(q.push_back(long(2)), 0);
        assert_eq!(q.push_back(long(3)), 1);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn the_first_message_is_kept_and_the_oldest_after_it_make_room() {
        let mut q = OfflineQueue::with_byte_capacity(3, 100);
        for i in 1..=3 {
            q.push_back(msg(i));
        }
        assert_eq!(q.push_first(msg(9)), 1);
        let topics: Vec<_> = std::iter::from_fn(|| q.pop_front().map(|m| m.topic)).collect();
        assert_eq!(topics, ["t/9", "t/2", "t/3"]);
    }

    #[test]
    fn shrinking_capacity_trims() {
        let mut q = OfflineQueue::new(10);
        for i in 0..6 {
            q.push_back(msg(i));
        }
        assert_eq!(q.set_capacity(4), 2);
        assert_eq!(q.len(), 4);
        assert_eq!(q.front().unwrap().topic, "t/2");
    }
}
