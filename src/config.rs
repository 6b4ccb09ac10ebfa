//! The plugin's settings tree (`plugins.mqtt`), parsed once per save and split into what
//! needs a reconnect when it changes ([`ConnectionConfig`]) and what applies live
//! ([`PublishConfig`]). Field names are the settings keys of docs/behaviour.md §2.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control;
use crate::discovery;
use crate::events::EventToggles;
use crate::glob;
use crate::lenient::{
    address_list, expiry_seconds, field_name, host_name, interval_seconds, lenient_bool,
    lenient_f64, lenient_string, lenient_u16, optional_string, pattern_list, port_number,
    queue_size, text,
};
use crate::topic;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    pub broker: Broker,
    pub client: Client,
    pub publish: Publish,
    pub homeassistant: HomeAssistant,
    pub control: Control,
    #[serde(deserialize_with = "field_name")]
    pub timestamp_fieldname: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            broker: Broker::default(),
            client: Client::default(),
            publish: Publish::default(),
            homeassistant: HomeAssistant::default(),
            control: Control::default(),
            timestamp_fieldname: "_timestamp".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HomeAssistant {
    /// Where Home Assistant says `online` when it (re)starts; empty: not watched.
    #[serde(rename = "birthTopic", deserialize_with = "lenient_string")]
    pub birth_topic: String,
    #[serde(deserialize_with = "lenient_bool")]
    pub discovery: bool,
    #[serde(deserialize_with = "lenient_string")]
    pub prefix: String,
    /// Unset: the id generated once for this OctoPrint (see the plugin's `_node_id`).
    #[serde(rename = "nodeId", deserialize_with = "optional_string")]
    pub node_id: Option<String>,
}

impl Default for HomeAssistant {
    fn default() -> Self {
        HomeAssistant {
            birth_topic: "homeassistant/status".into(),
            discovery: false,
            prefix: "homeassistant".into(),
            node_id: None,
        }
    }
}

/// Remote control over MQTT (control.rs): off, and every command refused, until the admin
/// turns them on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Control {
    #[serde(deserialize_with = "lenient_bool")]
    pub active: bool,
    /// Under the base topic, with `{command}` as one whole level.
    #[serde(deserialize_with = "lenient_string")]
    pub topic: String,
    /// Under the base topic.
    #[serde(rename = "responseTopic", deserialize_with = "lenient_string")]
    pub response_topic: String,
    /// One switch per name of [`control::COMMANDS`]; other keys are ignored.
    #[serde(deserialize_with = "command_switches")]
    pub commands: std::collections::BTreeMap<String, bool>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            active: false,
            topic: "control/{command}".into(),
            response_topic: "control/response".into(),
            commands: control::COMMANDS
                .iter()
                .map(|c| (c.to_string(), false))
                .collect(),
        }
    }
}

