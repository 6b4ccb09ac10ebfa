//! The subscriptions other plugins register: which callbacks a topic reaches, and which
//! filters (at which QoS) the broker must know about. The one record of them: the callbacks'
//! thread reads it per message, the core's thread at every connect. Generic over the handler,
//! so the bookkeeping is tested without Python; comparing callbacks (Python `==`) is the
//! caller's job (`subscriptions.rs`), done outside this lock because `__eq__` may run
//! arbitrary Python code.

use crate::message::Qos;
use crate::topic;

#[derive(Debug)]
pub struct Entry<H> {
    pub id: u64,
    pub filter: String,
    pub qos: Qos,
    pub handler: H,
}

/// What the broker must be told after a change.
#[derive(Debug, PartialEq, Eq)]
pub enum BrokerChange {
    Subscribe(String, Qos),
    Unsubscribe(String),
}

#[derive(Debug)]
pub struct Registry<H> {
    next_id: u64,
    entries: Vec<Entry<H>>,
}

impl<H> Default for Registry<H> {
    fn default() -> Self {
        Registry {
            next_id: 1,
            entries: Vec::new(),
        }
    }
}

impl<H> Registry<H> {
    /// The highest QoS any subscription asks for on `filter`, if any uses it.
    fn filter_qos(&self, filter: &str) -> Option<Qos> {
        self.entries
            .iter()
            .filter(|e| e.filter == filter)
            .map(|e| e.qos)
            .max()
    }

    /// Adds a subscription; says whether the broker needs a (new or upgraded) SUBSCRIBE.
    pub fn add(&mut self, filter: &str, qos: Qos, handler: H) -> Option<BrokerChange> {
        let before = self.filter_qos(filter);
        self.entries.push(Entry {
            id: self.next_id,
            filter: filter.to_owned(),
            qos,
            handler,
        });
        self.next_id += 1;
        match before {
            Some(q) if q >= qos => None,
            _ => Some(BrokerChange::Subscribe(filter.to_owned(), qos)),
        }
    }

    /// Removes subscriptions by id; returns what the broker must be told (filters nobody uses
    /// any more, and filters whose highest QoS went down: subscribing again replaces the QoS),
    /// and the removed handlers, for the caller to drop after releasing its lock (dropping a
    /// Python callback may run `__del__`, which may release the GIL).
    pub fn remove(&mut self, ids: &[u64]) -> (Vec<BrokerChange>, Vec<H>) {
        let mut touched: Vec<(String, Qos)> = Vec::new();
        for e in self.entries.iter().filter(|e| ids.contains(&e.id)) {
            if !touched.iter().any(|(f, _)| *f == e.filter) {
                let before = self.filter_qos(&e.filter).expect("in use");
                touched.push((e.filter.clone(), before));
            }
        }
        let (removed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| ids.contains(&e.id));
        self.entries = kept;
        let changes = touched
            .into_iter()
            .filter_map(|(f, before)| match self.filter_qos(&f) {
                None => Some(BrokerChange::Unsubscribe(f)),
                Some(now) if now < before => Some(BrokerChange::Subscribe(f, now)),
                Some(_) => None,
            })
            .collect();
        (changes, removed.into_iter().map(|e| e.handler).collect())
    }

    /// Every filter in use with the highest QoS asked for it: what each connect subscribes.
    pub fn broker_filters(&self) -> Vec<(String, Qos)> {
        let mut out: Vec<(String, Qos)> = Vec::new();
        for e in &self.entries {
            match out.iter_mut().find(|(f, _)| *f == e.filter) {
                Some((_, q)) => *q = (*q).max(e.qos),
                None => out.push((e.filter.clone(), e.qos)),
            }
        }
        out
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry<H>> {
        self.entries.iter()
    }

    /// Subscriptions whose filter matches `topic`, in registration order.
    pub fn matching<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a Entry<H>> + 'a {
        self.entries
            .iter()
            .filter(move |e| topic::matches(&e.filter, topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BrokerChange::*;

    #[test]
    fn broker_subscribes_once_per_filter_and_upgrades_qos() {
        let mut r = Registry::default();
        assert_eq!(
            r.add("a/#", Qos::AtMostOnce, 'x'),
            Some(Subscribe("a/#".into(), Qos::AtMostOnce))
        );
        assert_eq!(r.add("a/#", Qos::AtMostOnce, 'y'), None);
        assert_eq!(
            r.add("a/#", Qos::AtLeastOnce, 'z'),
            Some(Subscribe("a/#".into(), Qos::AtLeastOnce))
        );
        assert_eq!(r.add("a/#", Qos::AtMostOnce, 'w'), None);
        assert_eq!(r.filter_qos("a/#"), Some(Qos::AtLeastOnce));
    }

    #[test]
    fn broker_unsubscribes_only_filters_nobody_uses() {
        let mut r = Registry::default();
        r.add("a", Qos::AtMostOnce, 1);
        r.add("a", Qos::AtMostOnce, 2);
        r.add("b", Qos::AtMostOnce, 1);
        let ids: Vec<u64> = r
            .entries()
            .filter(|e| e.handler == 1)
            .map(|e| e.id)
            .collect();
        assert_eq!(r.remove(&ids).0, vec![Unsubscribe("b".into())]);
        let rest: Vec<u64> = r.entries().map(|e| e.id).collect();
        assert_eq!(r.remove(&rest).0, vec![Unsubscribe("a".into())]);
        assert_eq!(r.filter_qos("a"), None);
        assert_eq!(r.remove(&[99]).0, vec![]);
    }

    #[test]
    fn broker_qos_follows_the_highest_remaining_subscriber() {
        let mut r = Registry::default();
        r.add("a", Qos::AtMostOnce, 1);
        r.add("a", Qos::ExactlyOnce, 2);
        r.add("a", Qos::AtLeastOnce, 3);
        r.add("b", Qos::AtLeastOnce, 4);
        assert_eq!(
            r.broker_filters(),
            vec![
                ("a".into(), Qos::ExactlyOnce),
                ("b".into(), Qos::AtLeastOnce)
            ]
        );
        let id = |r: &Registry<i32>, h| r.entries().find(|e| e.handler == h).unwrap().id;
        let two = id(&r, 2);
        assert_eq!(
            r.remove(&[two]).0,
            vec![Subscribe("a".into(), Qos::AtLeastOnce)]
        );
        let one = id(&r, 1);
        assert_eq!(r.remove(&[one]).0, vec![]);
        let three = id(&r, 3);
        assert_eq!(r.remove(&[three]).0, vec![Unsubscribe("a".into())]);
        assert_eq!(r.broker_filters(), vec![("b".into(), Qos::AtLeastOnce)]);
    }

    #[test]
    fn matching_in_registration_order() {
        let mut r = Registry::default();
        r.add("a/+", Qos::AtMostOnce, "plus");
        r.add("b", Qos::AtMostOnce, "other");
        r.add("#", Qos::AtMostOnce, "all");
        let hit: Vec<_> = r.matching("a/x").map(|e| e.handler).collect();
        assert_eq!(hit, ["plus", "all"]);
        let sys: Vec<_> = r.matching("$SYS/uptime").map(|e| e.handler).collect();
        assert!(sys.is_empty(), "leading wildcards do not match $ topics");
    }
}
