//! Topic names and filters: template formatting, validation and filter matching
//! (MQTT 3.1.1 section 4.7, identical in MQTT 5).

use crate::error::{Error, Result};

/// The longest topic MQTT can encode: its length is a 16-bit prefix.
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Why a Python str with a lone surrogate (`"a/\ud800"`) cannot be a topic or filter.
pub const LONE_SURROGATE: &str = "it contains a lone surrogate, which UTF-8 cannot encode";

/// Replaces `{name}` in a settings template, as the classic plugin's `str.format` did for
/// the one placeholder each template has.
pub fn render(template: &str, placeholder: &str, value: &str) -> String {
    let needle = format!("{{{placeholder}}}");
    template.replace(&needle, value)
}

fn check_common(topic: &str) -> Result<()> {
    if topic.is_empty() {
        return Err(Error::topic(topic, "it is empty"));
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(Error::topic(topic, "it is longer than 65535 bytes"));
    }
    if topic.contains('\0') {
        return Err(Error::topic(topic, "it contains a NUL character"));
    }
    Ok(())
}

/// A topic one publishes to: no wildcards.
pub fn validate_topic(topic: &str) -> Result<()> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(Error::topic(
            topic,
            "wildcards (+ and #) are only allowed in subscriptions",
        ));
    }
    Ok(())
}

/// A subscription filter: `+` fills a whole level, `#` only as the whole last level.
pub fn validate_filter(filter: &str) -> Result<()> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "#" if !last => return Err(Error::topic(filter, "'#' must be the last level")),
            "#" | "+" => {}
            _ if level.contains('#') => {
                return Err(Error::topic(filter, "'#' must fill a whole level"))
            }
            _ if level.contains('+') => {
                return Err(Error::topic(filter, "'+' must fill a whole level"))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `topic` matches a filter already validated by [`validate_filter`].
pub fn matches(filter: &str, topic: &str) -> bool {
    // Topics starting with '$' (broker statistics) are not matched by a leading wildcard.
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_placeholder_only() {
        assert_eq!(render("event/{event}", "event", "ZChange"), "event/ZChange");
        assert_eq!(render("events", "event", "ZChange"), "events");
        assert_eq!(render("{event}/{event}", "event", "A"), "A/A");
        assert_eq!(render("temp/{temp}", "event", "A"), "temp/{temp}");
    }

    #[test]
    fn topics() {
        assert!(validate_topic("octoprint/event/Startup").is_ok());
        assert!(validate_topic("/").is_ok());
        assert!(validate_topic("a b/ü").is_ok());
        for bad in ["", "a/+/b", "a/#", "+", "a\0b"] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic(&"a".repeat(65_535)).is_ok());
        assert!(validate_topic(&"a".repeat(65_536)).is_err());
    }

    #[test]
    fn topic_errors_are_readable_and_short() {
        let e = validate_topic(&"x".repeat(70_000)).unwrap_err().to_string();
        assert!(e.contains("65535"), "{e}");
        assert!(e.len() < 200, "{e}");
        let e = validate_topic("a/#").unwrap_err().to_string();
        assert!(e.contains("wildcards"), "{e}");
    }

    #[test]
    fn filters() {
        for good in ["#", "+", "a/#", "a/+/b", "+/+", "/#", "$SYS/#", "a//b"] {
            assert!(validate_filter(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "#/a", "a/+b/c"] {
            assert!(validate_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching() {
        let yes = [
            ("#", "a"),
            ("#", "a/b/c"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("a/+", "a/b"),
            ("a/+/c", "a/b/c"),
            ("+/+", "/x"),
            ("a/b", "a/b"),
            ("+", ""),
            ("$SYS/#", "$SYS/broker/uptime"),
            ("a//b", "a//b"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} should match {t}");
        }
        let no = [
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("#", "$SYS/broker"),
            ("+/broker", "$SYS/broker"),
            ("a", "A"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} should not match {t}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Topic levels from a small alphabet, so that random filters and topics often overlap.
    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("a".to_string()),
            Just("b".to_string()),
            Just("$SYS".to_string()),
            "[a-c]{1,3}",
        ]
    }

    fn topic() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(level(), 1..5)
    }

    fn filter() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            prop_oneof![level(), Just("+".to_string()), Just("#".to_string())],
            1..5,
        )
    }

    /// The MQTT matching rules written plainly, level by level, as a reference.
    fn reference(filter: &[String], topic: &[String]) -> bool {
        fn go(f: &[String], t: &[String]) -> bool {
            match (f.first().map(String::as_str), t.first()) {
                (Some("#"), _) => true,
                (Some("+"), Some(_)) => go(&f[1..], &t[1..]),
                (Some(fl), Some(tl)) => fl == tl && go(&f[1..], &t[1..]),
                (None, None) => true,
                _ => false,
            }
        }
        let wildcard_first = matches!(filter[0].as_str(), "+" | "#");
        if wildcard_first && topic[0].starts_with('$') {
            return false;
        }
        go(filter, topic)
    }

    fn well_formed(filter: &[String]) -> bool {
        filter
            .iter()
            .enumerate()
            .all(|(i, l)| l != "#" || i == filter.len() - 1)
    }

    proptest! {
        #[test]
        fn matching_agrees_with_the_reference(f in filter(), t in topic()) {
            prop_assume!(well_formed(&f));
            prop_assert_eq!(matches(&f.join("/"), &t.join("/")), reference(&f, &t));
        }

        #[test]
        fn a_topic_matches_itself_and_hash_matches_all_but_dollar(t in topic()) {
            let t = t.join("/");
            prop_assert!(validate_topic(&t).is_ok() || t.is_empty());
            prop_assert!(matches(&t, &t));
            prop_assert_eq!(matches("#", &t), !t.starts_with('$'));
        }

        #[test]
        fn plus_for_any_level_still_matches(t in topic(), i in 0usize..5) {
            let mut f = t.clone();
            let i = i % f.len();
            f[i] = "+".into();
            let expected = !(i == 0 && t[0].starts_with('$'));
            prop_assert_eq!(matches(&f.join("/"), &t.join("/")), expected);
        }

        #[test]
        fn filters_are_valid_exactly_when_wildcards_fill_whole_levels(
            levels in prop::collection::vec("[a+#/]{0,3}", 1..4)
        ) {
            let f = levels.join("/");
            let parts: Vec<&str> = f.split('/').collect();
            let ok = !f.is_empty()
                && parts.iter().enumerate().all(|(i, l)| match *l {
                    "#" => i == parts.len() - 1,
                    "+" => true,
                    _ => !l.contains(['+', '#']),
                });
            prop_assert_eq!(validate_filter(&f).is_ok(), ok, "{:?}", f);
        }

        #[test]
        fn topics_with_wildcards_or_nul_are_refused(s in "[a/+#\u{0}]{0,8}") {
            let ok = !s.is_empty() && !s.contains(['+', '#', '\0']);
            prop_assert_eq!(validate_topic(&s).is_ok(), ok);
        }
    }
}
