//! Home Assistant's birth message and what answers it. Home Assistant (or its broker) may
//! restart without the retained messages it read before; when it says `online` on its birth
//! topic, the plugin publishes again what makes its entities available and current: the
//! status, the state topic with the temperatures, the last progress and the discovery configs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::message::{Incoming, Message};

/// Two answers are at least this far apart: a burst of births (or a retained one seen at every
/// reconnect of a flapping link) gets one.
pub const MIN_GAP: Duration = Duration::from_secs(5);

/// The birth topic watched and when it was last answered (the core's thread owns it).
#[derive(Default)]
pub struct Birth {
    topic: Option<String>,
    answered: Option<Instant>,
}

impl Birth {
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The new topic; returns the old one when it changed.
    pub fn set_topic(&mut self, topic: Option<String>) -> Option<Option<String>> {
        (self.topic != topic).then(|| std::mem::replace(&mut self.topic, topic))
    }

    /// Home Assistant saying `online` (retained or not), on the watched topic.
    pub fn is_birth(&self, m: &Incoming) -> bool {
        self.topic.as_deref() == Some(m.topic.as_str()) && m.payload.trim_ascii() == b"online"
    }

    /// Whether a birth at `now` is answered (and counts it as answered).
    pub fn answer(&mut self, now: Instant) -> bool {
        if self
            .answered
            .is_some_and(|at| now.saturating_duration_since(at) < MIN_GAP)
        {
            return false;
        }
        self.answered = Some(now);
        true
    }
}

/// The plugin's own retained progress messages, the last one per topic (shared by the
/// Python-facing core, which notes them, and the core's thread, which repeats them).
#[derive(Default)]
pub struct Memo {
    last: Mutex<Vec<Message>>,
}

impl Memo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a retained message (an empty one clears what its topic held).
    pub fn note(&self, m: &Message) {
        let mut last = self.lock();
        last.retain(|k| k.topic != m.topic);
        if m.retain && !m.payload.is_empty() {
            last.push(m.clone());
        }
    }

    /// Forgets topics no longer in use (the progress topic moved or was switched off).
    pub fn keep_only(&self, topics: &[String]) {
        self.lock().retain(|k| topics.contains(&k.topic));
    }

    pub fn all(&self) -> Vec<Message> {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Qos;

    fn incoming(topic: &str, payload: &[u8]) -> Incoming {
        Incoming {
            response_topic: None,
            correlation: None,
            topic: topic.into(),
            payload: payload.to_vec(),
            qos: 0,
            retain: false,
        }
    }

    fn retained(topic: &str, payload: &'static [u8]) -> Message {
        Message {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(payload),
            qos: Qos::AtMostOnce,
            retain: true,
            queue_offline: true,
            expiry: None,
            correlation: None,
        }
    }

    #[test]
    fn online_on_the_birth_topic_is_answered_at_most_every_five_seconds() {
        let mut b = Birth::default();
        assert!(!b.is_birth(&incoming("homeassistant/status", b"online")));
        assert_eq!(b.set_topic(Some("homeassistant/status".into())), Some(None));
        assert_eq!(b.set_topic(Some("homeassistant/status".into())), None);
        assert!(b.is_birth(&incoming("homeassistant/status", b"online\n")));
        assert!(!b.is_birth(&incoming("homeassistant/status", b"offline")));
        assert!(!b.is_birth(&incoming("homeassistant/other", b"online")));
        let t = Instant::now();
        assert!(b.answer(t));
        assert!(!b.answer(t + Duration::from_secs(4)));
        assert!(b.answer(t + Duration::from_secs(5)));
    }

    #[test]
    fn the_memo_keeps_the_last_retained_message_per_topic() {
        let m = Memo::default();
        m.note(&retained("p/printing", b"1"));
        m.note(&retained("p/printing", b"2"));
        m.note(&retained("p/slicing", b"3"));
        m.note(&Message {
            retain: false,
            ..retained("p/other", b"4")
        });
        let all: Vec<_> = m.all().iter().map(|k| k.payload.clone()).collect();
        assert_eq!(all, [&b"2"[..], &b"3"[..]]);
        m.note(&retained("p/slicing", b""));
        m.keep_only(&["q/printing".into()]);
        assert!(m.all().is_empty());
    }
}
