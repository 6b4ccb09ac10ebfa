//! The field rules of the settings page, in one place: the server refuses to save a value
//! they reject (`validation.py` asks [`problems`]), the page checks the same table as the
//! user types (exported as data by [`page_rules`]), and the settings parse reads the same
//! ranges ([`PORT`], [`QUEUE_SIZE`]) so that a value refused on save is also one the
//! connection would not use.

use serde::Serialize;
use serde_json::Value;

use crate::{config, control, discovery, glob, lenient, topic};

/// `broker.port`: port 0 is "any port" to a listener, never one a client can reach.
pub const PORT: (i64, i64) = (1, 65_535);
/// `broker.keepalive` in seconds; 0 turns the pings off.
pub const KEEPALIVE: (i64, i64) = (0, 65_535);
/// `publish.offlineQueueSize`: beyond this the byte bound (64 MiB) decides anyway.
pub const QUEUE_SIZE: (i64, i64) = (0, 10_000_000);
/// Pacing intervals in seconds (`publish.stateInterval`, `publish.temperatureInterval`).
pub const INTERVAL: (f64, f64) = (0.0, 3_600.0);
/// `publish.stateExpiry`: MQTT 5 carries the expiry interval in four bytes; 0 means none.
pub const EXPIRY: (i64, i64) = (0, 4_294_967_295);

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Check {
    /// A whole number in a range: a JSON integer, a float without fraction, or text holding
    /// one (what the settings parse reads).
    Whole {
        min: i64,
        max: i64,
        unit: &'static str,
    },
    /// A finite number from `min` to `max`.
    Number {
        min: f64,
        max: f64,
        unit: &'static str,
    },
    /// A host name or IP address: text without scheme and spaces, or nothing.
    Host,
    /// `publish.baseTopic`: joined in front of every topic, so it may be empty.
    BaseTopic { max_bytes: usize },
    /// A sub-topic template under the base topic, rendered with a sample value.
    Template {
        placeholder: Option<&'static str>,
        sample: &'static str,
        max_bytes: usize,
    },
    /// A whole topic (no wildcards), or nothing (`homeassistant.birthTopic`: not watched).
    Topic,
    /// `homeassistant.prefix`: the first levels of the discovery topics; not empty.
    Prefix,
    /// `homeassistant.nodeId`: nothing (the generated id), or letters, digits, `_` and `-`.
    NodeId,
    /// `control.topic` under the base topic: `{command}` once, filling a whole level
    /// (control.rs `request_topic_problem`).
    RequestTopic { max_bytes: usize },
    /// `control.responseTopic` under the base topic: not empty, no wildcards, not the
    /// request topic of one of `commands` (control.rs `response_topic_problem`).
    ResponseTopic {
        max_bytes: usize,
        commands: &'static [&'static str],
    },
    /// `broker.failover`: `host` or `host:port` entries, a list or one comma-separated text.
    Addresses,
    /// Event names or shell-style patterns (`glob.rs`): a list of text, or one text of
    /// comma-separated ones, as the settings parse reads it.
    Patterns,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    pub path: [&'static str; 2],
    #[serde(flatten)]
    pub check: Check,
}

const fn whole(
    section: &'static str,
    key: &'static str,
    r: (i64, i64),
    unit: &'static str,
) -> Rule {
    Rule {
        path: [section, key],
        check: Check::Whole {
            min: r.0,
            max: r.1,
            unit,
        },
    }
}

const fn seconds(key: &'static str) -> Rule {
    Rule {
        path: ["publish", key],
        check: Check::Number {
            min: INTERVAL.0,
            max: INTERVAL.1,
            unit: "seconds",
        },
    }
}

const fn template(
    key: &'static str,
    placeholder: Option<&'static str>,
    sample: &'static str,
) -> Rule {
    Rule {
        path: ["publish", key],
        check: Check::Template {
            placeholder,
            sample,
            max_bytes: topic::MAX_TOPIC_BYTES,
        },
    }
}

