//! Remote control over MQTT (docs/behaviour.md §5.11): which requests are taken, what their
//! payloads must hold, duplicates, and the answers. Owned by the core's thread; the printer
//! actions run in Python on the commands' thread (`executor.rs`), which hands each outcome
//! back to [`Control::finish`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::message::{Incoming, Message, Qos};
use crate::topic;

/// Every command, in the order the settings page and the docs list them.
pub const COMMANDS: &[&str] = &[
    "connect",
    "disconnect",
    "start",
    "pause",
    "resume",
    "cancel",
    "gcode",
    "temperature",
    "home",
    "jog",
    "status",
];

/// The commands Home Assistant's discovery offers a button for, when allowed.
pub const BUTTONS: &[&str] = &["connect", "disconnect", "pause", "resume", "cancel"];

const PLACEHOLDER: &str = "{command}";
/// Requests (with an id) whose answers are kept for duplicates.
const REMEMBERED: usize = 100;
/// Topics whose retained requests were logged; beyond this they are no longer told.
const RETAINED_TOLD_MAX: usize = 1_000;
/// Limits of the fields, in the words of the answers.
const ID_MAX_CHARS: usize = 256;
const GCODE_MAX_LINES: usize = 1_000;
const TEMPERATURE_MAX: f64 = 500.0;
const JOG_MAX_MM: f64 = 1_000.0;
const SPEED_MAX: f64 = 100_000.0;

/// `control.topic` under the base topic: `{command}` exactly once, as a whole level.
pub fn request_topic_problem(base: &str, template: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::ArgumentValue(why.into()));
    if template.matches(PLACEHOLDER).count() != 1 {
        return bad("the control topic must hold {command} exactly once");
    }
    if !format!("{base}{template}")
        .split('/')
        .any(|l| l == PLACEHOLDER)
    {
        return bad("{command} must fill a whole level of the control topic (between slashes)");
    }
    topic::validate_topic(&format!(
        "{base}{}",
        topic::render(template, "command", "pause")
    ))
}

/// `control.responseTopic` under the base topic, with the request topic `template` in force
/// (an answer on a request topic would be a request that is never answered).
pub fn response_topic_problem(base: &str, response: &str, template: &str) -> Result<()> {
    if response.is_empty() {
        return Err(Error::ArgumentValue(
            "the response topic cannot be empty".into(),
        ));
    }
    topic::validate_topic(&format!("{base}{response}"))?;
    let setup = Setup::new(base, template, response, Vec::new(), Vec::new());
    match setup.command_of(&setup.response_topic) {
        Some(c) if COMMANDS.contains(&c) => Err(Error::ArgumentValue(format!(
            "the response topic is the request topic of {c:?}"
        ))),
        _ => Ok(()),
    }
}

/// The settings in force while `control.active` is on; made from values `sanitize` checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The request topic with `{command}` still in it.
    template: String,
    /// The filter subscribed at the broker: `{command}` replaced by `+`.
    pub filter: String,
    pub response_topic: String,
    allowed: Vec<&'static str>,
    /// Topic prefixes an MQTT 5 Response Topic may not name (the plugin's own topics): a
    /// client allowed to send requests must not make the plugin publish its status or state.
    reserved: Vec<String>,
}

impl Setup {
    pub fn new(
        base: &str,
        template: &str,
        response: &str,
        allowed: Vec<&'static str>,
        reserved: Vec<String>,
    ) -> Setup {
        let template = format!("{base}{template}");
        Setup {
            filter: topic::render(&template, "command", "+"),
            template,
            response_topic: format!("{base}{response}"),
            allowed,
            reserved: reserved.into_iter().filter(|r| !r.is_empty()).collect(),
        }
    }

    /// Whether an MQTT 5 Response Topic may be answered on.
    fn usable_reply(&self, t: &str) -> bool {
        topic::validate_topic(t).is_ok()
            && !topic::matches(&self.filter, t)
            && !self.reserved.iter().any(|r| t.starts_with(r.as_str()))
    }

