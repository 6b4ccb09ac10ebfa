//! Home Assistant MQTT discovery: one retained config per entity, all read from the state
//! topic, and the record of what was published so that what is no longer wanted (discovery
//! off, another node id or prefix, a heater gone, the plugin uninstalled) is cleared with an
//! empty retained payload. Shared by the Python-facing core (settings, device) and the core's
//! thread (which publishes the configs again after Home Assistant's birth message).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::message::{Message, Qos};

/// What OctoPrint knows of the machine (from the plugin's Python side).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Device {
    pub name: String,
    pub manufacturer: String,
    pub model: String,
    pub sw_version: String,
    pub configuration_url: Option<String>,
    /// `tool0`, `bed`, `chamber`, … as the printer profile has them.
    pub heaters: Vec<String>,
}

/// The settings discovery reads, with the topics it points the entities at.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// `homeassistant.discovery`, and the state topic switched on (the entities' source).
    pub enabled: bool,
    pub prefix: String,
    /// `homeassistant.nodeId` when set (and valid); otherwise the generated one is used.
    pub node_id: Option<String>,
    /// The status topic (`connected` / `disconnected`), when there is one.
    pub availability: Option<String>,
    pub state_topic: String,
    pub timestamp_field: String,
    /// `(command, request topic)` of each remote control command allowed that gets a button.
    pub buttons: Vec<(&'static str, String)>,
}

/// Why discovery publishes nothing although it is on, for the settings page and the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Off {
    Setting,
    /// The state topic is off: the entities would have nothing to read.
    NoStateTopic,
    /// Another plugin does discovery for this OctoPrint (named).
    OtherPlugin(String),
    /// Pending uninstall: cleared, and kept so until OctoPrint restarts.
    Uninstalling,
}

#[derive(Default)]
struct Inner {
    setup: Option<Setup>,
    device: Option<Device>,
    generated_id: String,
    blocked_by: Option<String>,
    uninstalling: bool,
    /// Config topic -> payload, as last published.
    published: BTreeMap<String, Bytes>,
}

#[derive(Default)]
pub struct Discovery {
    inner: Mutex<Inner>,
}

/// What the settings page shows.
pub struct Report {
    pub node_id: String,
    pub entities: usize,
    pub off: Option<Off>,
    /// The config topics published, for the plugin to keep across restarts.
    pub topics: Vec<String>,
}

/// A node id Home Assistant accepts in a discovery topic.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Discovery {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New settings; returns the configs to publish and the empty payloads that clear old ones.
    pub fn configure(&self, setup: Setup) -> Vec<Message> {
        let mut inner = self.lock();
        inner.setup = Some(setup);
        inner.update()
    }

    /// The device (at startup, and when the printer profile changes), the id generated for
    /// this OctoPrint, and the plugin that does discovery instead, if one is loaded.
    /// `earlier`: config topics an earlier run published (kept by the plugin across
    /// restarts); those no longer wanted are cleared now.
    pub fn identify(
        &self,
        device: Device,
        generated_id: String,
        blocked_by: Option<String>,
        earlier: Vec<String>,
    ) -> Vec<Message> {
        let mut inner = self.lock();
        for topic in earlier {
            // An empty payload stands for "published, content unknown": wanted ones are
            // published again, the others cleared.
            inner.published.entry(topic).or_default();
        }
        inner.device = Some(device);
        inner.generated_id = generated_id;
        inner.blocked_by = blocked_by;
        inner.update()
    }

    /// The plugin is being uninstalled: clear every config, and publish none until restart.
    pub fn uninstall(&self) -> Vec<Message> {
        let mut inner = self.lock();
        inner.uninstalling = true;
        inner.update()
    }

    /// Every config in force, to publish again (at every connect, and after Home
    /// Assistant's birth message).
    pub fn current(&self) -> Vec<Message> {
        self.lock()
            .published
            .iter()
            .map(|(topic, payload)| config_message(topic.clone(), payload.clone()))
            .collect()
    }

    pub fn report(&self) -> Report {
        let inner = self.lock();
        Report {
            node_id: inner.node_id(),
            entities: inner.published.len(),
            off: inner.off(),
            topics: inner.published.keys().cloned().collect(),
        }
    }
}

