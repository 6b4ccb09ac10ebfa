//! Which OctoPrint publishes under a base topic: each announces itself on the retained
//! `<base>mqtt/instance` and watches it, so that two printers overwriting each other's topics
//! (a copied configuration, a forgotten base topic) are told instead of silently mixed.
//! Owned by the core's thread.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::message::{Incoming, Message, Qos};

/// Under the base topic, beside the status topic's default.
pub const TOPIC: &str = "mqtt/instance";
/// Other instances remembered; a farm sharing one base topic by mistake has a few.
const OTHERS_MAX: usize = 32;

/// What an instance says of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub id: String,
    pub host: String,
    pub version: String,
    /// Unix seconds when this OctoPrint started.
    pub since: u64,
}

/// Another instance seen under our base topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Other {
    pub id: String,
    pub host: String,
    pub since: u64,
}

#[derive(Debug, Default)]
pub struct Instances {
    /// Our card and its topic, once the plugin said who we are.
    ours: Option<(String, Card)>,
    others: BTreeMap<String, Other>,
}

/// What a received message means.
#[derive(Debug, PartialEq)]
pub enum Seen {
    NotOurs,
    /// Nothing to do: our own card, a retained card from before (it is overwritten by ours),
    /// or one already known.
    Nothing,
    /// Another instance announced itself just now: warn (once per id) and announce ours again,
    /// so that it learns of us too.
    Other(Other),
}

impl Instances {
    /// Our card and the base topic it goes under; None before the plugin identified us.
    pub fn set(&mut self, base: &str, card: Option<Card>) {
        self.ours = card.map(|c| (format!("{base}{TOPIC}"), c));
    }

    pub fn topic(&self) -> Option<&str> {
        self.ours.as_ref().map(|(t, _)| t.as_str())
    }

    /// Our card, retained: sent after every connect.
    pub fn card(&self) -> Option<Message> {
        let (topic, card) = self.ours.as_ref()?;
        Some(Message {
            topic: topic.clone(),
            payload: serde_json::to_vec(card).unwrap_or_default().into(),
            qos: Qos::AtLeastOnce,
            retain: true,
            // Sent at every connect anyway.
            queue_offline: false,
            expiry: None,
            correlation: None,
        })
    }

    pub fn take(&mut self, m: &Incoming) -> Seen {
        let Some((topic, ours)) = &self.ours else {
            return Seen::NotOurs;
        };
        if m.topic != *topic {
            return Seen::NotOurs;
        }
        // A retained card is from before we connected: ours overwrites it, and an instance
        // still running sees ours and answers live.
        if m.retain || m.payload.is_empty() {
            return Seen::Nothing;
        }
        let Ok(card) = serde_json::from_slice::<Card>(&m.payload) else {
            return Seen::Nothing;
        };
        if card.id == ours.id || self.others.contains_key(&card.id) {
            return Seen::Nothing;
        }
        if self.others.len() >= OTHERS_MAX {
            return Seen::Nothing;
        }
        let other = Other {
            id: card.id.clone(),
            host: card.host,
            since: card.since,
        };
        self.others.insert(card.id, other.clone());
        Seen::Other(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str) -> Card {
        Card {
            id: id.into(),
            host: format!("{id}.local"),
            version: "1.0.0".into(),
            since: 1,
        }
    }

    fn incoming(topic: &str, card: &Card, retain: bool) -> Incoming {
        Incoming {
            topic: topic.into(),
            payload: serde_json::to_vec(card).unwrap(),
            qos: 1,
            retain,
            response_topic: None,
            correlation: None,
        }
    }

    #[test]
    fn another_live_card_is_told_once_ours_and_retained_ones_never() {
        let mut i = Instances::default();
        let t = "octoprint/mqtt/instance";
        assert_eq!(i.take(&incoming(t, &card("b"), false)), Seen::NotOurs);
        i.set("octoprint/", Some(card("a")));
        assert_eq!(i.topic(), Some(t));
        assert!(i.card().unwrap().retain);
        assert_eq!(i.take(&incoming(t, &card("a"), false)), Seen::Nothing);
        assert_eq!(i.take(&incoming(t, &card("b"), true)), Seen::Nothing);
        let Seen::Other(o) = i.take(&incoming(t, &card("b"), false)) else {
            panic!()
        };
        assert_eq!(o.host, "b.local");
        assert_eq!(i.take(&incoming(t, &card("b"), false)), Seen::Nothing);
        assert_eq!(
            i.take(&incoming("other/mqtt/instance", &card("c"), false)),
            Seen::NotOurs
        );
    }
}
