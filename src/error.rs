//! The crate's one error type. `lib.rs` maps it onto Python exceptions in one place.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A topic name or filter that MQTT (or the broker) would refuse.
    #[error("invalid MQTT topic {topic:?}: {reason}")]
    InvalidTopic { topic: String, reason: &'static str },

    #[error("invalid QoS {0}: must be 0, 1 or 2")]
    InvalidQos(i64),

    /// A payload (or temperature sample) of a type the chosen encoding cannot carry.
    #[error("{0}")]
    Payload(String),

    /// An argument of the wrong type (a callback that is not callable, args not a sequence).
    #[error("{0}")]
    ArgumentType(String),

    /// An argument of the right type but a value the call cannot take.
    #[error("{0}")]
    ArgumentValue(String),

    /// The core's threads could not be started.
    #[error("cannot start the MQTT threads: {0}")]
    Threads(String),

    /// Raised by Python code the core called (`__bool__`, `__eq__`, a mapping's lookup): passed
    /// on as it was.
    #[error("{0}")]
    Python(#[from] pyo3::PyErr),

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