pub const RULES: &[Rule] = &[
    Rule {
        path: ["broker", "url"],
        check: Check::Host,
    },
    whole("broker", "port", PORT, ""),
    Rule {
        path: ["broker", "failover"],
        check: Check::Addresses,
    },
    whole("broker", "keepalive", KEEPALIVE, "seconds"),
    whole("publish", "offlineQueueSize", QUEUE_SIZE, ""),
    Rule {
        path: ["publish", "temperatureThreshold"],
        check: Check::Number {
            min: 0.0,
            max: f64::MAX,
            unit: "degrees",
        },
    },
    seconds("temperatureInterval"),
    seconds("stateInterval"),
    whole("publish", "stateExpiry", EXPIRY, "seconds"),
    Rule {
        path: ["publish", "baseTopic"],
        check: Check::BaseTopic {
            max_bytes: topic::MAX_TOPIC_BYTES,
        },
    },
    template("eventTopic", Some("event"), "Startup"),
    template("progressTopic", Some("progress"), "printing"),
    template("temperatureTopic", Some("temp"), "tool0"),
    template("metadataTopic", Some("key"), "name"),
    template("stateTopic", None, ""),
    template("lwTopic", None, ""),
    Rule {
        path: ["publish", "eventExclude"],
        check: Check::Patterns,
    },
    Rule {
        path: ["homeassistant", "birthTopic"],
        check: Check::Topic,
    },
    Rule {
        path: ["homeassistant", "prefix"],
        check: Check::Prefix,
    },
    Rule {
        path: ["homeassistant", "nodeId"],
        check: Check::NodeId,
    },
    Rule {
        path: ["control", "topic"],
        check: Check::RequestTopic {
            max_bytes: topic::MAX_TOPIC_BYTES,
        },
    },
    Rule {
        path: ["control", "responseTopic"],
        check: Check::ResponseTopic {
            max_bytes: topic::MAX_TOPIC_BYTES,
            commands: control::COMMANDS,
        },
    },
];

/// The rules as the page reads them (`[{path, kind, min, max, ...}]`).
pub fn page_rules() -> Value {
    serde_json::to_value(RULES).unwrap_or_default()
}

/// A whole number as the settings parse reads one; `None` for anything else.
pub fn whole_number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A finite number as the settings parse reads one; `None` for anything else.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// Text as the settings parse reads a topic: numbers as their digits, nothing as nothing.
fn topic_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        _ => Some(String::new()),
    }
}

fn check_value(check: &Check, v: &Value) -> Option<String> {
    match *check {
        Check::Whole { min, max, unit } => {
            let ok = whole_number(v).is_some_and(|n| (min..=max).contains(&n));
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" of {unit}")
            };
            (!ok).then(|| format!("must be a whole number{unit} from {min} to {max}"))
        }
        Check::Number { min, max, unit } => {
            let ok = number(v).is_some_and(|n| (min..=max).contains(&n));
            (!ok).then(|| {
                if max == f64::MAX {
                    format!("must be a number of {unit}, {min} or more")
                } else {
                    format!("must be a number of {unit} from {min} to {max}")
                }
            })
        }
        Check::Host => match v {
            Value::Null => None,
            Value::String(s) if s.contains("://") || s.trim().contains(char::is_whitespace) => {
                Some("enter only the host name or IP address (no scheme, no spaces)".into())
            }
            Value::String(_) => None,
            _ => Some("enter the host name or IP address as text".into()),
        },
        Check::Patterns => match lenient::pattern_entries(v) {
            Err(e) => Some(e),
            Ok(entries) => {
                let unusable = glob::unusable(&entries);
                (!unusable.is_empty()).then(|| unusable.join("; "))
            }
        },
        Check::Addresses => {
            let entries: Vec<String> = match v {
                Value::Null => Vec::new(),
                Value::String(s) => s.split(',').map(str::to_owned).collect(),
                Value::Array(items) => {
                    match items.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                        Some(items) => items.into_iter().map(str::to_owned).collect(),
                        None => return Some("enter the addresses as text".into()),
                    }
                }
                _ => return Some("enter the addresses as text".into()),
            };
            let bad: Vec<String> = entries
                .iter()
                .filter(|e| !e.trim().is_empty())
                .filter_map(|e| config::failover_address(e, 1883).err())
                .collect();
            (!bad.is_empty()).then(|| bad.join("; "))
        }
        Check::Topic => {
            let t = topic_text(v).unwrap_or_default();
            config::birth_topic_problem(t.trim())
                .err()
                .map(|e| e.to_string())
        }
        Check::Prefix => {
            let t = topic_text(v).unwrap_or_default();
            config::prefix_problem(t.trim().trim_end_matches('/'))
                .err()
                .map(|e| e.to_string())
        }
        Check::NodeId => match v {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() || discovery::valid_node_id(s.trim()) => None,
            _ => Some(config::NODE_ID_RULE.to_string()),
        },
        // Judged with the base topic, in `problems`.
        Check::BaseTopic { .. }
        | Check::Template { .. }
        | Check::RequestTopic { .. }
        | Check::ResponseTopic { .. } => None,
    }
}

