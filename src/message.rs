//! The unit the core sends: a topic, its bytes and how to deliver them.

use crate::error::{Error, Result};

// The MQTT specification's names.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Qos {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl TryFrom<i64> for Qos {
    type Error = Error;
    fn try_from(value: i64) -> Result<Self> {
        match value {
            0 => Ok(Qos::AtMostOnce),
            1 => Ok(Qos::AtLeastOnce),
            2 => Ok(Qos::ExactlyOnce),
            other => Err(Error::InvalidQos(other)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    /// Shared, not copied, with rumqttc when handed to it (which keeps QoS 1/2 ones until
    /// acknowledged) and when put back in the queue.
    pub payload: bytes::Bytes,
    pub qos: Qos,
    pub retain: bool,
    /// Keep it in the offline queue while disconnected, instead of refusing it.
    pub queue_offline: bool,
    /// MQTT 5's message expiry interval in seconds (ignored with 3.1.1).
    pub expiry: Option<u32>,
    /// MQTT 5's correlation data, copied from the request an answer is for (ignored with 3.1.1).
    pub correlation: Option<bytes::Bytes>,
}

/// Which message this is across re-sends: a re-sent message keeps its payload's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    topic: String,
    payload_at: usize,
    payload_len: usize,
}

impl Message {
    pub fn identity(&self) -> Identity {
        Identity {
            topic: self.topic.clone(),
            payload_at: self.payload.as_ptr() as usize,
            payload_len: self.payload.len(),
        }
    }

    /// `identity() == *id`, without copying the topic.
    pub fn is(&self, id: &Identity) -> bool {
        self.payload.as_ptr() as usize == id.payload_at
            && self.payload.len() == id.payload_len
            && self.topic == id.topic
    }
}

/// A message the broker delivered to one of our subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5's response topic and correlation data (remote control answers there).
    pub response_topic: Option<String>,
    pub correlation: Option<bytes::Bytes>,
}

/// The largest message the core sends: topic plus payload. The packet adds at most
/// [`HEADER_MAX`] bytes, so every message within this bound fits [`PACKET_MAX`] whatever the
/// protocol and QoS.
pub const MESSAGE_MAX: usize = PACKET_MAX - HEADER_MAX;
/// The packet size the client is built for (outgoing and incoming).
pub const PACKET_MAX: usize = 64 << 20;
/// A PUBLISH's bytes besides topic and payload, at most: fixed header (1), remaining length
/// (up to 4), topic length (2), packet id (2), MQTT 5's empty property list (1).
const HEADER_MAX: usize = 10;

impl Message {
    /// What the message holds in memory: the bounds of the queues count topics as well as
    /// payloads (ten thousand 60 KB topics are as heavy as ten thousand 60 KB payloads).
    pub fn cost(&self) -> usize {
        self.topic.len() + self.payload.len()
    }

    /// Its PUBLISH packet's size, as MQTT 5 counts it (one byte more than 3.1.1, so a limit
    /// checked with it holds for both).
    pub fn packet_size(&self) -> usize {
        // The expiry property: its identifier and four bytes; correlation data: identifier,
        // two bytes of length, the data.
        let properties = if self.expiry.is_some() { 5 } else { 0 }
            + self.correlation.as_ref().map_or(0, |c| 3 + c.len());
        packet_size(self.topic.len(), self.payload.len() + properties, self.qos)
    }
}

pub fn packet_size(topic: usize, payload: usize, qos: Qos) -> usize {
    let pkid = if qos == Qos::AtMostOnce { 0 } else { 2 };
    let len = 2 + topic + pkid + 1 + payload;
    let len_len = match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_len + len
}

/// Refuses a message over [`MESSAGE_MAX`] before it is queued anywhere.
pub fn check_size(topic: &str, payload: &[u8]) -> Result<()> {
    let size = topic.len() + payload.len();
    if size > MESSAGE_MAX {
        return Err(Error::TooLarge {
            size,
            max: MESSAGE_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_sizes_match_the_wire_format() {
        // 2 + 1 + 1 (props) + 3 = 7 remaining, 1 byte of length, 1 of type.
        assert_eq!(packet_size(1, 3, Qos::AtMostOnce), 9);
        assert_eq!(packet_size(1, 3, Qos::AtLeastOnce), 11);
        // The largest message fits the client's packet bound with any QoS.
        let worst = packet_size(1, MESSAGE_MAX - 1, Qos::ExactlyOnce);
        assert!(worst <= PACKET_MAX, "{worst}");
        assert!(check_size("t", &vec![0; MESSAGE_MAX - 1]).is_ok());
        assert!(matches!(
            check_size("t", &vec![0; MESSAGE_MAX]),
            Err(Error::TooLarge { .. })
        ));
    }
}