    pub fn request_topic(&self, command: &str) -> String {
        topic::render(&self.template, "command", command)
    }

    /// `(command, request topic)` for each allowed command that gets a button.
    pub fn buttons(&self) -> Vec<(&'static str, String)> {
        BUTTONS
            .iter()
            .filter(|b| self.allowed.contains(b))
            .map(|b| (*b, self.request_topic(b)))
            .collect()
    }

    /// The command level of a topic the filter matched.
    fn command_of<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let at = self.template.split('/').position(|l| l == PLACEHOLDER)?;
        topic::matches(&self.filter, topic).then(|| topic.split('/').nth(at))?
    }
}

/// Where an answer goes: the request's MQTT 5 response topic with its correlation data, or
/// the response topic of the settings.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    topic: String,
    correlation: Option<Bytes>,
}

/// What a command came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(Option<Value>),
    Refused(String),
    /// Not run, for a reason that passes (busy, shutting down): a retry with the same id runs.
    Retry(String),
}

/// A request that passed every check, for the commands' thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub seq: u64,
    pub command: &'static str,
    /// The payload's fields, checked and in one shape per command (docs/behaviour.md §5.11).
    pub args: Value,
}

/// What became of a received message.
#[derive(Debug, PartialEq)]
pub enum Taken {
    /// Not a request (control is off, or another topic).
    NotOurs,
    /// A request that is not answered: retained, or an answer on the response topic.
    Ignored,
    /// Answered at once: refused by a check, or a duplicate.
    Answer(Vec<Message>),
    Run(Job),
}