impl Inner {
    fn node_id(&self) -> String {
        self.setup
            .as_ref()
            .and_then(|s| s.node_id.clone())
            .unwrap_or_else(|| self.generated_id.clone())
    }

    fn off(&self) -> Option<Off> {
        let setup = self.setup.as_ref()?;
        if self.uninstalling {
            Some(Off::Uninstalling)
        } else if !setup.enabled {
            Some(Off::Setting)
        } else if let Some(other) = &self.blocked_by {
            Some(Off::OtherPlugin(other.clone()))
        } else if setup.state_topic.is_empty() {
            Some(Off::NoStateTopic)
        } else {
            None
        }
    }

    /// The configs wanted now, against those published: what changed goes out.
    fn update(&mut self) -> Vec<Message> {
        let wanted: BTreeMap<String, Bytes> = match (&self.setup, &self.device, self.off()) {
            (Some(setup), Some(device), None) if valid_node_id(&self.node_id()) => {
                configs(setup, device, &self.node_id())
                    .into_iter()
                    .map(|(t, v)| (t, Bytes::from(v.to_string())))
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        let mut out = Vec::new();
        for topic in self.published.keys() {
            if !wanted.contains_key(topic) {
                out.push(config_message(topic.clone(), Bytes::new()));
            }
        }
        for (topic, payload) in &wanted {
            if self.published.get(topic) != Some(payload) {
                out.push(config_message(topic.clone(), payload.clone()));
            }
        }
        self.published = wanted;
        out
    }
}

/// Retained and QoS 1. A config is not kept while offline: every connect publishes those in
/// force (`current`), whatever broker it is. A clear is kept: nothing else would send it.
fn config_message(topic: String, payload: Bytes) -> Message {
    Message {
        topic,
        queue_offline: payload.is_empty(),
        payload,
        qos: Qos::AtLeastOnce,
        retain: true,
        expiry: None,
        correlation: None,
    }
}

/// One entity: its component, object id, name and what it reads.
struct Entity {
    component: &'static str,
    object: String,
    name: String,
    template: String,
    extra: Value,
    /// A Jinja condition on the state: the entity is unavailable while it is false. For
    /// values that may be missing where Home Assistant has no silent "unknown" (text and
    /// time stamp sensors log a warning for every message they cannot read).
    available_if: Option<&'static str>,
}

fn entity(
    component: &'static str,
    object: &str,
    name: &str,
    template: String,
    extra: Value,
) -> Entity {
    Entity {
        component,
        object: object.to_string(),
        name: name.to_string(),
        template,
        extra,
        available_if: None,
    }
}

impl Entity {
    fn available_if(self, condition: &'static str) -> Entity {
        Entity {
            available_if: Some(condition),
            ..self
        }
    }
}

/// `value_json.progress.<key>` when there is a job, else None (Home Assistant's "unknown").
fn progress_value(key: &str) -> String {
    format!(
        "{{{{ value_json.progress.{key} if value_json.progress and value_json.progress.{key} is not none else None }}}}"
    )
}

/// `tool0` -> `Tool 0`, `bed` -> `Bed`.
fn heater_name(heater: &str) -> String {
    if let Some(n) = heater.strip_prefix("tool") {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            return format!("Tool {n}");
        }
    }
    let mut chars = heater.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A heater name as part of an object id (`[a-zA-Z0-9_-]`).
fn object_part(heater: &str) -> String {
    heater
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A Jinja string literal (JSON's escaping is valid there).
fn literal(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

fn entities(device: &Device, timestamp_field: &str) -> Vec<Entity> {
    let flag = |f: &str| format!("{{{{ 'ON' if value_json.state.flags.{f} else 'OFF' }}}}");
    let seconds = json!({"device_class": "duration", "unit_of_measurement": "s"});
    let mut list = vec![
        entity(
            "binary_sensor",
            "connected",
            "Printer connected",
            flag("operational"),
            json!({"device_class": "connectivity"}),
        ),
        entity(
            "binary_sensor",
            "printing",
            "Printing",
            flag("printing"),
            json!({"device_class": "running"}),
        ),
        entity(
            "sensor",
            "state",
            "State",
            "{{ value_json.state.text }}".into(),
            json!({"icon": "mdi:printer-3d"}),
        ),
        entity(
            "sensor",
            "progress",
            "Job progress",
            progress_value("percent"),
            json!({"unit_of_measurement": "%", "icon": "mdi:progress-clock"}),
        ),
        entity(
            "sensor",
            "print_time",
            "Print time",
            progress_value("printTime"),
            seconds.clone(),
        ),
        entity(
            "sensor",
            "print_time_left",
            "Print time left",
            progress_value("printTimeLeft"),
            seconds,
        ),
        // Without a time left the value is the message's own time, never shown: the entity
        // is unavailable then.
        entity(
            "sensor",
            "estimated_finish",
            "Estimated finish",
            format!(
                "{{% set p = value_json.progress %}}{{% set left = p.printTimeLeft if p and p.printTimeLeft is not none else 0 %}}{{{{ (value_json[{ts}] + left) | timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', false) }}}}",
                ts = literal(timestamp_field)
            ),
            json!({"device_class": "timestamp"}),
        )
        .available_if("value_json.progress and value_json.progress.printTimeLeft is not none"),
        entity(
            "sensor",
            "file",
            "Current file",
            "{{ value_json.job.name if value_json.job and value_json.job.name else '' }}".into(),
            json!({"icon": "mdi:file-outline"}),
        )
        .available_if("value_json.job"),
    ];
    let temperature = json!({
        "device_class": "temperature",
        "unit_of_measurement": "°C",
        "state_class": "measurement",
    });
    for heater in &device.heaters {
        let name = heater_name(heater);
        let part = object_part(heater);
        for (key, what) in [("actual", "temperature"), ("target", "target")] {
            list.push(entity(
                "sensor",
                &format!("{part}_{what}"),
                &format!("{name} {what}"),
                format!(
                    "{{% set h = value_json.temperatures.get({h}) %}}{{{{ h.{key} if h and h.{key} is not none else None }}}}",
                    h = literal(heater)
                ),
                temperature.clone(),
            ));
        }
    }
    list
}

/// Every config topic with its payload, in the format Home Assistant has understood since
/// 2023 (full key names, `device`, `availability_topic`, no `object_id`).
pub fn configs(setup: &Setup, device: &Device, node_id: &str) -> Vec<(String, Value)> {
    let mut dev = Map::new();
    dev.insert("identifiers".into(), json!([node_id]));
    dev.insert("name".into(), json!(device.name));
    for (key, value) in [
        ("manufacturer", &device.manufacturer),
        ("model", &device.model),
        ("sw_version", &device.sw_version),
    ] {
        if !value.is_empty() {
            dev.insert(key.into(), json!(value));
        }
    }
    if let Some(url) = device
        .configuration_url
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        dev.insert("configuration_url".into(), json!(url));
    }
    let prefix = setup.prefix.trim_end_matches('/');
    let availability = |available_if: Option<&str>| {
        let mut list: Vec<Value> = setup
            .availability
            .iter()
            .map(|topic| {
                json!({
                    "topic": topic,
                    "payload_available": "connected",
                    "payload_not_available": "disconnected",
                })
            })
            .collect();
        if let Some(condition) = available_if {
            list.push(json!({
                "topic": setup.state_topic,
                "value_template": format!("{{{{ 'online' if {condition} else 'offline' }}}}"),
                "payload_available": "online",
                "payload_not_available": "offline",
            }));
        }
        list
    };
    let finish = |component: &str, object: &str, mut c: Map<String, Value>, available_if| {
        c.insert("unique_id".into(), json!(format!("{node_id}_{object}")));
        let availability = availability(available_if);
        if !availability.is_empty() {
            c.insert("availability".into(), Value::Array(availability));
            c.insert("availability_mode".into(), json!("all"));
        }
        c.insert("device".into(), Value::Object(dev.clone()));
        (
            format!("{prefix}/{component}/{node_id}/{object}/config"),
            Value::Object(c),
        )
    };
    let sensors = entities(device, &setup.timestamp_field)
        .into_iter()
        .map(|e| {
            let mut c = Map::new();
            c.insert("name".into(), json!(e.name));
            c.insert("state_topic".into(), json!(setup.state_topic));
            c.insert("value_template".into(), json!(e.template));
            if let Value::Object(extra) = e.extra {
                c.extend(extra);
            }
            finish(e.component, &e.object, c, e.available_if)
        });
    // A press publishes an empty request (no id: every press is a new one).
    let buttons = setup.buttons.iter().map(|(command, topic)| {
        let mut c = Map::new();
        c.insert("name".into(), json!(button_name(command)));
        c.insert("command_topic".into(), json!(topic));
        c.insert("payload_press".into(), json!("{}"));
        c.insert("qos".into(), json!(1));
        c.insert("icon".into(), json!(button_icon(command)));
        finish("button", command, c, None)
    });
    sensors.chain(buttons).collect()
}

/// `pause` -> `Pause`, `connect` -> `Connect printer`.
fn button_name(command: &str) -> String {
    match command {
        "connect" => "Connect printer".into(),
        "disconnect" => "Disconnect printer".into(),
        "cancel" => "Cancel print".into(),
        "pause" => "Pause print".into(),
        "resume" => "Resume print".into(),
        other => other.into(),
    }
}

fn button_icon(command: &str) -> &'static str {
    match command {
        "connect" => "mdi:lan-connect",
        "disconnect" => "mdi:lan-disconnect",
        "pause" => "mdi:pause",
        "resume" => "mdi:play",
        _ => "mdi:stop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(enabled: bool) -> Setup {
        Setup {
            enabled,
            prefix: "homeassistant".into(),
            node_id: None,
            availability: Some("octoprint/mqtt".into()),
            state_topic: "octoprint/state".into(),
            timestamp_field: "_timestamp".into(),
            buttons: Vec::new(),
        }
    }

    fn device(heaters: &[&str]) -> Device {
        Device {
            name: "Ender".into(),
            manufacturer: "OctoPrint".into(),
            model: "Ender 3".into(),
            sw_version: "1.10.3".into(),
            configuration_url: None,
            heaters: heaters.iter().map(|h| h.to_string()).collect(),
        }
    }

    fn topics(messages: &[Message]) -> Vec<(String, bool)> {
        messages
            .iter()
            .map(|m| (m.topic.clone(), m.payload.is_empty()))
            .collect()
    }

    #[test]
    fn one_config_per_entity_and_heater_reading() {
        let all = configs(&setup(true), &device(&["tool0", "bed"]), "n1");
        let names: Vec<&str> = all.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names.len(), 12);
        assert_eq!(names[0], "homeassistant/binary_sensor/n1/connected/config");
        assert!(names.contains(&"homeassistant/sensor/n1/bed_target/config"));
        let (_, tool) = &all[8];
        assert_eq!(tool["unique_id"], "n1_tool0_temperature");
        assert_eq!(tool["name"], "Tool 0 temperature");
        assert_eq!(tool["device"]["identifiers"], json!(["n1"]));
        assert_eq!(
            tool["availability"],
            json!([{"topic": "octoprint/mqtt", "payload_available": "connected", "payload_not_available": "disconnected"}])
        );
        let (_, file) = &all[7];
        assert_eq!(file["availability"][1]["topic"], "octoprint/state");
        assert_eq!(file["availability_mode"], "all");
        assert!(tool.get("object_id").is_none());
        assert!(tool["device"].get("configuration_url").is_none());
    }

    #[test]
    fn turning_off_and_changing_the_node_id_clear_what_was_published() {
        let d = Discovery::default();
        assert!(d.configure(setup(true)).is_empty(), "no device yet");
        let first = d.identify(device(&["tool0"]), "gen".into(), None, vec![]);
        assert_eq!(first.len(), 10);
        assert!(first.iter().all(|m| m.retain && m.qos == Qos::AtLeastOnce));
        assert!(d.configure(setup(true)).is_empty(), "nothing changed");
        let moved = d.configure(Setup {
            node_id: Some("mine".into()),
            ..setup(true)
        });
        let cleared = topics(&moved)
            .iter()
            .filter(|(t, e)| *e && t.contains("/gen/"))
            .count();
        let new = topics(&moved)
            .iter()
            .filter(|(t, e)| !*e && t.contains("/mine/"))
            .count();
        assert_eq!((cleared, new), (10, 10));
        let fewer = d.identify(device(&[]), "gen".into(), None, vec![]);
        assert_eq!(
            topics(&fewer).len(),
            2,
            "the heater's two sensors are cleared"
        );
        let off = d.configure(setup(false));
        assert_eq!(off.len(), 8);
        assert!(off.iter().all(|m| m.payload.is_empty()));
        assert!(d.current().is_empty());
        assert_eq!(d.report().off, Some(Off::Setting));
    }

    #[test]
    fn another_plugin_or_an_uninstall_keeps_it_off() {
        let d = Discovery::default();
        d.configure(setup(true));
        assert!(d
            .identify(
                device(&[]),
                "gen".into(),
                Some("OctoPrint-HomeAssistant".into()),
                vec![]
            )
            .is_empty());
        assert_eq!(
            d.report().off,
            Some(Off::OtherPlugin("OctoPrint-HomeAssistant".into()))
        );
        assert_eq!(d.identify(device(&[]), "gen".into(), None, vec![]).len(), 8);
        let gone = d.uninstall();
        assert_eq!(gone.len(), 8);
        assert!(d.configure(setup(true)).is_empty());
        assert_eq!(d.report().off, Some(Off::Uninstalling));
    }

    #[test]
    fn allowed_job_commands_get_buttons_and_lose_them_when_disallowed() {
        let d = Discovery::default();
        d.identify(device(&[]), "octoprint-1".into(), None, Vec::new());
        let mut s = setup(true);
        s.buttons = vec![("pause", "octoprint/control/pause".into())];
        let out = d.configure(s.clone());
        let button = out
            .iter()
            .find(|m| m.topic == "homeassistant/button/octoprint-1/pause/config")
            .expect("a pause button");
        let c: Value = serde_json::from_slice(&button.payload).unwrap();
        assert_eq!(c["command_topic"], "octoprint/control/pause");
        assert_eq!(c["payload_press"], "{}");
        assert_eq!(c["unique_id"], "octoprint-1_pause");
        assert_eq!(c["availability"][0]["topic"], "octoprint/mqtt");
        assert!(c.get("state_topic").is_none());
        s.buttons.clear();
        let out = d.configure(s);
        assert_eq!(
            topics(&out),
            [(
                "homeassistant/button/octoprint-1/pause/config".to_string(),
                true
            )]
        );
    }

    #[test]
    fn node_ids_and_heater_names() {
        assert!(valid_node_id("octoprint-1f2e_3"));
        assert!(!valid_node_id(""));
        assert!(!valid_node_id("a/b"));
        assert!(!valid_node_id("a b"));
        assert_eq!(heater_name("tool12"), "Tool 12");
        assert_eq!(heater_name("bed"), "Bed");
        assert_eq!(heater_name("toolx"), "Toolx");
        assert_eq!(object_part("W1 x"), "W1_x");
    }

    #[test]
    fn templates_quote_the_timestamp_field_and_heater() {
        let all = configs(&setup(true), &device(&["it's"]), "n");
        let finish = all
            .iter()
            .find(|(t, _)| t.contains("estimated_finish"))
            .unwrap();
        assert!(finish.1["value_template"]
            .as_str()
            .unwrap()
            .contains("value_json[\"_timestamp\"]"));
        let heater = all.iter().find(|(t, _)| t.contains("it_s_target")).unwrap();
        assert!(heater.1["value_template"]
            .as_str()
            .unwrap()
            .contains("get(\"it's\")"));
    }

    #[test]
    fn topics_an_earlier_run_published_are_cleared_or_published_again() {
        let d = Discovery::default();
        d.configure(setup(true));
        let earlier = vec![
            "homeassistant/sensor/gen/state/config".to_string(),
            "homeassistant/sensor/gen/chamber_target/config".to_string(),
        ];
        let out = d.identify(device(&[]), "gen".into(), None, earlier.clone());
        let cleared: Vec<_> = out.iter().filter(|m| m.payload.is_empty()).collect();
        assert_eq!(cleared.len(), 1);
        assert_eq!(cleared[0].topic, earlier[1]);
        assert_eq!(out.len(), 9, "8 configs and the one clear");
        let blocked = Discovery::default();
        blocked.configure(setup(true));
        let out = blocked.identify(device(&[]), "gen".into(), Some("other".into()), earlier);
        assert!(out.len() == 2 && out.iter().all(|m| m.payload.is_empty()));
        assert!(blocked.report().topics.is_empty());
    }
}
