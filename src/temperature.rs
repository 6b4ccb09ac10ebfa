//! Which temperature samples are worth a message. OctoPrint reports every heater about twice a
//! second; a heater is published when it is new, when its actual temperature moved by at least
//! the threshold since it was last published, or when its target moved by at least 0.1.

use std::collections::HashMap;

/// Target changes smaller than this are noise from float formatting, not a new set point.
const TARGET_STEP: f64 = 0.1;
/// Float differences are compared with this slack, so that 20.1 -> 20.2 counts as 0.1.
const SLACK: f64 = 1e-9;

/// A heater's values; serialised as the state message's `{"actual", "target"}`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Reading {
    pub actual: Option<f64>,
    pub target: Option<f64>,
}

impl Reading {
    /// Heaters that report nothing (or zeros) for both values, such as an absent chamber.
    pub fn is_empty(&self) -> bool {
        let blank = |v: Option<f64>| v.is_none_or(|v| v == 0.0);
        blank(self.actual) && blank(self.target)
    }
}

fn moved(old: Option<f64>, new: Option<f64>, step: f64) -> bool {
    match (old, new) {
        (Some(a), Some(b)) => (a - b).abs() >= step - SLACK,
        (None, None) => false,
        _ => true,
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    last: HashMap<String, Reading>,
}

impl Tracker {
    /// Whether `reading` of `heater` should be published; remembers it when so.
    pub fn should_publish(&mut self, heater: &str, reading: Reading, threshold: f64) -> bool {
        if reading.is_empty() {
            return false;
        }
        let publish = match self.last.get(heater) {
            None => true,
            Some(last) => {
                moved(last.actual, reading.actual, threshold)
                    || moved(last.target, reading.target, TARGET_STEP)
            }
        };
        if publish {
            self.last.insert(heater.to_owned(), reading);
        }
        publish
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(actual: Option<f64>, target: Option<f64>) -> Reading {
        Reading { actual, target }
    }

    #[test]
    fn new_heater_is_published_then_only_changes() {
        let mut t = Tracker::default();
        assert!(t.should_publish("tool0", r(Some(20.0), Some(0.0)), 0.1));
        assert!(!t.should_publish("tool0", r(Some(20.05), Some(0.0)), 0.1));
        assert!(
            t.should_publish("bed", r(Some(20.0), Some(0.0)), 0.1),
            "per heater"
        );
    }

    #[test]
    fn threshold_edges_compare_with_the_last_published_value() {
        let mut t = Tracker::default();
        t.should_publish("tool0", r(Some(20.0), None), 0.5);
        assert!(!t.should_publish("tool0", r(Some(20.3), None), 0.5));
        assert!(
            !t.should_publish("tool0", r(Some(20.49), None), 0.5),
            "creeping up stays quiet"
        );
        assert!(
            t.should_publish("tool0", r(Some(20.5), None), 0.5),
            "exactly the threshold"
        );
        assert!(
            t.should_publish("tool0", r(Some(20.0), None), 0.5),
            "downwards too"
        );
    }

    #[test]
    fn float_steps_of_exactly_the_threshold_count() {
        let mut t = Tracker::default();
        t.should_publish("bed", r(Some(20.1), None), 0.1);
        // 20.2 - 20.1 is 0.09999999999999787 in binary floating point.
        assert!(t.should_publish("bed", r(Some(20.2), None), 0.1));
    }

    #[test]
    fn target_changes_of_a_tenth_count_whatever_the_threshold() {
        let mut t = Tracker::default();
        t.should_publish("tool0", r(Some(20.0), Some(200.0)), 5.0);
        assert!(!t.should_publish("tool0", r(Some(21.0), Some(200.05)), 5.0));
        assert!(t.should_publish("tool0", r(Some(21.0), Some(210.0)), 5.0));
    }

    #[test]
    fn empty_heaters_are_skipped_and_appearing_values_count() {
        let mut t = Tracker::default();
        assert!(!t.should_publish("chamber", r(None, None), 0.1));
        assert!(!t.should_publish("chamber", r(Some(0.0), Some(0.0)), 0.1));
        assert!(!t.should_publish("chamber", r(None, Some(0.0)), 0.1));
        assert!(t.should_publish("bed", r(None, Some(50.0)), 0.1));
        assert!(
            t.should_publish("bed", r(Some(38.3), Some(50.0)), 0.1),
            "actual appeared"
        );
        assert!(
            t.should_publish("bed", r(None, Some(50.0)), 0.1),
            "actual disappeared"
        );
    }
}