/// The command and id that make a request a duplicate of an earlier one.
type Key = (&'static str, String);

enum Seen {
    Answered(Outcome),
    /// Still running (this sequence number).
    Running(u64),
}

struct Running {
    command: &'static str,
    id: Value,
    key: Option<Key>,
    reply: Reply,
    /// Duplicates that came while it runs: answered when it ends.
    duplicates: Vec<Reply>,
}

/// The last request taken, while the broker may still deliver copies of it: a plugin's
/// subscription overlapping the request filter makes brokers send one copy per subscription.
struct Echo {
    topic: String,
    payload: Vec<u8>,
    at: Instant,
    left: usize,
}

/// Copies of one message arrive back to back; a second identical request later is a new one.
const ECHO_WINDOW: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Control {
    setup: Option<Setup>,
    next_seq: u64,
    running: HashMap<u64, Running>,
    recent: VecDeque<(Key, Seen)>,
    retained_told: HashSet<String>,
    echo: Option<Echo>,
}

impl Control {
    /// New settings (None: control is off). Returns the filter to stop and the one to start
    /// watching, when they changed.
    pub fn configure(&mut self, setup: Option<Setup>) -> (Option<String>, Option<String>) {
        let old = self.filter().map(str::to_owned);
        self.setup = setup;
        let new = self.filter().map(str::to_owned);
        if old == new {
            (None, None)
        } else {
            (old, new)
        }
    }

    pub fn filter(&self) -> Option<&str> {
        self.setup.as_ref().map(|s| s.filter.as_str())
    }

    /// Looks at every received message; `copies`: how many of this connection's
    /// subscriptions match its topic (the broker may deliver it once per subscription).
    pub fn take(&mut self, m: &Incoming, copies: usize) -> Taken {
        let Some(setup) = &self.setup else {
            return Taken::NotOurs;
        };
        let Some(name) = setup.command_of(&m.topic) else {
            return Taken::NotOurs;
        };
        if m.topic == setup.response_topic {
            return Taken::Ignored;
        }
        if let Some(echo) = self.echo.as_mut() {
            if echo.left > 0
                && echo.at.elapsed() < ECHO_WINDOW
                && echo.topic == m.topic
                && echo.payload == m.payload
            {
                echo.left -= 1;
                debug!("Remote control: a second copy of the request on {:?} (overlapping subscriptions): taken once", m.topic);
                return Taken::Ignored;
            }
        }
        self.echo = (copies > 1).then(|| Echo {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            at: Instant::now(),
            left: copies - 1,
        });
        let allowed = setup.allowed.contains(&name);
        // How a retained message is cleared; brokers forward it without the retain flag.
        if m.payload.is_empty() {
            debug!(
                "Remote control: an empty message on {:?} is no request (it clears a retained one)",
                m.topic
            );
            return Taken::Ignored;
        }
        if m.retain {
            if self.retained_told.len() < RETAINED_TOLD_MAX
                && self.retained_told.insert(m.topic.clone())
            {
                warn!("Ignored a retained remote control request on {:?}: retained requests are never executed (they would run again at every restart); publish requests without the retain flag, and clear this one with an empty retained message. Not logged again for this topic", m.topic);
            }
            return Taken::Ignored;
        }
        let reply = self.reply_for(m);
        let request = match Request::read(name, &m.payload) {
            Ok(r) => r,
            Err((id, why)) => {
                info!(
                    "Remote control: refused a request on {:?}: {}",
                    m.topic,
                    one_line(&why)
                );
                return Taken::Answer(vec![answer(&reply, &id, name, &Outcome::Refused(why))]);
            }
        };
        let Some(command) = COMMANDS.iter().copied().find(|c| *c == name) else {
            let why = format!(
                "unknown command {name:?} (the commands are {})",
                COMMANDS.join(", ")
            );
            info!(
                "Remote control: refused {name:?}{}: unknown command",
                id_text(&request.id)
            );
            return Taken::Answer(vec![answer(
                &reply,
                &request.id,
                name,
                &Outcome::Refused(why),
            )]);
        };
        let key = (!request.id.is_null()).then(|| (command, request.id.to_string()));
        if let Some(key) = &key {
            if let Some((_, seen)) = self.recent.iter_mut().find(|(k, _)| k == key) {
                info!(
                    "Remote control: {command}{} again (a duplicate): not executed again",
                    id_text(&request.id)
                );
                return match seen {
                    Seen::Answered(outcome) => {
                        Taken::Answer(vec![answer(&reply, &request.id, command, outcome)])
                    }
                    Seen::Running(seq) => {
                        if let Some(run) = self.running.get_mut(seq) {
                            run.duplicates.push(reply);
                        }
                        Taken::Answer(Vec::new())
                    }
                };
            }
        }
        let checked = if allowed {
            args(command, &request.fields)
        } else {
            Err(format!(
                "the command {command:?} is not allowed: an OctoPrint admin can allow it with control.commands.{command} in the MQTT plugin's settings"
            ))
        };
        let args = match checked {
            Ok(args) => args,
            Err(why) => {
                info!(
                    "Remote control: refused {command}{}: {}",
                    id_text(&request.id),
                    one_line(&why)
                );
                let outcome = Outcome::Refused(why);
                let msg = answer(&reply, &request.id, command, &outcome);
                if let Some(key) = key {
                    self.remember(key, Seen::Answered(outcome));
                }
                return Taken::Answer(vec![msg]);
            }
        };
        self.next_seq += 1;
        let seq = self.next_seq;
        if let Some(key) = &key {
            self.remember(key.clone(), Seen::Running(seq));
        }
        self.running.insert(
            seq,
            Running {
                command,
                id: request.id,
                key,
                reply,
                duplicates: Vec::new(),
            },
        );
        Taken::Run(Job { seq, command, args })
    }

    /// A command ended: its answer, and one for each duplicate that came meanwhile.
    pub fn finish(&mut self, seq: u64, outcome: Outcome) -> Vec<Message> {
        let Some(run) = self.running.remove(&seq) else {
            return Vec::new();
        };
        let id = id_text(&run.id);
        match &outcome {
            Outcome::Done(_) => info!("Remote control: {}{id} done", run.command),
            Outcome::Refused(why) | Outcome::Retry(why) => {
                info!(
                    "Remote control: {}{id} refused: {}",
                    run.command,
                    one_line(why)
                )
            }
        }
        if let Some(key) = &run.key {
            if let Some(i) = self.recent.iter().position(|(k, _)| k == key) {
                if matches!(outcome, Outcome::Retry(_)) {
                    self.recent.remove(i);
                } else {
                    self.recent[i].1 = Seen::Answered(outcome.clone());
                }
            }
        }
        std::iter::once(&run.reply)
            .chain(&run.duplicates)
            .map(|r| answer(r, &run.id, run.command, &outcome))
            .collect()
    }

    /// OctoPrint is stopping: every request not finished is answered so (the one running
    /// may still end; its outcome is not known).
    pub fn abandon_all(&mut self) -> Vec<Message> {
        let mut seqs: Vec<u64> = self.running.keys().copied().collect();
        seqs.sort_unstable();
        seqs.into_iter()
            .flat_map(|seq| {
                self.finish(
                    seq,
                    Outcome::Retry(
                        "OctoPrint is shutting down; the command may not have run".into(),
                    ),
                )
            })
            .collect()
    }

    fn remember(&mut self, key: Key, seen: Seen) {
        if self.recent.len() >= REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back((key, seen));
    }

    fn reply_for(&self, m: &Incoming) -> Reply {
        let Some(setup) = &self.setup else {
            return Reply {
                topic: String::new(),
                correlation: None,
            };
        };
        let topic = match &m.response_topic {
            Some(t) if setup.usable_reply(t) => t.clone(),
            Some(t) => {
                info!("Remote control: the request on {:?} names a response topic that is not answered on ({t:?}: the plugin's own topics and request topics are not); answering on {:?}", m.topic, setup.response_topic);
                setup.response_topic.clone()
            }
            None => setup.response_topic.clone(),
        };
        Reply {
            topic,
            correlation: m.correlation.clone(),
        }
    }
}

/// ` (id 7)`, or nothing without an id: the log names the request, never its payload.
fn id_text(id: &Value) -> String {
    if id.is_null() {
        String::new()
    } else {
        format!(" (id {id})")
    }
}

/// A reason for the log, where it may quote the payload (the plugin's "file not found:
/// <path>"): line breaks and other control characters escaped, so that a request cannot
/// write lines of its own into octoprint.log.
fn one_line(why: &str) -> String {
    let mut out = String::with_capacity(why.len());
    for c in why.chars() {
        match c {
            // Line separators to Python's splitlines and some log viewers.
            '\u{2028}' | '\u{2029}' => out.extend(c.escape_unicode()),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

fn answer(reply: &Reply, id: &Value, command: &str, outcome: &Outcome) -> Message {
    let mut body = Map::new();
    body.insert("id".into(), id.clone());
    body.insert("command".into(), json!(command));
    match outcome {
        Outcome::Done(result) => {
            body.insert("ok".into(), json!(true));
            if let Some(result) = result {
                body.insert("result".into(), result.clone());
            }
        }
        Outcome::Refused(why) | Outcome::Retry(why) => {
            body.insert("ok".into(), json!(false));
            body.insert("error".into(), json!(why));
        }
    }
    Message {
        topic: reply.topic.clone(),
        payload: Value::Object(body).to_string().into(),
        qos: Qos::AtLeastOnce,
        retain: false,
        // Asked for while connected: the answer waits for the connection if it dropped.
        queue_offline: true,
        expiry: None,
        correlation: reply.correlation.clone(),
    }
}

/// A request's id and its other fields.
struct Request {
    id: Value,
    fields: Map<String, Value>,
}

impl Request {
    /// Errors carry the id when it could be read.
    fn read(command: &str, payload: &[u8]) -> std::result::Result<Request, (Value, String)> {
        let mut fields = {
            match serde_json::from_slice::<Value>(payload) {
                Ok(Value::Object(o)) => o,
                Ok(_) => {
                    return Err((
                        Value::Null,
                        format!("the payload of {command:?} is not a JSON object"),
                    ))
                }
                Err(e) => {
                    return Err((
                        Value::Null,
                        format!("the payload of {command:?} is not JSON ({e})"),
                    ))
                }
            }
        };
        let id = match fields.remove("id") {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(s)) if s.chars().count() > ID_MAX_CHARS => {
                return Err((
                    Value::Null,
                    format!("id must be at most {ID_MAX_CHARS} characters"),
                ))
            }
            Some(id @ (Value::String(_) | Value::Number(_))) => id,
            Some(_) => {
                return Err((Value::Null, "id must be a string or a number".into()));
            }
        };
        Ok(Request { id, fields })
    }
}

/// The fields of `command`'s payload, checked; the shape the plugin's handler receives.
fn args(command: &str, fields: &Map<String, Value>) -> std::result::Result<Value, String> {
    let only = |known: &[&str]| -> std::result::Result<(), String> {
        match fields.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) if known.is_empty() => Err(format!("{command} takes no fields (got {k:?})")),
            Some(k) => Err(format!(
                "unknown field {k:?} ({command} takes {})",
                known.join(", ")
            )),
        }
    };
    let text = |key: &str| -> std::result::Result<Option<String>, String> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(_) => Err(format!("{key} must be a non-empty string")),
        }
    };
    let number = |key: &str, max: f64| -> std::result::Result<Option<f64>, String> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n.abs() <= max => Ok(Some(n)),
                _ => Err(format!("{key} must be a number from {} to {max}", -max)),
            },
        }
    };
    match command {
        "connect" => {
            only(&["port", "baudrate", "profile"])?;
            let baudrate = match fields.get("baudrate") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(b) if b > 0 && b <= 10_000_000 => Some(b),
                    _ => return Err("baudrate must be a whole positive number".into()),
                },
            };
            Ok(json!({
                "port": text("port")?,
                "baudrate": baudrate,
                "profile": text("profile")?,
            }))
        }
        "start" => {
            only(&["path", "origin"])?;
            let path = text("path")?.ok_or("path is required (the file to print)")?;
            let origin = match text("origin")?.as_deref() {
                None | Some("local") => "local",
                Some("sdcard") => "sdcard",
                Some(_) => return Err("origin must be \"local\" or \"sdcard\"".into()),
            };
            Ok(json!({"path": path, "origin": origin}))
        }
        "gcode" => {
            only(&["commands"])?;
            let lines: Vec<String> = match fields.get("commands") {
                Some(Value::String(s)) => s.lines().map(str::to_owned).collect(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or("commands must be a list of strings, or one string")?,
                None => return Err("commands is required (G-code lines)".into()),
                Some(_) => return Err("commands must be a list of strings, or one string".into()),
            };
            let lines: Vec<String> = lines
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            if lines.is_empty() {
                return Err("commands holds no G-code".into());
            }
            if lines.len() > GCODE_MAX_LINES {
                return Err(format!(
                    "commands holds {} lines, at most {GCODE_MAX_LINES}",
                    lines.len()
                ));
            }
            Ok(json!({"commands": lines}))
        }
        "temperature" => {
            if fields.is_empty() {
                return Err(
                    "name at least one heater with its target, e.g. {\"tool0\": 210, \"bed\": 60}"
                        .into(),
                );
            }
            let mut targets = Map::new();
            for (heater, v) in fields {
                if !heater_name(heater) {
                    return Err(format!(
                        "{heater:?} is not a heater name (tool0, tool1, …, bed, chamber)"
                    ));
                }
                match v.as_f64() {
                    Some(t) if (0.0..=TEMPERATURE_MAX).contains(&t) => {
                        targets.insert(heater.clone(), json!(t));
                    }
                    _ => {
                        return Err(format!(
                            "{heater} must be a target in °C from 0 to {TEMPERATURE_MAX}"
                        ))
                    }
                }
            }
            Ok(json!({"targets": targets}))
        }
        "home" => {
            only(&["axes"])?;
            let axes = match fields.get("axes") {
                None | Some(Value::Null) => vec!["x", "y", "z"],
                Some(Value::Array(items)) if !items.is_empty() => {
                    let mut axes = Vec::new();
                    for item in items {
                        let axis = match item.as_str().map(str::to_ascii_lowercase).as_deref() {
                            Some("x") => "x",
                            Some("y") => "y",
                            Some("z") => "z",
                            _ => return Err("axes must be a list of \"x\", \"y\" and \"z\"".into()),
                        };
                        if !axes.contains(&axis) {
                            axes.push(axis);
                        }
                    }
                    axes
                }
                Some(_) => return Err("axes must be a list of \"x\", \"y\" and \"z\"".into()),
            };
            Ok(json!({"axes": axes}))
        }
        "jog" => {
            only(&["x", "y", "z", "speed"])?;
            let mut axes = Map::new();
            for axis in ["x", "y", "z"] {
                if let Some(mm) = number(axis, JOG_MAX_MM)? {
                    axes.insert(axis.into(), json!(mm));
                }
            }
            if axes.is_empty() {
                return Err("name at least one of x, y, z (relative mm)".into());
            }
            let speed = match number("speed", SPEED_MAX)? {
                Some(s) if s <= 0.0 => return Err("speed must be positive (mm/min)".into()),
                s => s,
            };
            Ok(json!({"axes": axes, "speed": speed}))
        }
        _ => {
            only(&[])?;
            Ok(json!({}))
        }
    }
}

