//! The crate's one error type. `lib.rs` maps it onto Python exceptions in one place.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A topic name or filter that MQTT (or the broker) would refuse.
    #[error("invalid MQTT topic {topic:?}: {reason}")]
    InvalidTopic { topic: String, reason: &'static str },

    #[error("invalid QoS {0}: must be 0, 1 or 2")]
    InvalidQos(i64),

    /// A payload type the chosen encoding cannot carry.
    #[error("{0}")]
    Payload(String),

    /// A message over the size every broker connection can carry.
    #[error("MQTT message too large: {size} bytes of topic and payload, at most {max} (64 MiB less 10 bytes of MQTT header)")]
    TooLarge { size: usize, max: usize },

    /// Settings that cannot be turned into a connection (bad TLS files, bad protocol...).
    #[error("invalid MQTT settings: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn topic(topic: &str, reason: &'static str) -> Self {
        // Long topics are cut in the message: a 64 KiB topic in a log line helps nobody.
        let mut shown: String = topic.chars().take(80).collect();
        if shown.len() < topic.len() {
            shown.push('…');
        }
        Error::InvalidTopic {
            topic: shown,
            reason,
        }
    }
}