/// Problems of the values in `changes` (a partial `plugins.mqtt` tree, as a save sends it),
/// judged with `merged` (the settings in force): `(path, reason)` for each refused value.
pub fn problems(changes: &Value, merged: &Value) -> Vec<(Vec<String>, String)> {
    let mut found: Vec<(Vec<String>, String)> = Vec::new();
    let changed = |section: &str, key: &str| changes.get(section).and_then(|s| s.get(key));
    for rule in RULES {
        let [section, key] = rule.path;
        if let Some(reason) = changed(section, key).and_then(|v| check_value(&rule.check, v)) {
            found.push((vec![section.into(), key.into()], reason));
        }
    }
    let current = |key: &str| {
        changed("publish", key).or_else(|| merged.get("publish").and_then(|p| p.get(key)))
    };
    let base_changed = changed("publish", "baseTopic").is_some();
    let base = current("baseTopic")
        .and_then(topic_text)
        .unwrap_or_default();
    for rule in RULES {
        let Check::Template {
            placeholder,
            sample,
            ..
        } = rule.check
        else {
            continue;
        };
        let key = rule.path[1];
        let own = changed("publish", key).is_some();
        // A new base topic is judged with every template; a new template with its base.
        if !own && !base_changed {
            continue;
        }
        let Some(template) = current(key).and_then(topic_text) else {
            continue;
        };
        let rendered = match placeholder {
            Some(p) => topic::render(&template, p, sample),
            None => template,
        };
        if let Err(e) = topic::validate_topic(&format!("{base}{rendered}")) {
            let culprit = if own { key } else { "baseTopic" };
            let path = vec!["publish".to_string(), culprit.to_string()];
            if !found.iter().any(|(p, _)| *p == path) {
                found.push((path, e.to_string()));
            }
        }
    }
    let control = |key: &str| {
        let own = changed("control", key);
        let value = own.or_else(|| merged.get("control").and_then(|c| c.get(key)));
        (
            own.is_some(),
            value.and_then(topic_text).map(|t| t.trim().to_string()),
        )
    };
    let (template_changed, template) = control("topic");
    let (response_changed, response) = control("responseTopic");
    let mut blame = |own: bool, key: &str, e: crate::error::Error| {
        let path = if own {
            vec!["control".to_string(), key.to_string()]
        } else {
            vec!["publish".to_string(), "baseTopic".to_string()]
        };
        if !found.iter().any(|(p, _)| *p == path) {
            found.push((path, e.to_string()));
        }
    };
    let mut template_ok = true;
    if let Some(template) = &template {
        if template_changed || base_changed {
            if let Err(e) = control::request_topic_problem(&base, template) {
                template_ok = false;
                blame(template_changed, "topic", e);
            }
        }
    }
    if let (Some(response), true) = (&response, template_ok) {
        if response_changed || template_changed || base_changed {
            let template = template.as_deref().unwrap_or("control/{command}");
            if let Err(e) = control::response_topic_problem(&base, response, template) {
                // A new request topic that makes the response topic one of its own is its fault.
                let key_own = response_changed || template_changed;
                let key = if response_changed {
                    "responseTopic"
                } else {
                    "topic"
                };
                blame(key_own, key, e);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(changes: Value) -> Vec<String> {
        problems(
            &changes,
            &json!({"publish": {"baseTopic": "b/", "lwTopic": "mqtt"}}),
        )
        .into_iter()
        .map(|(p, _)| p.join("."))
        .collect()
    }

    #[test]
    fn port_zero_and_other_bad_values_are_refused() {
        for port in [
            json!(0),
            json!("0"),
            json!(65_536),
            json!(""),
            json!(null),
            json!(true),
            json!("1e3"),
            json!(80.5),
        ] {
            assert_eq!(
                paths(json!({"broker": {"port": port}})),
                ["broker.port"],
                "{port}"
            );
        }
        for port in [json!(1), json!(" 1883 "), json!(65_535), json!(1883.0)] {
            assert!(
                paths(json!({"broker": {"port": port}})).is_empty(),
                "{port}"
            );
        }
        assert_eq!(
            paths(json!({"broker": {"keepalive": 0}})),
            Vec::<String>::new()
        );
        assert_eq!(
            paths(
                json!({"broker": {"url": "mqtt://h"}, "publish": {"temperatureThreshold": "inf"}})
            ),
            ["broker.url", "publish.temperatureThreshold"]
        );
    }

    #[test]
    fn pattern_lists_name_each_unusable_pattern() {
        let reason = |v: Value| {
            problems(&json!({"publish": {"eventExclude": v}}), &json!({}))
                .into_iter()
                .map(|(p, r)| format!("{}: {r}", p.join(".")))
                .collect::<Vec<_>>()
        };
        for ok in [
            json!([]),
            json!(null),
            json!(["ZChange", " Position* ", "plugin_*"]),
            json!("ZChange, Position*,,"),
        ] {
            assert!(reason(ok.clone()).is_empty(), "{ok}");
        }
        assert_eq!(
            reason(json!(["ZChange", "Pos[", "a/b"])),
            [
                "publish.eventExclude: \"Pos[\": the [ at character 4 is never closed; \
                 \"a/b\": contains \"/\", which no event name has"
            ]
        );
        assert_eq!(
            reason(json!("ZChange Home")),
            ["publish.eventExclude: \"ZChange Home\": contains a space, which no event name has"]
        );
        assert_eq!(
            reason(json!(["a", null])),
            ["publish.eventExclude: entry 2 is nothing (null), not text"]
        );
        assert_eq!(
            reason(json!(true)),
            ["publish.eventExclude: expected a list of event names or patterns, got true/false"]
        );
        assert!(page_rules()
            .as_array()
            .unwrap()
            .contains(&json!({"path": ["publish", "eventExclude"], "kind": "patterns"})));
    }

    #[test]
    fn topics_are_judged_with_their_base() {
        assert_eq!(
            paths(json!({"publish": {"eventTopic": "e/+/{event}"}})),
            ["publish.eventTopic"]
        );
        assert_eq!(
            paths(json!({"publish": {"baseTopic": "a/#/"}})),
            ["publish.baseTopic"]
        );
        assert!(paths(json!({"publish": {"lwTopic": ""}})).is_empty());
        let page = page_rules();
        assert_eq!(
            page[1],
            json!({"path": ["broker", "port"], "kind": "whole", "min": 1, "max": 65535, "unit": ""})
        );
    }

    #[test]
    fn home_assistant_fields() {
        for (key, good, bad) in [
            ("birthTopic", json!(""), json!("homeassistant/+")),
            ("birthTopic", json!("ha/status"), json!("a\u{0}b")),
            ("prefix", json!("homeassistant/"), json!("")),
            ("prefix", json!("ha"), json!("ha/#")),
            ("nodeId", json!(null), json!("my printer")),
            ("nodeId", json!("printer_1-a"), json!("a/b")),
        ] {
            assert!(
                paths(json!({"homeassistant": {key: good}})).is_empty(),
                "{key} {good}"
            );
            assert_eq!(
                paths(json!({"homeassistant": {key: bad}})),
                [format!("homeassistant.{key}")],
                "{key} {bad}"
            );
        }
    }

    #[test]
    fn control_topics() {
        for (key, good, bad) in [
            ("topic", json!("control/{command}"), json!("control")),
            ("topic", json!("{command}/do"), json!("c/x{command}")),
            ("topic", json!(" cmd/{command} "), json!("c/+/{command}")),
            ("responseTopic", json!("control/response"), json!("")),
            ("responseTopic", json!("answers"), json!("a/#")),
        ] {
            assert!(
                paths(json!({"control": {key: good}})).is_empty(),
                "{key} {good}"
            );
            assert_eq!(
                paths(json!({"control": {key: bad}})),
                [format!("control.{key}")],
                "{key} {bad}"
            );
        }
        // A base topic that breaks them is the culprit.
        let found = problems(
            &json!({"publish": {"baseTopic": "a/#/"}}),
            &json!({"control": {"topic": "c/{command}", "responseTopic": "r"}}),
        );
        assert!(found.iter().all(|(p, _)| p == &["publish", "baseTopic"]));
    }
}