/// `tool<n>`, `bed` or `chamber`: OctoPrint's heater names.
fn heater_name(name: &str) -> bool {
    match name.strip_prefix("tool") {
        Some(n) => !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()),
        None => matches!(name, "bed" | "chamber"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Control {
        fn take1(&mut self, m: &Incoming) -> Taken {
            self.take(m, 1)
        }
    }

    fn control(allowed: &[&'static str]) -> Control {
        let mut c = Control::default();
        c.configure(Some(Setup::new(
            "octoprint/",
            "control/{command}",
            "control/response",
            allowed.to_vec(),
            vec!["octoprint/".into(), "homeassistant/".into()],
        )));
        c
    }

    fn request(topic: &str, payload: &str) -> Incoming {
        Incoming {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            qos: 1,
            retain: false,
            response_topic: None,
            correlation: None,
        }
    }

    fn body(m: &Message) -> Value {
        serde_json::from_slice(&m.payload).unwrap()
    }

    fn refused(t: Taken) -> String {
        match t {
            Taken::Answer(m) => {
                let b = body(&m[0]);
                assert_eq!(b["ok"], false);
                b["error"].as_str().unwrap().to_string()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn topics_rules() {
        assert!(request_topic_problem("octoprint/", "control/{command}").is_ok());
        assert!(request_topic_problem("octoprint/", "{command}/do").is_ok());
        assert!(request_topic_problem("", "{command}").is_ok());
        assert!(request_topic_problem("octoprint/", "control").is_err());
        assert!(request_topic_problem("octoprint/", "c/{command}/{command}").is_err());
        assert!(request_topic_problem("octoprint/", "c/do-{command}").is_err());
        assert!(request_topic_problem("octoprint/", "c/+/{command}").is_err());
        assert!(response_topic_problem("octoprint/", "", "c/{command}").is_err());
        assert!(response_topic_problem("octoprint/", "r/#", "c/{command}").is_err());
        assert!(
            response_topic_problem("octoprint/", "control/status", "control/{command}").is_err()
        );
        assert!(
            response_topic_problem("octoprint/", "control/response", "control/{command}").is_ok()
        );
        let s = Setup::new("p/", "{command}/x", "r", vec!["pause"], vec![]);
        assert_eq!(s.filter, "p/+/x");
        assert_eq!(s.command_of("p/pause/x"), Some("pause"));
        assert_eq!(s.command_of("p/pause/y"), None);
        assert_eq!(s.buttons(), [("pause", "p/pause/x".to_string())]);
    }

    #[test]
    fn requests_are_checked_and_run_in_one_shape() {
        let mut c = control(COMMANDS);
        let Taken::Run(job) = c.take1(&request(
            "octoprint/control/gcode",
            r#"{"id": 3, "commands": "G28\n\n M105 "}"#,
        )) else {
            panic!()
        };
        assert_eq!(job.args, json!({"commands": ["G28", "M105"]}));
        let Taken::Run(job) = c.take1(&request("octoprint/control/home", "{}")) else {
            panic!()
        };
        assert_eq!(job.args, json!({"axes": ["x", "y", "z"]}));
        let Taken::Run(job) = c.take1(&request(
            "octoprint/control/temperature",
            r#"{"tool0": 210, "bed": 60.5}"#,
        )) else {
            panic!()
        };
        assert_eq!(job.args, json!({"targets": {"bed": 60.5, "tool0": 210.0}}));
        let Taken::Run(job) = c.take1(&request("octoprint/control/jog", r#"{"x": -5}"#)) else {
            panic!()
        };
        assert_eq!(job.args, json!({"axes": {"x": -5.0}, "speed": null}));
        let msgs = c.finish(job.seq, Outcome::Done(None));
        assert_eq!(msgs[0].topic, "octoprint/control/response");
        assert_eq!(
            body(&msgs[0]),
            json!({"id": null, "command": "jog", "ok": true})
        );
        assert_eq!(msgs[0].qos, Qos::AtLeastOnce);
        assert!(!msgs[0].retain);
    }

    #[test]
    fn each_refusal_says_why() {
        let mut c = control(&["pause", "start", "temperature", "jog", "home", "gcode"]);
        let t = "octoprint/control/";
        let cases = [
            (
                "resume",
                "{}",
                "not allowed: an OctoPrint admin can allow it with control.commands.resume",
            ),
            ("dance", "{}", "unknown command \"dance\""),
            ("pause", "[1]", "not a JSON object"),
            ("pause", "{", "not JSON"),
            (
                "pause",
                r#"{"id": true}"#,
                "id must be a string or a number",
            ),
            ("pause", r#"{"x": 1}"#, "pause takes no fields"),
            ("start", "{}", "path is required"),
            (
                "start",
                r#"{"path": "a.gcode", "origin": "usb"}"#,
                "origin must be",
            ),
            ("temperature", r#"{"nozzle": 200}"#, "not a heater name"),
            ("temperature", r#"{"tool0": 900}"#, "from 0 to 500"),
            ("temperature", "{}", "at least one heater"),
            ("jog", r#"{"speed": 100}"#, "at least one of x, y, z"),
            ("jog", r#"{"x": "1"}"#, "x must be a number"),
            ("home", r#"{"axes": ["e"]}"#, "axes must be"),
            ("gcode", r#"{"commands": " \n"}"#, "holds no G-code"),
        ];
        for (command, payload, expected) in cases {
            let why = refused(c.take1(&request(&format!("{t}{command}"), payload)));
            assert!(why.contains(expected), "{command} {payload}: {why}");
        }
    }

    #[test]
    fn reasons_are_logged_on_one_line() {
        assert_eq!(
            one_line("file not found: a\n2026-01-01 - forged\r\u{2028}.gcode"),
            "file not found: a\\n2026-01-01 - forged\\r\\u{2028}.gcode"
        );
        assert_eq!(
            one_line("no serial port 'COM9' (it is \"Offline\")"),
            "no serial port 'COM9' (it is \"Offline\")"
        );
    }

    #[test]
    fn retained_requests_and_answers_are_not_taken() {
        let mut c = control(&["pause"]);
        let mut m = request("octoprint/control/pause", "{}");
        m.retain = true;
        assert_eq!(c.take1(&m), Taken::Ignored);
        assert_eq!(
            c.take1(&request("octoprint/control/pause", "")),
            Taken::Ignored
        );
        assert_eq!(
            c.take1(&request("octoprint/control/response", r#"{"ok": true}"#)),
            Taken::Ignored
        );
        assert_eq!(c.take1(&request("octoprint/other", "{}")), Taken::NotOurs);
        c.configure(None);
        assert_eq!(
            c.take1(&request("octoprint/control/pause", "{}")),
            Taken::NotOurs
        );
    }

    #[test]
    fn a_duplicate_id_is_answered_with_the_first_outcome_and_not_run() {
        let mut c = control(&["pause", "resume"]);
        let Taken::Run(job) = c.take1(&request("octoprint/control/pause", r#"{"id": "a"}"#)) else {
            panic!()
        };
        // Redelivered while the first still runs: answered when it ends.
        assert_eq!(
            c.take1(&request("octoprint/control/pause", r#"{"id": "a"}"#)),
            Taken::Answer(vec![])
        );
        let answers = c.finish(job.seq, Outcome::Refused("not printing".into()));
        assert_eq!(answers.len(), 2);
        let Taken::Answer(again) = c.take1(&request("octoprint/control/pause", r#"{"id": "a"}"#))
        else {
            panic!()
        };
        assert_eq!(body(&again[0])["error"], "not printing");
        // Another command with that id is another request.
        assert!(matches!(
            c.take1(&request("octoprint/control/resume", r#"{"id": "a"}"#)),
            Taken::Run(_)
        ));
        // The memory holds the last 100.
        for i in 0..REMEMBERED {
            let Taken::Run(j) = c.take1(&request(
                "octoprint/control/pause",
                &format!(r#"{{"id": {i}}}"#),
            )) else {
                panic!()
            };
            c.finish(j.seq, Outcome::Done(None));
        }
        assert!(matches!(
            c.take1(&request("octoprint/control/pause", r#"{"id": "a"}"#)),
            Taken::Run(_)
        ));
    }

    #[test]
    fn mqtt5_requests_are_answered_on_their_response_topic() {
        let mut c = control(&["status"]);
        let mut m = request("octoprint/control/status", "{}");
        m.response_topic = Some("me/answers".into());
        m.correlation = Some(Bytes::from_static(b"\x01\x02"));
        let Taken::Run(job) = c.take1(&m) else {
            panic!()
        };
        let answer = &c.finish(job.seq, Outcome::Done(Some(json!({"state": 1}))))[0];
        assert_eq!(answer.topic, "me/answers");
        assert_eq!(answer.correlation.as_deref(), Some(&b"\x01\x02"[..]));
        assert_eq!(body(answer)["result"], json!({"state": 1}));
        // A response topic that cannot be published to: the settings' one.
        m.response_topic = Some("me/#".into());
        let Taken::Run(job) = c.take1(&m) else {
            panic!()
        };
        assert_eq!(
            c.finish(job.seq, Outcome::Done(None))[0].topic,
            "octoprint/control/response"
        );
    }

    #[test]
    fn copies_from_overlapping_subscriptions_are_taken_once_and_busy_is_not_remembered() {
        let mut c = control(&["pause"]);
        let m = request("octoprint/control/pause", "{}");
        assert!(matches!(c.take(&m, 2), Taken::Run(_)));
        assert_eq!(c.take(&m, 2), Taken::Ignored);
        assert!(matches!(c.take(&m, 2), Taken::Run(_)));
        // One subscription: every copy is a request.
        let mut c = control(&["pause"]);
        assert!(matches!(c.take1(&m), Taken::Run(_)));
        assert!(matches!(c.take1(&m), Taken::Run(_)));

        let m = request("octoprint/control/pause", r#"{"id": 9}"#);
        let Taken::Run(job) = c.take1(&m) else {
            panic!()
        };
        c.finish(job.seq, Outcome::Retry("busy".into()));
        assert!(matches!(c.take1(&m), Taken::Run(_)));
        let answers = c.abandon_all();
        assert!(!answers.is_empty());
        assert!(body(&answers[0])["error"]
            .as_str()
            .unwrap()
            .contains("shutting down"));
    }
}
