//! Topic names and filters: template formatting, validation and filter matching
//! (MQTT 3.1.1 section 4.7, identical in MQTT 5).

use crate::error::{Error, Result};

/// The longest topic MQTT can encode: its length is a 16-bit prefix.
const MAX_TOPIC_BYTES: usize = 65_535;

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