/// `control.commands`: each known command's switch, read as every switch is read (a value
/// that is no switch leaves that command off, with the parse's warning).
fn command_switches<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, bool>, D::Error> {
    #[derive(Deserialize)]
    struct Switch(#[serde(deserialize_with = "lenient_bool")] bool);
    let given: std::collections::BTreeMap<String, serde_json::Value> = Deserialize::deserialize(d)?;
    let mut out = Control::default().commands;
    for (name, value) in given {
        if let Some(slot) = out.get_mut(&name) {
            *slot = Switch::deserialize(value)
                .map_err(|e| serde::de::Error::custom(format!("{name}: {e}")))?
                .0;
        }
    }
    Ok(out)
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Broker {
    #[serde(deserialize_with = "host_name")]
    pub url: Option<String>,
    #[serde(deserialize_with = "port_number")]
    pub port: u16,
    #[serde(deserialize_with = "optional_string")]
    pub username: Option<String>,
    #[serde(deserialize_with = "optional_string")]
    pub password: Option<String>,
    #[serde(deserialize_with = "lenient_u16")]
    pub keepalive: u16,
    #[serde(deserialize_with = "lenient_bool")]
    pub tls_active: bool,
    pub tls: Tls,
    #[serde(deserialize_with = "lenient_bool")]
    pub tls_insecure: bool,
    #[serde(deserialize_with = "lenient_string")]
    pub protocol: String,
    #[serde(deserialize_with = "lenient_bool")]
    pub retain: bool,
    #[serde(rename = "lwRetain", deserialize_with = "lenient_bool")]
    pub lw_retain: bool,
    #[serde(deserialize_with = "lenient_bool")]
    pub clean_session: bool,
    /// `tcp`, or `websockets` (with `tls_active`: secure WebSockets).
    #[serde(deserialize_with = "text")]
    pub transport: String,
    #[serde(deserialize_with = "lenient_string")]
    pub ws_path: String,
    /// More nodes of the same broker (a cluster), `host` or `host:port`, tried in turn after
    /// `url` when a connection fails (link.rs).
    #[serde(deserialize_with = "address_list")]
    pub failover: Vec<String>,
}

impl Default for Broker {
    fn default() -> Self {
        Broker {
            url: None,
            port: 1883,
            username: None,
            password: None,
            keepalive: 60,
            tls_active: false,
            tls: Tls::default(),
            tls_insecure: false,
            protocol: "MQTTv311".into(),
            retain: true,
            lw_retain: true,
            clean_session: true,
            transport: "tcp".into(),
            ws_path: "/mqtt".into(),
            failover: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Broker {
    // Hand-written so that the password can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.url)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("protocol", &self.protocol)
            .field("tls_active", &self.tls_active)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Tls {
    #[serde(deserialize_with = "optional_string")]
    pub ca_certs: Option<String>,
    #[serde(deserialize_with = "optional_string")]
    pub certfile: Option<String>,
    #[serde(deserialize_with = "optional_string")]
    pub keyfile: Option<String>,
    #[serde(deserialize_with = "optional_string")]
    pub ciphers: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Client {
    #[serde(deserialize_with = "optional_string")]
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Publish {
    #[serde(rename = "baseTopic", deserialize_with = "lenient_string")]
    pub base_topic: String,
    #[serde(rename = "eventTopic", deserialize_with = "lenient_string")]
    pub event_topic: String,
    #[serde(rename = "eventActive", deserialize_with = "lenient_bool")]
    pub event_active: bool,
    pub events: EventToggles,
    /// Names and shell-style patterns of events not to publish.
    #[serde(rename = "eventExclude", deserialize_with = "pattern_list")]
    pub event_exclude: Vec<String>,
    /// Read by the Python side only (OctoPrint's printer data in progress messages); here so
    /// that the defaults tree has it.
    #[serde(rename = "printerData", deserialize_with = "lenient_bool")]
    pub printer_data: bool,
    #[serde(rename = "progressTopic", deserialize_with = "lenient_string")]
    pub progress_topic: String,
    #[serde(rename = "progressActive", deserialize_with = "lenient_bool")]
    pub progress_active: bool,
    #[serde(rename = "temperatureTopic", deserialize_with = "lenient_string")]
    pub temperature_topic: String,
    #[serde(rename = "temperatureActive", deserialize_with = "lenient_bool")]
    pub temperature_active: bool,
    #[serde(rename = "temperatureThreshold", deserialize_with = "lenient_f64")]
    pub temperature_threshold: f64,
    /// Seconds between two messages of one heater, at least; 0: every change.
    #[serde(rename = "temperatureInterval", deserialize_with = "interval_seconds")]
    pub temperature_interval: f64,
    #[serde(rename = "stateTopic", deserialize_with = "lenient_string")]
    pub state_topic: String,
    #[serde(rename = "stateActive", deserialize_with = "lenient_bool")]
    pub state_active: bool,
    /// Seconds between two state messages that only carry new progress or temperatures.
    #[serde(rename = "stateInterval", deserialize_with = "interval_seconds")]
    pub state_interval: f64,
    /// MQTT 5 message expiry of the state message in seconds; 0: none.
    #[serde(rename = "stateExpiry", deserialize_with = "expiry_seconds")]
    pub state_expiry: u32,
    #[serde(rename = "metadataTopic", deserialize_with = "lenient_string")]
    pub metadata_topic: String,
    #[serde(rename = "metadataActive", deserialize_with = "lenient_bool")]
    pub metadata_active: bool,
    #[serde(rename = "metadataKeys", deserialize_with = "lenient_string")]
    pub metadata_keys: String,
    #[serde(rename = "lwTopic", deserialize_with = "lenient_string")]
    pub lw_topic: String,
    #[serde(rename = "lwActive", deserialize_with = "lenient_bool")]
    pub lw_active: bool,
    /// Keep the plugin's own events in the offline queue while disconnected.
    #[serde(rename = "queueWhileOffline", deserialize_with = "lenient_bool")]
    pub queue_while_offline: bool,
    #[serde(rename = "offlineQueueSize", deserialize_with = "queue_size")]
    pub offline_queue_size: usize,
}

impl Default for Publish {
    fn default() -> Self {
        Publish {
            base_topic: "octoprint/".into(),
            event_topic: "event/{event}".into(),
            event_active: true,
            events: EventToggles::default(),
            event_exclude: Vec::new(),
            printer_data: false,
            progress_topic: "progress/{progress}".into(),
            progress_active: true,
            temperature_topic: "temperature/{temp}".into(),
            temperature_active: true,
            temperature_threshold: 0.1,
            temperature_interval: 0.0,
            state_topic: "state".into(),
            state_active: true,
            state_interval: 1.0,
            state_expiry: 0,
            metadata_topic: "metadata/{key}".into(),
            metadata_active: false,
            metadata_keys: String::new(),
            lw_topic: "mqtt".into(),
            lw_active: true,
            queue_while_offline: true,
            offline_queue_size: DEFAULT_QUEUE_SIZE,
        }
    }
}

pub const DEFAULT_QUEUE_SIZE: usize = 10_000;

/// The whole settings tree with its defaults, as OctoPrint's `get_settings_defaults` returns
/// it: the structs above are the one place the defaults are written.
pub fn default_tree() -> serde_json::Value {
    serde_json::to_value(Settings::default()).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V311,
    V5,
}

/// The status topic: `connected` after each connect, `disconnected` on a clean stop and as
/// the last will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTopic {
    pub topic: String,
    pub retain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub files: Tls,
    pub insecure: bool,
}

/// Everything that needs a new connection when it changes. Compared as a whole on save.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keepalive: u16,
    pub client_id: String,
    pub clean_session: bool,
    pub protocol: Protocol,
    /// The protocol setting as stored, when it needed interpreting (logged once per connect).
    pub protocol_note: Option<String>,
    pub tls: Option<TlsConfig>,
    /// The HTTP path when connecting over WebSockets; `None` for plain TCP.
    pub websocket_path: Option<String>,
    pub status: Option<StatusTopic>,
    /// `broker.failover`, read: the other nodes, tried in turn after `host:port`.
    pub failover: Vec<(String, u16)>,
}

impl std::fmt::Debug for ConnectionConfig {
    // Hand-written so that the password can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("client_id", &self.client_id)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl ConnectionConfig {
    /// Same host, port, user, TLS (files, ciphers, checks), transport and WebSocket path:
    /// the saved password may only go where it was saved for, the same way.
    pub fn same_endpoint(&self, other: &ConnectionConfig) -> bool {
        self.host == other.host
            && self.port == other.port
            && self.username == other.username
            && self.tls == other.tls
            && self.websocket_path == other.websocket_path
    }

    /// `host:port`, for log lines and the status.
    pub fn address(&self) -> String {
        address_text(&self.host, self.port)
    }

    /// Every node to connect to, `host:port` first.
    pub fn endpoints(&self) -> Vec<(String, u16)> {
        std::iter::once((self.host.clone(), self.port))
            .chain(self.failover.iter().cloned())
            .collect()
    }
}

pub fn address_text(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One `broker.failover` entry: `host`, `host:port`, `[v6]:port` or a bare IPv6 address;
/// without a port, `default_port` (`broker.port`).
pub fn failover_address(entry: &str, default_port: u16) -> Result<(String, u16), String> {
    let entry = entry.trim();
    let bad = |why: &str| Err(format!("{entry:?}: {why}"));
    if entry.contains("://") || entry.contains(char::is_whitespace) || entry.contains('/') {
        return bad("enter host or host:port only (no scheme, path or spaces)");
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return bad("an IPv6 address in [ ] lacks its ]");
        };
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return bad("expected :port after ]"),
        }
    } else if entry.matches(':').count() > 1 {
        (entry, None) // a bare IPv6 address
    } else {
        match entry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (entry, None),
        }
    };
    if host.is_empty() {
        return bad("no host");
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return bad("the port must be a whole number from 1 to 65535"),
        },
    };
    Ok((host.to_string(), port))
}

/// What the caller's thread needs to turn an event into a message.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub base_topic: String,
    pub event_topic: String,
    pub event_active: bool,
    pub events: EventToggles,
    /// `publish.eventExclude`, its usable patterns compiled.
    pub event_exclude: glob::Matcher,
    pub retain: bool,
    pub timestamp_field: String,
    pub queue_events_offline: bool,
    pub progress_topic: String,
    pub progress_active: bool,
    pub temperature_topic: String,
    pub temperature_active: bool,
    pub temperature_threshold: f64,
    pub temperature_interval: Duration,
    /// The whole state topic, base included.
    pub state_topic: String,
    pub state_active: bool,
    pub state_interval: Duration,
    pub state_expiry: Option<u32>,
    pub metadata_topic: String,
    pub metadata_active: bool,
    /// `publish.metadataKeys` split at commas, trimmed, empty entries left out.
    pub metadata_keys: Vec<String>,
}

/// Reads the settings tree. A value that cannot be used (a port of `""` from a cleared form
/// field, a keepalive of `None`) falls back to its default, with a warning naming the key,
/// instead of discarding the whole tree and with it every other setting.
pub fn parse_lenient(mut value: serde_json::Value) -> (Settings, Vec<String>) {
    let mut warnings = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, Settings>(&value) {
            Ok(mut settings) => {
                warnings.extend(settings.sanitize());
                return (settings, warnings);
            }
            Err(e) => {
                let path = e.path().to_string();
                warnings.push(format!(
                    "plugins.mqtt.{path}: {}; using its default",
                    e.inner()
                ));
                if !remove_path(&mut value, e.path()) {
                    // Not a dict at all: nothing usable.
                    return (Settings::default(), warnings);
                }
            }
        }
    }
}

/// Removes the value at `path` from nested objects; false when there is none to remove.
fn remove_path(value: &mut serde_json::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let keys: Vec<&str> = path
        .iter()
        .map_while(|seg| match seg {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut node = value;
    for key in parents {
        match node.get_mut(*key) {
            Some(child) => node = child,
            None => return false,
        }
    }
    node.as_object_mut()
        .is_some_and(|obj| obj.remove(*last).is_some())
}

/// The longest client id MQTT can encode: its length is a 16-bit prefix.
const MAX_CLIENT_ID_BYTES: usize = 65_535;

/// The shortest keepalive the MQTT 5 client accepts.
const MIN_V5_KEEPALIVE: u16 = 5;

impl Settings {
    /// Replaces the values that parse but cannot work with what docs/settings.md's table
    /// names as their fallback, and says for each what was wrong (with the key, like the
    /// parse warnings). Without it they would fail quietly: a last will on a wildcard topic
    /// makes the broker drop every connection, a longer client id is sent with a wrong length.
    pub fn sanitize(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let transport = self.broker.transport.trim().to_ascii_lowercase();
        if !matches!(
            transport.as_str(),
            "" | "tcp" | "websockets" | "websocket" | "ws"
        ) {
            warnings.push(format!(
                "plugins.mqtt.broker.transport: {:?} is neither \"tcp\" nor \"websockets\"; connecting over tcp",
                self.broker.transport
            ));
            self.broker.transport = "tcp".into();
        }
        if let Some(id) = &self.client.client_id {
            if id.len() > MAX_CLIENT_ID_BYTES {
                warnings.push(format!(
                    "plugins.mqtt.client.client_id: {} bytes long, more than the 65535 MQTT can send; using a random client id",
                    id.len()
                ));
                self.client.client_id = None;
            }
        }
        let port = self.broker.port;
        let (usable, unusable): (Vec<String>, Vec<String>) =
            std::mem::take(&mut self.broker.failover)
                .into_iter()
                .partition(|a| failover_address(a, port).is_ok());
        for a in &unusable {
            if let Err(e) = failover_address(a, port) {
                warnings.push(format!("plugins.mqtt.broker.failover: {e}; left out"));
            }
        }
        self.broker.failover = usable;
        let unusable = glob::unusable(&self.publish.event_exclude);
        if !unusable.is_empty() {
            warnings.push(format!(
                "plugins.mqtt.publish.eventExclude: {}; left out (events they would match are published)",
                unusable.join("; ")
            ));
            self.publish
                .event_exclude
                .retain(|p| glob::check(p).is_ok());
        }
        warnings.extend(self.homeassistant.sanitize());
        if self.publish.lw_active {
            let status = format!("{}{}", self.publish.base_topic, self.publish.lw_topic);
            if let Err(e) = topic::validate_topic(&status) {
                let fallback = format!("{}mqtt", self.publish.base_topic);
                if topic::validate_topic(&fallback).is_ok() {
                    warnings.push(format!(
                        "plugins.mqtt.publish.lwTopic: the status topic is not usable ({e}); using {fallback:?}"
                    ));
                    self.publish.lw_topic = "mqtt".into();
                } else {
                    warnings.push(format!(
                        "plugins.mqtt.publish.baseTopic: the status topic is not usable ({e}); no status topic and no last will"
                    ));
                    self.publish.lw_active = false;
                }
            }
        }
        warnings.extend(self.control.sanitize(&self.publish.base_topic));
        warnings
    }

    /// `None` when no broker is set: the plugin then stays idle. `default_client_id` is used
    /// when `client.client_id` is unset.
    pub fn connection(&self, default_client_id: &str) -> Option<ConnectionConfig> {
        let host = self.broker.url.as_deref()?.trim();
        if host.is_empty() {
            return None;
        }
        let stored = self.broker.protocol.trim();
        let (protocol, protocol_note) = match stored {
            "MQTTv5" | "MQTTv50" | "5" => (Protocol::V5, None),
            "MQTTv311" | "" => (Protocol::V311, None),
            "MQTTv31" => (
                Protocol::V311,
                Some(
                    "broker.protocol MQTTv31 (MQTT 3.1) is obsolete: connecting with MQTT 3.1.1"
                        .into(),
                ),
            ),
            other => (
                Protocol::V311,
                Some(format!(
                    "broker.protocol {other:?} is unknown: connecting with MQTT 3.1.1"
                )),
            ),
        };
        // rumqttc refuses MQTT 5 keepalives under 5 s (0 included) with a panic.
        let mut keepalive = self.broker.keepalive;
        let mut protocol_note = protocol_note;
        if protocol == Protocol::V5 && keepalive < MIN_V5_KEEPALIVE {
            protocol_note = Some(format!(
                "broker.keepalive {keepalive} s is not possible with MQTT 5 here: using {MIN_V5_KEEPALIVE} s"
            ));
            keepalive = MIN_V5_KEEPALIVE;
        }
        let status = self.publish.lw_active.then(|| StatusTopic {
            topic: format!("{}{}", self.publish.base_topic, self.publish.lw_topic),
            retain: self.broker.lw_retain,
        });
        Some(ConnectionConfig {
            host: host.to_string(),
            port: self.broker.port,
            // Credentials go out only with a user name, as the classic plugin did.
            password: self
                .broker
                .username
                .as_ref()
                .and(self.broker.password.clone()),
            username: self.broker.username.clone(),
            keepalive,
            client_id: self
                .client
                .client_id
                .clone()
                .unwrap_or_else(|| default_client_id.to_string()),
            clean_session: self.broker.clean_session,
            protocol,
            protocol_note,
            tls: self.broker.tls_active.then(|| TlsConfig {
                files: self.broker.tls.clone(),
                insecure: self.broker.tls_insecure,
            }),
            websocket_path: matches!(
                self.broker.transport.trim().to_ascii_lowercase().as_str(),
                "websockets" | "websocket" | "ws"
            )
            .then(|| match self.broker.ws_path.trim() {
                "" => "/".to_string(),
                p if p.starts_with('/') => p.to_string(),
                p => format!("/{p}"),
            }),
            status,
            failover: self
                .broker
                .failover
                .iter()
                .filter_map(|a| failover_address(a, self.broker.port).ok())
                .collect(),
        })
    }

    /// The birth topic to watch, if any.
    pub fn birth_topic(&self) -> Option<String> {
        Some(self.homeassistant.birth_topic.clone()).filter(|t| !t.is_empty())
    }

    /// What remote control listens to and allows, when it is on (see control.rs).
    pub fn control(&self) -> Option<control::Setup> {
        let c = &self.control;
        c.active.then(|| {
            control::Setup::new(
                &self.publish.base_topic,
                &c.topic,
                &c.response_topic,
                control::COMMANDS
                    .iter()
                    .copied()
                    .filter(|name| c.commands.get(*name).copied().unwrap_or(false))
                    .collect(),
                vec![
                    self.publish.base_topic.clone(),
                    format!("{}/", self.homeassistant.prefix),
                ],
            )
        })
    }

    /// What discovery reads (see discovery.rs).
    pub fn discovery(&self) -> discovery::Setup {
        let p = &self.publish;
        discovery::Setup {
            enabled: self.homeassistant.discovery,
            prefix: self.homeassistant.prefix.clone(),
            node_id: self.homeassistant.node_id.clone(),
            availability: p
                .lw_active
                .then(|| format!("{}{}", p.base_topic, p.lw_topic)),
            state_topic: if p.state_active {
                format!("{}{}", p.base_topic, p.state_topic)
            } else {
                String::new()
            },
            timestamp_field: self.timestamp_fieldname.clone(),
            buttons: self.control().map(|c| c.buttons()).unwrap_or_default(),
        }
    }

    pub fn publishing(&self) -> PublishConfig {
        PublishConfig {
            base_topic: self.publish.base_topic.clone(),
            event_topic: self.publish.event_topic.clone(),
            event_active: self.publish.event_active,
            events: self.publish.events.clone(),
            event_exclude: glob::Matcher::new(
                self.publish.event_exclude.iter().map(String::as_str),
            ),
            retain: self.broker.retain,
            timestamp_field: self.timestamp_fieldname.clone(),
            queue_events_offline: self.publish.queue_while_offline,
            progress_topic: self.publish.progress_topic.clone(),
            progress_active: self.publish.progress_active,
            temperature_topic: self.publish.temperature_topic.clone(),
            temperature_active: self.publish.temperature_active,
            temperature_threshold: self.publish.temperature_threshold.max(0.0),
            temperature_interval: seconds(self.publish.temperature_interval),
            state_topic: format!("{}{}", self.publish.base_topic, self.publish.state_topic),
            state_active: self.publish.state_active,
            state_interval: seconds(self.publish.state_interval),
            state_expiry: Some(self.publish.state_expiry).filter(|&s| s > 0),
            metadata_topic: self.publish.metadata_topic.clone(),
            metadata_active: self.publish.metadata_active,
            metadata_keys: self
                .publish
                .metadata_keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect(),
        }
    }
}

impl HomeAssistant {
    /// Values that parse but cannot work fall back to their defaults, with a warning.
    fn sanitize(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        let defaults = HomeAssistant::default();
        self.birth_topic = self.birth_topic.trim().to_string();
        if let Err(e) = birth_topic_problem(&self.birth_topic) {
            warnings.push(format!(
                "plugins.mqtt.homeassistant.birthTopic: {e}; using {:?}",
                defaults.birth_topic
            ));
            self.birth_topic = defaults.birth_topic;
        }
        self.prefix = self.prefix.trim().trim_end_matches('/').to_string();
        if let Err(e) = prefix_problem(&self.prefix) {
            warnings.push(format!(
                "plugins.mqtt.homeassistant.prefix: {e}; using {:?}",
                defaults.prefix
            ));
            self.prefix = defaults.prefix;
        }
        if let Some(id) = self.node_id.take() {
            let trimmed = id.trim();
            if discovery::valid_node_id(trimmed) {
                self.node_id = Some(trimmed.to_string());
            } else if !trimmed.is_empty() {
                warnings.push(format!(
                    "plugins.mqtt.homeassistant.nodeId: {id:?} {NODE_ID_RULE}; using the id generated for this OctoPrint"
                ));
            }
        }
        warnings
    }
}

impl Control {
    /// Topics that cannot work fall back to their defaults, with a warning; when even those
    /// cannot (a base topic with wildcards), remote control stays off. Checked only while
    /// it is on: nothing is subscribed otherwise.
    fn sanitize(&mut self, base: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.active {
            return warnings;
        }
        let defaults = Control::default();
        if let Err(e) = control::request_topic_problem(base, &defaults.topic) {
            warnings.push(format!(
                "plugins.mqtt.control: no request topic can work under the base topic ({e}); remote control is off"
            ));
            self.active = false;
            return warnings;
        }
        self.topic = self.topic.trim().to_string();
        if let Err(e) = control::request_topic_problem(base, &self.topic) {
            warnings.push(format!(
                "plugins.mqtt.control.topic: {e}; using {:?}",
                defaults.topic
            ));
            self.topic = defaults.topic;
        }
        self.response_topic = self.response_topic.trim().to_string();
        if let Err(e) = control::response_topic_problem(base, &self.response_topic, &self.topic) {
            warnings.push(format!(
                "plugins.mqtt.control.responseTopic: {e}; using {:?}",
                defaults.response_topic
            ));
            self.response_topic = defaults.response_topic;
        }
        warnings
    }
}

/// What a node id must be, as the log and the settings page say it.
pub const NODE_ID_RULE: &str =
    "must be 1 to 64 letters, digits, '_' or '-' (Home Assistant's rule for discovery topics)";

/// `homeassistant.birthTopic`: empty (not watched) or a topic (no wildcards).
pub fn birth_topic_problem(topic: &str) -> crate::error::Result<()> {
    if topic.is_empty() {
        return Ok(());
    }
    topic::validate_topic(topic)
}

/// `homeassistant.prefix`: the first levels of every discovery topic.
pub fn prefix_problem(prefix: &str) -> crate::error::Result<()> {
    if prefix.is_empty() {
        return Err(crate::error::Error::ArgumentValue(
            "the discovery prefix cannot be empty".into(),
        ));
    }
    topic::validate_topic(&format!("{prefix}/sensor/node/object/config"))
}

impl PublishConfig {
    fn under_base(&self, template: &str, placeholder: &str, value: &str) -> String {
        let mut t = self.base_topic.clone();
        t.push_str(&topic::render(template, placeholder, value));
        t
    }

    pub fn event_topic(&self, event: &str) -> String {
        self.under_base(&self.event_topic, "event", event)
    }

    /// Whether `publish.eventExclude` keeps `event` from being published.
    pub fn excluded(&self, event: &str) -> bool {
        self.event_exclude.matches(event)
    }

    /// `kind` is `printing` or `slicing`.
    pub fn progress_topic(&self, kind: &str) -> String {
        self.under_base(&self.progress_topic, "progress", kind)
    }

    pub fn temperature_topic(&self, heater: &str) -> String {
        self.under_base(&self.temperature_topic, "temp", heater)
    }

    pub fn metadata_topic(&self, key: &str) -> String {
        self.under_base(&self.metadata_topic, "key", key)
    }
}

/// An interval as read by [`interval_seconds`] (finite, within its rule's range).
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// A fresh random client id. The core makes one and keeps it for its whole life: brokers
/// treat a new id as a new client, and a persistent session needs a non-empty one.
pub fn generate_client_id() -> String {
    // RandomState is seeded randomly per process and advances per instance.
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("octoprint-mqtt-{:012x}", h.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Settings {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = parse("{}");
        assert_eq!(s.broker.port, 1883);
        assert_eq!(s.broker.keepalive, 60);
        assert!(s.broker.retain && s.broker.lw_retain && s.broker.clean_session);
        assert_eq!(s.publish.base_topic, "octoprint/");
        assert_eq!(s.publish.event_topic, "event/{event}");
        assert_eq!(s.publish.lw_topic, "mqtt");
        assert_eq!(s.timestamp_fieldname, "_timestamp");
        assert!(s.connection("gen").is_none(), "no url: idle");
    }

    #[test]
    fn loose_values_from_the_settings_dialog() {
        let s = parse(
            r#"{"broker": {"url": " mqtt.lan ", "port": "8883", "keepalive": 30.0,
                "tls_active": "true", "username": "", "password": "x", "unknown": 1},
                "publish": {"hassTopic": "homeassistant"}}"#,
        );
        let c = s.connection("gen").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.keepalive),
            ("mqtt.lan", 8883, 30)
        );
        assert!(c.tls.is_some());
        assert_eq!(c.username, None);
        assert_eq!(c.password, None, "no password without a user name");
    }

    #[test]
    fn websocket_transport_and_path() {
        let c = |extra: &str| {
            parse(&format!(r#"{{"broker": {{"url": "h"{extra}}}}}"#))
                .connection("id")
                .unwrap()
                .websocket_path
        };
        assert_eq!(c(""), None);
        assert_eq!(
            c(r#", "transport": "websockets""#).as_deref(),
            Some("/mqtt")
        );
        assert_eq!(
            c(r#", "transport": "websockets", "ws_path": "ws""#).as_deref(),
            Some("/ws")
        );
    }

    #[test]
    fn bad_port_is_an_error() {
        assert!(serde_json::from_str::<Settings>(r#"{"broker": {"port": 70000}}"#).is_err());
        // What a listener means by "any port": no broker is there.
        let (s, w) = parse_lenient(serde_json::json!({"broker": {"port": 0}}));
        assert_eq!(s.broker.port, 1883);
        assert!(
            w[0].starts_with("plugins.mqtt.broker.port: expected a whole number from 1 to 65535"),
            "{w:?}"
        );
        let (s, w) =
            parse_lenient(serde_json::json!({"publish": {"offlineQueueSize": 10_000_001}}));
        assert_eq!(
            (s.publish.offline_queue_size, w.len()),
            (DEFAULT_QUEUE_SIZE, 1)
        );
    }

    #[test]
    fn event_exclude_is_a_list_however_it_was_stored() {
        let read = |v: serde_json::Value| {
            let (s, w) = parse_lenient(serde_json::json!({"publish": {"eventExclude": v}}));
            (s.publish.event_exclude, w)
        };
        let (list, w) = read(serde_json::json!([" ZChange", "Position*\t"]));
        assert_eq!(
            (list, w.len()),
            (vec!["ZChange".into(), "Position*".into()], 0)
        );
        let (list, w) = read(serde_json::json!(" ZChange, ,plugin_*,"));
        assert_eq!(
            (list, w.len()),
            (vec!["ZChange".into(), "plugin_*".into()], 0)
        );
        assert_eq!(read(serde_json::json!(null)), (vec![], vec![]));

        // Unusable patterns are left out, all named in one warning; the others apply.
        let (list, w) = read(serde_json::json!(["Pos[", "ZChange", "a b", ""]));
        assert_eq!(list, ["ZChange"]);
        assert_eq!(
            w,
            ["plugins.mqtt.publish.eventExclude: \"Pos[\": the [ at character 4 is never closed; \
              \"a b\": contains a space, which no event name has; \"\": an empty pattern; \
              left out (events they would match are published)"]
        );
        // Not a list of text: none at all, with the key named.
        for (v, said) in [
            (
                serde_json::json!(5),
                "expected a list of event names or patterns, got a number",
            ),
            (
                serde_json::json!({"a": 1}),
                "expected a list of event names or patterns, got a dict",
            ),
            (serde_json::json!(["a", 1]), "entry 2 is a number, not text"),
        ] {
            let (list, w) = read(v.clone());
            assert!(list.is_empty(), "{v}");
            assert_eq!(
                w,
                [format!(
                    "plugins.mqtt.publish.eventExclude: {said}; using its default"
                )]
            );
        }
        let p = parse(r#"{"publish": {"eventExclude": ["ZChange", "Position*"]}}"#).publishing();
        assert!(p.excluded("ZChange") && p.excluded("PositionUpdate"));
        assert!(!p.excluded("PrintDone") && !Settings::default().publishing().excluded("ZChange"));
    }

    #[test]
    fn the_defaults_tree_reads_back_as_the_defaults_without_a_word() {
        let tree = default_tree();
        assert_eq!(tree["broker"]["port"], 1883);
        assert_eq!(tree["broker"]["tls"]["ca_certs"], serde_json::Value::Null);
        assert_eq!(tree["publish"]["printerData"], false);
        assert_eq!(tree["publish"]["events"]["unclassified"], true);
        assert_eq!(tree["publish"]["eventExclude"], serde_json::json!([]));
        let (s, w) = parse_lenient(tree.clone());
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(serde_json::to_value(s).unwrap(), tree);
    }

    #[test]
    fn protocol_mapping() {
        let c = |p: &str| {
            parse(&format!(
                r#"{{"broker": {{"url": "h", "protocol": "{p}"}}}}"#
            ))
            .connection("gen")
            .unwrap()
        };
        assert_eq!(c("MQTTv5").protocol, Protocol::V5);
        assert_eq!(c("MQTTv311").protocol, Protocol::V311);
        assert!(c("MQTTv311").protocol_note.is_none());
        let old = c("MQTTv31");
        assert_eq!(old.protocol, Protocol::V311);
        assert!(old.protocol_note.unwrap().contains("3.1.1"));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let s = parse(r#"{"broker": {"url": "h", "username": "u", "password": "hunter2"}}"#);
        let shown = format!("{s:?} {:?}", s.connection("id"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<hidden>"), "{shown}");
    }

    #[test]
    fn unusable_values_fall_back_to_their_defaults_alone() {
        let (s, warnings) = parse_lenient(serde_json::json!({
            "broker": {"url": "h", "port": "", "keepalive": null, "retain": "maybe",
                       "tls": "not a dict"},
            "publish": {"baseTopic": "mine/", "temperatureThreshold": "warm"},
        }));
        assert_eq!(s.broker.url.as_deref(), Some("h"));
        assert_eq!(s.broker.port, 1883);
        assert_eq!(s.broker.keepalive, 60);
        assert!(s.broker.retain);
        assert_eq!(s.broker.tls, Tls::default());
        assert_eq!(s.publish.base_topic, "mine/");
        assert_eq!(s.publish.temperature_threshold, 0.1);
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        assert!(
            warnings[0].starts_with("plugins.mqtt.broker.port: "),
            "{warnings:?}"
        );
        assert!(warnings.iter().all(|w| w.ends_with("; using its default")));
        let (_, none) = parse_lenient(serde_json::json!({"broker": {"port": "8883"}}));
        assert!(none.is_empty());
        let (_, top) = parse_lenient(serde_json::json!(["not", "a", "dict"]));
        assert_eq!(top.len(), 1);
    }

    #[test]
    fn mqtt5_keepalive_is_at_least_five_seconds() {
        let c = |p: &str, k: u16| {
            parse(&format!(
                r#"{{"broker": {{"url": "h", "protocol": "{p}", "keepalive": {k}}}}}"#
            ))
            .connection("gen")
            .unwrap()
        };
        for k in [0, 1, 4] {
            let v5 = c("MQTTv5", k);
            assert_eq!(v5.keepalive, 5);
            assert!(v5.protocol_note.unwrap().contains("using 5 s"));
            assert_eq!(c("MQTTv311", k).keepalive, k);
        }
        assert_eq!(c("MQTTv5", 5).keepalive, 5);
        assert!(c("MQTTv5", 5).protocol_note.is_none());
    }

    #[test]
    fn status_topic_and_client_id() {
        let s = parse(
            r#"{"broker": {"url": "h", "lwRetain": false}, "publish": {"baseTopic": "farm/p1/"}}"#,
        );
        let c = s.connection("gen").unwrap();
        assert_eq!(
            c.status,
            Some(StatusTopic {
                topic: "farm/p1/mqtt".into(),
                retain: false
            })
        );
        assert_eq!(c.client_id, "gen");
        let own = parse(r#"{"broker": {"url": "h"}, "client": {"client_id": "printer-1"}}"#);
        assert_eq!(own.connection("gen").unwrap().client_id, "printer-1");
        assert!(generate_client_id().starts_with("octoprint-mqtt-"));
        assert_ne!(generate_client_id(), generate_client_id());
        let off = parse(r#"{"broker": {"url": "h"}, "publish": {"lwActive": false}}"#);
        assert!(off.connection("gen").unwrap().status.is_none());
    }

    #[test]
    fn password_is_hidden_in_debug_output() {
        let c = parse(r#"{"broker": {"url": "h", "username": "u", "password": "hunter2"}}"#)
            .connection("gen")
            .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn topics_under_the_base() {
        let p =
            parse(r#"{"publish": {"metadataKeys": " a.b, ,c ", "temperatureThreshold": "0.5"}}"#)
                .publishing();
        assert_eq!(p.progress_topic("slicing"), "octoprint/progress/slicing");
        assert_eq!(p.temperature_topic("tool1"), "octoprint/temperature/tool1");
        assert_eq!(p.metadata_topic("a.b"), "octoprint/metadata/a.b");
        assert_eq!(p.metadata_keys, ["a.b", "c"]);
        assert_eq!(p.temperature_threshold, 0.5);
    }

    #[test]
    fn failover_addresses() {
        assert_eq!(failover_address("b", 1883), Ok(("b".into(), 1883)));
        assert_eq!(failover_address(" b:1884 ", 1883), Ok(("b".into(), 1884)));
        assert_eq!(
            failover_address("[::1]:1884", 1883),
            Ok(("::1".into(), 1884))
        );
        assert_eq!(
            failover_address("fe80::1", 1883),
            Ok(("fe80::1".into(), 1883))
        );
        for bad in ["mqtt://b", "b:0", "b:x", ":1883", "[::1", "b c", "b/x"] {
            assert!(failover_address(bad, 1883).is_err(), "{bad}");
        }
        let (s, w) = parse_lenient(serde_json::json!({
            "broker": {"url": "a", "port": 1885, "failover": "b, c:1900, mqtt://d"},
        }));
        let c = s.connection("id").unwrap();
        assert_eq!(
            c.endpoints(),
            [("a".into(), 1885), ("b".into(), 1885), ("c".into(), 1900)]
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("plugins.mqtt.broker.failover: \"mqtt://d\""),
            "{w:?}"
        );
        let (s, _) = parse_lenient(serde_json::json!({"broker": {"url": "a", "failover": ["b"]}}));
        assert_eq!(s.connection("id").unwrap().failover, [("b".into(), 1883)]);
    }

    #[test]
    fn control_topics_that_cannot_work_fall_back_or_turn_control_off() {
        let (s, w) = parse_lenient(serde_json::json!({
            "control": {"active": true, "topic": "control", "responseTopic": " r ",
                        "commands": {"pause": "yes", "dance": true}},
        }));
        let c = s.control().expect("on");
        assert_eq!(c.filter, "octoprint/control/+");
        assert_eq!(c.response_topic, "octoprint/r");
        assert_eq!(
            c.buttons(),
            [("pause", "octoprint/control/pause".to_string())]
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("plugins.mqtt.control.topic: "), "{w:?}");
        // Off: not checked, nothing said.
        let (s, w) = parse_lenient(serde_json::json!({"control": {"topic": "x"}}));
        assert!(s.control().is_none() && w.is_empty(), "{w:?}");
        // A base topic no control topic can work under.
        let (s, w) = parse_lenient(serde_json::json!({
            "publish": {"baseTopic": "a/#/"}, "control": {"active": true},
        }));
        assert!(s.control().is_none());
        assert!(
            w.iter().any(|w| w.contains("remote control is off")),
            "{w:?}"
        );
    }

    #[test]
    fn values_that_parse_but_cannot_work_get_their_fallback() {
        let (s, w) = parse_lenient(serde_json::json!({
            "broker": {"url": "h", "transport": "pigeon"},
            "client": {"client_id": "x".repeat(65_536)},
            "publish": {"baseTopic": "b/", "lwTopic": "st/#"},
        }));
        let c = s.connection("random").unwrap();
        assert_eq!(c.websocket_path, None);
        assert_eq!(c.client_id, "random");
        assert_eq!(c.status.unwrap().topic, "b/mqtt");
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].starts_with("plugins.mqtt.broker.transport: \"pigeon\""),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("plugins.mqtt.client.client_id: 65536 bytes"),
            "{w:?}"
        );
        assert!(w[2].starts_with("plugins.mqtt.publish.lwTopic: "), "{w:?}");

        let (s, w) = parse_lenient(serde_json::json!({
            "broker": {"url": "h"}, "publish": {"baseTopic": "a/+/"},
        }));
        assert!(s.connection("id").unwrap().status.is_none());
        assert!(
            w[0].starts_with("plugins.mqtt.publish.baseTopic: ")
                && w[0].contains("no status topic")
        );

        // At the limits: kept, nothing said.
        let (s, w) = parse_lenient(serde_json::json!({
            "broker": {"url": "h", "transport": " WebSockets "},
            "client": {"client_id": "x".repeat(65_535)},
            "publish": {"lwTopic": ""},
        }));
        assert!(w.is_empty(), "{w:?}");
        let c = s.connection("random").unwrap();
        assert_eq!(c.client_id.len(), 65_535);
        assert_eq!(c.status.unwrap().topic, "octoprint/");
        assert_eq!(c.websocket_path.as_deref(), Some("/mqtt"));
    }

    #[test]
    fn url_transport_and_timestamp_of_the_wrong_kind() {
        for url in [
            serde_json::json!(["h"]),
            serde_json::json!(1883),
            serde_json::json!(true),
        ] {
            let (s, w) = parse_lenient(serde_json::json!({"broker": {"url": url}}));
            assert!(s.connection("id").is_none());
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(w[0].starts_with("plugins.mqtt.broker.url: expected the broker's host name"));
        }
        let (s, w) = parse_lenient(serde_json::json!({"broker": {"url": null, "transport": null}}));
        assert!(s.connection("id").is_none() && w.is_empty(), "{w:?}");
        let (s, w) = parse_lenient(serde_json::json!({"broker": {"url": "h", "transport": [1]}}));
        assert_eq!(s.connection("id").unwrap().websocket_path, None);
        assert!(
            w[0].contains("broker.transport: expected text, got a list"),
            "{w:?}"
        );
        for field in [
            serde_json::json!(""),
            serde_json::json!(null),
            serde_json::json!(5),
            serde_json::json!({"a": 1}),
        ] {
            let (s, w) = parse_lenient(serde_json::json!({"timestamp_fieldname": field}));
            assert_eq!(s.publishing().timestamp_field, "_timestamp");
            assert_eq!(w.len(), 1, "{w:?}");
            assert!(w[0].starts_with("plugins.mqtt.timestamp_fieldname: expected a property name"));
        }
        let (s, _) = parse_lenient(serde_json::json!({"timestamp_fieldname": "ts"}));
        assert_eq!(s.publishing().timestamp_field, "ts");
    }

    #[test]
    fn the_same_endpoint_means_every_part_of_it() {
        let conn = |extra: serde_json::Value| {
            let mut tree = serde_json::json!({"broker": {
                "url": "h", "port": 1883, "username": "u", "password": "p",
                "tls_active": true, "tls": {"ca_certs": "/ca.pem"},
            }});
            for (k, v) in extra.as_object().unwrap() {
                tree["broker"][k] = v.clone();
            }
            parse_lenient(tree).0.connection("id").unwrap()
        };
        let saved = conn(serde_json::json!({}));
        let same = [
            serde_json::json!({"url": " h ", "port": "1883", "password": ""}),
            serde_json::json!({"protocol": "MQTTv5", "keepalive": 10}),
            serde_json::json!({"transport": "tcp", "ws_path": "/other"}),
        ];
        for change in same {
            assert!(saved.same_endpoint(&conn(change.clone())), "{change}");
        }
        let other = [
            serde_json::json!({"url": "elsewhere"}),
            serde_json::json!({"port": 1884}),
            serde_json::json!({"username": "v"}),
            serde_json::json!({"tls_active": false}),
            serde_json::json!({"tls": {"ca_certs": "/other.pem"}}),
            serde_json::json!({"tls": {"ca_certs": "/ca.pem", "ciphers": "TLS_AES_128_GCM_SHA256"}}),
            serde_json::json!({"tls_insecure": true}),
            serde_json::json!({"transport": "websockets"}),
        ];
        for change in other {
            assert!(!saved.same_endpoint(&conn(change.clone())), "{change}");
        }
        let ws = conn(serde_json::json!({"transport": "websockets"}));
        assert!(ws.same_endpoint(&conn(
            serde_json::json!({"transport": "ws", "ws_path": "mqtt"})
        )));
        assert!(!ws.same_endpoint(&conn(
            serde_json::json!({"transport": "websockets", "ws_path": "/x"})
        )));
    }

    #[test]
    fn event_topic_is_base_plus_template() {
        let p = parse(r#"{"publish": {"baseTopic": "op", "eventTopic": "/ev/{event}/x"}}"#)
            .publishing();
        assert_eq!(p.event_topic("Home"), "op/ev/Home/x");
    }
}
