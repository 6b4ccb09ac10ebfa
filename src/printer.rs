//! What the plugin knows of the printer, and when it tells: the retained state topic
//! (docs/behaviour.md §3.13) and the pacing of the temperature topics (`publish.temperatureInterval`).
//!
//! Python hands over state changes (OctoPrint's `PrinterStateChanged` and `Error` events), job
//! and progress (OctoPrint's current data, at most twice a second) and temperature samples.
//! Changes of the state or the job go out at once, one message each, so that no state is ever
//! coalesced away; progress and temperatures at most once per interval, the newest values when
//! it ends. What falls due later is sent by the core's thread, which asks [`Printer::due`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::config::PublishConfig;
use crate::message::{Message, Qos};
use crate::outgoing;
use crate::temperature::{Reading, Tracker};

/// OctoPrint's state flags as its REST API reports them, derived from the state id alone:
/// the event that names a state may be handled after the printer moved on, so the flags of
/// "now" would not belong to it. Mirrors `octoprint.util.comm.MachineCom` (1.9–1.11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flags {
    pub operational: bool,
    pub printing: bool,
    pub paused: bool,
    pub error: bool,
    pub ready: bool,
    pub cancelling: bool,
    pub pausing: bool,
    pub closed_or_error: bool,
}

impl Flags {
    pub fn of(state_id: &str) -> Flags {
        let mut f = Flags::default();
        match state_id {
            "OPERATIONAL" => {
                f.operational = true;
                f.ready = true;
            }
            "STARTING" | "PRINTING" | "RESUMING" | "FINISHING" => {
                f.operational = true;
                f.printing = true;
            }
            "CANCELLING" => {
                f.operational = true;
                f.printing = true;
                f.cancelling = true;
            }
            "PAUSING" => {
                f.operational = true;
                f.printing = true;
                f.pausing = true;
            }
            "PAUSED" => {
                f.operational = true;
                f.paused = true;
            }
            // Streaming a file to the SD card: operational, not ready.
            "TRANSFERING_FILE" => f.operational = true,
            "ERROR" | "CLOSED_WITH_ERROR" => {
                f.error = true;
                f.closed_or_error = true;
            }
            // OctoPrint drops its connection object on close: then only this flag is set.
            "CLOSED" | "OFFLINE" => f.closed_or_error = true,
            // NONE, OPEN_SERIAL, DETECT_*, CONNECTING, UNKNOWN and whatever comes later.
            _ => {}
        }
        f
    }
}

/// States in which OctoPrint opens a new connection: the error of the last one is gone.
fn starts_connection(state_id: &str) -> bool {
    matches!(
        state_id,
        "OPEN_SERIAL" | "DETECT_SERIAL" | "DETECT_BAUDRATE" | "CONNECTING"
    )
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct State {
    text: String,
    flags: Flags,
    error: String,
}

/// The selected file, values as OctoPrint reports them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub name: Value,
    pub path: Value,
    pub origin: Value,
    pub size: Value,
    #[serde(rename = "estimatedPrintTime")]
    pub estimated_print_time: Value,
    pub user: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// 0–100 as OctoPrint reports it, or null before the print has begun.
    pub completion: Option<f64>,
    /// The progress topic's percentage (see [`percent`]).
    pub percent: i64,
    #[serde(rename = "printTime")]
    pub print_time: Value,
    #[serde(rename = "printTimeLeft")]
    pub print_time_left: Value,
    #[serde(rename = "printTimeLeftOrigin")]
    pub print_time_left_origin: Value,
}

/// OctoPrint's completion rounded (half to even, as Python's `round`); with PrintTimeGenius
/// (`printTimeLeftOrigin == "genius"`) its more accurate ratio of time spent to total time.
pub fn percent(
    completion: Option<f64>,
    print_time: Option<f64>,
    left: Option<f64>,
    origin: Option<&str>,
) -> i64 {
    let ratio = match (origin, print_time, left) {
        (Some("genius"), Some(spent), Some(left)) if spent + left > 0.0 => {
            spent * 100.0 / (spent + left)
        }
        _ => completion.unwrap_or(0.0),
    };
    if !ratio.is_finite() {
        return 0;
    }
    ratio.round_ties_even().clamp(0.0, 100.0) as i64
}

/// A temperature sample: each heater's reading and the sample's time (Unix seconds).
pub struct Sample {
    pub time: u64,
    pub heaters: Vec<(String, Reading)>,
}

/// What the state message holds, in its key order.
#[derive(Debug, Clone, Default, PartialEq)]
struct Snapshot {
    state: Option<State>,
    job: Option<Job>,
    progress: Option<Progress>,
    temperatures: Vec<(String, Reading)>,
}

#[derive(Serialize)]
struct Body<'a> {
    state: &'a Option<State>,
    job: &'a Option<Job>,
    progress: &'a Option<Progress>,
    temperatures: serde_json::Map<String, Value>,
}

impl Snapshot {
    fn encode(&self, timestamp_field: &str, now: u64) -> Vec<u8> {
        let temperatures = self
            .temperatures
            .iter()
            .map(|(name, h)| (name.clone(), serde_json::to_value(h).unwrap_or_default()))
            .collect();
        let body = Body {
            state: &self.state,
            job: &self.job,
            progress: &self.progress,
            temperatures,
        };
        let mut out = serde_json::to_vec(&body).unwrap_or_default();
        // The timestamp's key is a setting: added after the fixed keys.
        out.pop();
        out.push(b',');
        out.extend_from_slice(&crate::payload::encode_key(timestamp_field));
        out.extend_from_slice(format!(":{now}}}").as_bytes());
        out
    }
}

/// Something sent at most once per interval: the time of the last send, and whether a
/// change waits for the interval to end.
#[derive(Debug, Default)]
struct Pace {
    sent: Option<Instant>,
    pending: bool,
}

enum Go {
    Now,
    /// Waits; the first change of a period says when it falls due (the core's thread is
    /// woken for it), later ones in the same period nothing.
    Later(Option<Instant>),
}

impl Pace {
    fn offer(&mut self, now: Instant, interval: Duration) -> Go {
        match self.sent {
            Some(sent) if now < sent + interval => {
                let first = !std::mem::replace(&mut self.pending, true);
                Go::Later(first.then_some(sent + interval))
            }
            _ => {
                self.sent_at(now);
                Go::Now
            }
        }
    }

    fn sent_at(&mut self, now: Instant) {
        self.sent = Some(now);
        self.pending = false;
    }

    fn due_at(&self, interval: Duration) -> Option<Instant> {
        match (self.pending, self.sent) {
            (true, Some(sent)) => Some(sent + interval),
            _ => None,
        }
    }

    /// True (and counted as sent) when a waiting change falls due at `now`.
    fn take_due(&mut self, now: Instant, interval: Duration) -> bool {
        let due = self.due_at(interval).is_some_and(|at| now >= at);
        if due {
            self.sent_at(now);
        }
        due
    }
}

/// A heater's pacing on its temperature topic: the reading that waits, with its sample time.
#[derive(Debug, Default)]
struct HeaterPace {
    pace: Pace,
    waiting: Option<(Reading, u64)>,
}

/// What Python's calls and the core's timer produce: messages to send now, and when the
/// core's thread must look again (`wake`), if something waits.
#[derive(Debug, Default)]
pub struct Out {
    pub messages: Vec<Message>,
    pub wake: Option<Instant>,
    /// A heater whose name makes no valid topic (the others are still sent).
    pub error: Option<crate::error::Error>,
}

impl Out {
    fn wake_at(&mut self, at: Option<Instant>) {
        self.wake = match (self.wake, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

struct Inner {
    cfg: Arc<PublishConfig>,
    now_unix: fn() -> u64,
    snapshot: Snapshot,
    state_pace: Pace,
    tracker: Tracker,
    heaters: HashMap<String, HeaterPace>,
}

/// Shared by the Python-facing [`crate::Core`] and the core's thread.
pub struct Printer {
    inner: Mutex<Inner>,
}

impl Printer {
    pub fn new(cfg: Arc<PublishConfig>, now_unix: fn() -> u64) -> Printer {
        Printer {
            inner: Mutex::new(Inner {
                cfg,
                now_unix,
                snapshot: Snapshot::default(),
                state_pace: Pace::default(),
                tracker: Tracker::default(),
                heaters: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New publishing settings. A state topic that moved (or was switched on) gets the
    /// current state at once.
    pub fn configure(&self, cfg: Arc<PublishConfig>, online: bool, now: Instant) -> Out {
        let mut inner = self.lock();
        let moved = (inner.cfg.state_active, &inner.cfg.state_topic)
            != (cfg.state_active, &cfg.state_topic);
        inner.cfg = cfg;
        let mut out = Out::default();
        if moved && online {
            inner.send_state(&mut out, now);
        }
        out
    }

    /// OctoPrint's `PrinterStateChanged`: the state's id and text, and the job as it is now.
    pub fn state_changed(
        &self,
        state_id: &str,
        text: &str,
        job: Option<Job>,
        online: bool,
        now: Instant,
    ) -> Out {
        let mut inner = self.lock();
        let error = match &inner.snapshot.state {
            _ if starts_connection(state_id) => String::new(),
            Some(s) => s.error.clone(),
            None => String::new(),
        };
        // OctoPrint's own report after an error closed the connection; its event says only
        // "Offline".
        let text = if state_id == "OFFLINE" && !error.is_empty() {
            "Offline after error".to_string()
        } else {
            text.to_string()
        };
        let state = State {
            text,
            flags: Flags::of(state_id),
            error,
        };
        let changed = inner.snapshot.state.as_ref() != Some(&state) || inner.snapshot.job != job;
        if job.is_none() {
            inner.snapshot.progress = None;
        }
        inner.snapshot.state = Some(state);
        inner.snapshot.job = job;
        inner.changed_now(changed, online, now)
    }

    /// OctoPrint's `Error` event: the error text the state reports until the next connection.
    pub fn error(&self, error: &str, online: bool, now: Instant) -> Out {
        let mut inner = self.lock();
        let Some(state) = inner.snapshot.state.as_mut() else {
            return Out::default();
        };
        let changed = state.error != error;
        state.error = error.to_string();
        inner.changed_now(changed, online, now)
    }

    /// OctoPrint's current data: the job (a change goes out at once) and its progress
    /// (paced). Without a job there is no progress.
    pub fn data(
        &self,
        job: Option<Job>,
        progress: Option<Progress>,
        online: bool,
        now: Instant,
    ) -> Out {
        let mut inner = self.lock();
        let progress = if job.is_some() { progress } else { None };
        if inner.snapshot.job != job {
            inner.snapshot.job = job;
            inner.snapshot.progress = progress;
            return inner.changed_now(true, online, now);
        }
        let changed = inner.snapshot.progress != progress;
        inner.snapshot.progress = progress;
        inner.changed_paced(changed, online, now)
    }

    /// A temperature sample: the heaters' topics (each changed enough and paced by
    /// `publish.temperatureInterval`) and the state's temperatures (paced).
    pub fn temperatures(&self, sample: Sample, online: bool, now: Instant) -> Out {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut out = Out::default();
        let cfg = inner.cfg.clone();
        if cfg.temperature_active {
            for (heater, reading) in &sample.heaters {
                if !inner
                    .tracker
                    .should_publish(heater, *reading, cfg.temperature_threshold)
                {
                    continue;
                }
                let slot = inner.heaters.entry(heater.clone()).or_default();
                match slot.pace.offer(now, cfg.temperature_interval) {
                    Go::Now => {
                        slot.waiting = None;
                        match outgoing::temperature(&cfg, heater, *reading, sample.time) {
                            Ok(m) => out.messages.push(m),
                            Err(e) => out.error = Some(e),
                        }
                    }
                    Go::Later(wake) => {
                        slot.waiting = Some((*reading, sample.time));
                        out.wake_at(wake);
                    }
                }
            }
        }
        // Without readings a heater is absent (OctoPrint reports a chamber the printer does
        // not have): the temperature topics skip it, OctoPrint's API leaves it out.
        let temperatures: Vec<(String, Reading)> = sample
            .heaters
            .into_iter()
            .filter(|(_, r)| !r.is_empty())
            .collect();
        let changed = inner.snapshot.temperatures != temperatures;
        inner.snapshot.temperatures = temperatures;
        let state = inner.changed_paced(changed, online, now);
        out.messages.extend(state.messages);
        out.wake_at(state.wake);
        out
    }

    /// The state message to send right after `connected`.
    pub fn at_connect(&self, now: Instant) -> Out {
        let mut inner = self.lock();
        let mut out = Out::default();
        inner.send_state(&mut out, now);
        out
    }

    /// The state and every heater's current reading on its retained temperature topic,
    /// published again after Home Assistant's birth message.
    pub fn at_birth(&self, now: Instant) -> Out {
        let mut inner = self.lock();
        let mut out = Out::default();
        inner.send_state(&mut out, now);
        let cfg = inner.cfg.clone();
        if cfg.temperature_active && cfg.retain {
            let time = (inner.now_unix)();
            for (heater, reading) in &inner.snapshot.temperatures {
                // A heater whose name makes no topic was reported when its reading came.
                if let Ok(m) = outgoing::temperature(&cfg, heater, *reading, time) {
                    out.messages.push(m);
                }
            }
        }
        out
    }

    /// The state as the state topic carries it, now (remote control's `status`); None before
    /// OctoPrint reported any.
    pub fn status(&self) -> Option<Value> {
        let inner = self.lock();
        inner.snapshot.state.as_ref()?;
        let body = inner
            .snapshot
            .encode(&inner.cfg.timestamp_field, (inner.now_unix)());
        serde_json::from_slice(&body).ok()
    }

    /// What fell due by `now`; `online` is false while disconnected (a waiting state update is
    /// then dropped: the state goes out at the next connect anyway).
    pub fn due(&self, online: bool, now: Instant) -> Out {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let cfg = inner.cfg.clone();
        let mut out = Out::default();
        for (heater, slot) in inner.heaters.iter_mut() {
            if slot.pace.take_due(now, cfg.temperature_interval) {
                if let Some((reading, time)) = slot.waiting.take() {
                    // An error was raised to Python with this heater's first reading; the
                    // core's thread must not log here (logging takes the GIL, and a Python
                    // thread holding it may be waiting for this lock).
                    if let Ok(m) = outgoing::temperature(&cfg, heater, reading, time) {
                        out.messages.push(m);
                    }
                }
            }
            out.wake_at(slot.pace.due_at(cfg.temperature_interval));
        }
        let refresh = inner.refresh_at().is_some_and(|at| now >= at);
        // take_due first: it also ends a wait that falls due while offline.
        if (inner.state_pace.take_due(now, cfg.state_interval) || refresh) && online {
            inner.send_state(&mut out, now);
        }
        if !online {
            // Sent at the next connect anyway.
            inner.state_pace.pending = false;
        }
        out.wake_at(inner.state_pace.due_at(cfg.state_interval));
        if online {
            out.wake_at(inner.refresh_at());
        }
        out
    }
}

impl Inner {
    fn changed_now(&mut self, changed: bool, online: bool, now: Instant) -> Out {
        let mut out = Out::default();
        if changed && online {
            self.send_state(&mut out, now);
        }
        out
    }

    fn changed_paced(&mut self, changed: bool, online: bool, now: Instant) -> Out {
        let mut out = Out::default();
        if !(changed && online && self.cfg.state_active) {
            return out;
        }
        match self.state_pace.offer(now, self.cfg.state_interval) {
            Go::Now => self.push_state(&mut out),
            Go::Later(wake) => out.wake_at(wake),
        }
        out
    }

    /// The state message now, counted as sent.
    fn send_state(&mut self, out: &mut Out, now: Instant) {
        if !self.cfg.state_active {
            return;
        }
        self.state_pace.sent_at(now);
        self.push_state(out);
    }

    /// With an expiry the state is sent again after half of it, so that it expires at the
    /// broker only when this OctoPrint stopped sending (an idle printer changes nothing).
    fn refresh_at(&self) -> Option<Instant> {
        let expiry = self.cfg.state_expiry?;
        let sent = self.state_pace.sent?;
        (self.cfg.state_active && self.snapshot.state.is_some())
            .then(|| sent + Duration::from_secs_f64(f64::from(expiry) / 2.0))
    }

    fn push_state(&self, out: &mut Out) {
        if self.snapshot.state.is_none() {
            return; // nothing known yet: Python hands the state over at startup
        }
        let body = self
            .snapshot
            .encode(&self.cfg.timestamp_field, (self.now_unix)());
        out.wake_at(self.refresh_at());
        out.messages.push(Message {
            topic: self.cfg.state_topic.clone(),
            payload: body.into(),
            qos: Qos::AtMostOnce,
            retain: true,
            // Sent again at every connect: a queued one would only be older.
            queue_offline: false,
            expiry: self.cfg.state_expiry,
            correlation: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn printer(interval: f64, temperature_interval: f64) -> Printer {
        let mut s = Settings::default();
        s.publish.state_interval = interval;
        s.publish.temperature_interval = temperature_interval;
        Printer::new(Arc::new(s.publishing()), || 1_700_000_000)
    }

    fn job(name: &str) -> Option<Job> {
        Some(Job {
            name: name.into(),
            path: name.into(),
            origin: "local".into(),
            size: 100.into(),
            estimated_print_time: Value::Null,
            user: "admin".into(),
        })
    }

    fn progress(completion: f64) -> Option<Progress> {
        Some(Progress {
            completion: Some(completion),
            percent: percent(Some(completion), None, None, None),
            print_time: 1.into(),
            print_time_left: 2.into(),
            print_time_left_origin: "estimate".into(),
        })
    }

    fn body(m: &Message) -> Value {
        serde_json::from_slice(&m.payload).unwrap()
    }

    fn sample(actual: f64) -> Sample {
        Sample {
            time: 5,
            heaters: vec![(
                "tool0".into(),
                Reading {
                    actual: Some(actual),
                    target: Some(200.0),
                },
            )],
        }
    }

    #[test]
    fn flags_follow_octoprint_for_each_state() {
        let f = Flags::of("PRINTING");
        assert!(f.operational && f.printing && !f.ready && !f.paused);
        let f = Flags::of("OPERATIONAL");
        assert!(f.operational && f.ready && !f.printing);
        let f = Flags::of("PAUSED");
        assert!(f.operational && f.paused && !f.printing && !f.ready);
        assert!(Flags::of("CANCELLING").cancelling && Flags::of("CANCELLING").printing);
        assert!(Flags::of("PAUSING").pausing);
        let f = Flags::of("ERROR");
        assert!(f.error && f.closed_or_error && !f.operational);
        assert_eq!(
            Flags::of("OFFLINE"),
            Flags {
                closed_or_error: true,
                ..Flags::default()
            }
        );
        assert_eq!(Flags::of("CONNECTING"), Flags::default());
        assert_eq!(Flags::of("SOMETHING_NEW"), Flags::default());
    }

    #[test]
    fn the_message_has_the_keys_in_order() {
        let p = printer(1.0, 0.0);
        let t = Instant::now();
        let out = p.state_changed("PRINTING", "Printing", job("a.gcode"), true, t);
        assert_eq!(out.messages.len(), 1);
        let m = &out.messages[0];
        assert_eq!(
            (m.topic.as_str(), m.retain, m.qos),
            ("octoprint/state", true, Qos::AtMostOnce)
        );
        let text = String::from_utf8(m.payload.to_vec()).unwrap();
        assert!(text.starts_with(r#"{"state":{"text":"Printing","flags":{"operational":true,"printing":true,"paused":false,"error":false,"ready":false,"cancelling":false,"pausing":false,"closedOrError":false},"error":""},"job":{"name":"a.gcode","path":"a.gcode","origin":"local","size":100,"estimatedPrintTime":null,"user":"admin"},"progress":null,"temperatures":{},"_timestamp":1700000000}"#), "{text}");
    }

    #[test]
    fn every_distinct_state_goes_out_at_once_in_order() {
        let p = printer(1.0, 0.0);
        let t = Instant::now();
        let mut texts = Vec::new();
        for (id, text) in [
            ("PRINTING", "Printing"),
            ("FINISHING", "Finishing"),
            ("FINISHING", "Finishing"),
            ("OPERATIONAL", "Operational"),
        ] {
            for m in p.state_changed(id, text, job("a"), true, t).messages {
                texts.push(body(&m)["state"]["text"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(texts, ["Printing", "Finishing", "Operational"]);
    }

    #[test]
    fn progress_and_temperatures_are_paced_and_the_newest_sent_when_due() {
        let p = printer(1.0, 0.0);
        let t0 = Instant::now();
        p.state_changed("PRINTING", "Printing", job("a"), true, t0);
        let out = p.data(
            job("a"),
            progress(1.0),
            true,
            t0 + Duration::from_millis(100),
        );
        assert!(out.messages.is_empty());
        assert_eq!(out.wake, Some(t0 + Duration::from_secs(1)));
        let out = p.data(
            job("a"),
            progress(2.0),
            true,
            t0 + Duration::from_millis(600),
        );
        assert!(
            out.messages.is_empty() && out.wake.is_none(),
            "already waiting"
        );
        let out = p.temperatures(sample(30.0), true, t0 + Duration::from_millis(700));
        assert_eq!(out.messages.len(), 1, "the temperature topic is not paced");
        assert!(p
            .due(true, t0 + Duration::from_millis(900))
            .messages
            .is_empty());
        let out = p.due(true, t0 + Duration::from_secs(1));
        let b = body(&out.messages[0]);
        assert_eq!(b["progress"]["completion"], 2.0);
        assert_eq!(b["temperatures"]["tool0"]["actual"], 30.0);
        assert_eq!(out.wake, None);
        // A job change is not paced.
        let out = p.data(
            job("b"),
            progress(0.0),
            true,
            t0 + Duration::from_millis(1100),
        );
        assert_eq!(out.messages.len(), 1);
    }

    #[test]
    fn nothing_while_offline_then_the_current_state_at_connect() {
        let p = printer(1.0, 0.0);
        let t = Instant::now();
        assert!(p.at_connect(t).messages.is_empty(), "no state known yet");
        assert!(p
            .state_changed("OPERATIONAL", "Operational", None, false, t)
            .messages
            .is_empty());
        assert!(p
            .data(job("a"), progress(5.0), false, t)
            .messages
            .is_empty());
        let m = p.at_connect(t).messages.pop().unwrap();
        assert_eq!(body(&m)["job"]["name"], "a");
        assert_eq!(body(&m)["progress"]["percent"], 5);
    }

    #[test]
    fn an_error_stays_until_the_next_connection() {
        let p = printer(0.0, 0.0);
        let t = Instant::now();
        p.state_changed("OPERATIONAL", "Operational", None, true, t);
        let out = p.error("Too many consecutive timeouts", true, t);
        assert_eq!(
            body(&out.messages[0])["state"]["error"],
            "Too many consecutive timeouts"
        );
        let b = body(
            &p.state_changed("OFFLINE", "Offline", None, true, t)
                .messages[0],
        );
        assert_eq!(b["state"]["text"], "Offline after error");
        assert_eq!(b["state"]["flags"]["closedOrError"], true);
        let b = body(
            &p.state_changed("CONNECTING", "Connecting", None, true, t)
                .messages[0],
        );
        assert_eq!(
            (b["state"]["error"].as_str(), b["job"].is_null()),
            (Some(""), true)
        );
    }

    #[test]
    fn the_temperature_interval_sends_the_newest_reading_when_it_ends() {
        let p = printer(0.0, 5.0);
        let t0 = Instant::now();
        let topics = |out: &Out| {
            out.messages
                .iter()
                .filter(|m| m.topic.contains("temperature"))
                .count()
        };
        assert_eq!(topics(&p.temperatures(sample(20.0), true, t0)), 1);
        let out = p.temperatures(sample(25.0), true, t0 + Duration::from_secs(1));
        assert_eq!(
            (topics(&out), out.wake),
            (0, Some(t0 + Duration::from_secs(5)))
        );
        let out = p.temperatures(sample(30.0), true, t0 + Duration::from_secs(2));
        assert_eq!(topics(&out), 0);
        let out = p.due(true, t0 + Duration::from_secs(5));
        assert_eq!(topics(&out), 1);
        let m = out
            .messages
            .iter()
            .find(|m| m.topic.contains("temperature"))
            .unwrap();
        assert_eq!(body(m)["actual"], 30.0);
        assert!(p
            .due(true, t0 + Duration::from_secs(20))
            .messages
            .is_empty());
    }

    #[test]
    fn with_an_expiry_an_unchanged_state_is_sent_again_after_half_of_it() {
        let mut s = Settings::default();
        s.publish.state_expiry = 10;
        let p = Printer::new(Arc::new(s.publishing()), || 1);
        let t0 = Instant::now();
        let out = p.state_changed("OPERATIONAL", "Operational", None, true, t0);
        assert_eq!(out.wake, Some(t0 + Duration::from_secs(5)));
        assert_eq!(out.messages[0].expiry, Some(10));
        assert!(p.due(true, t0 + Duration::from_secs(4)).messages.is_empty());
        let out = p.due(true, t0 + Duration::from_secs(5));
        assert_eq!(out.messages.len(), 1);
        assert_eq!(out.wake, Some(t0 + Duration::from_secs(10)));
        // Offline: nothing, and no wake-ups until the next connect.
        let out = p.due(false, t0 + Duration::from_secs(10));
        assert!(out.messages.is_empty() && out.wake.is_none());
        assert_eq!(p.at_connect(t0).wake, Some(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn heaters_without_readings_are_left_out_of_the_state() {
        let p = printer(0.0, 0.0);
        let t = Instant::now();
        p.state_changed("OPERATIONAL", "Operational", None, true, t);
        let mut s = sample(30.0);
        s.heaters.push((
            "chamber".into(),
            Reading {
                actual: None,
                target: None,
            },
        ));
        let out = p.temperatures(s, true, t);
        let state = out
            .messages
            .iter()
            .find(|m| m.topic == "octoprint/state")
            .unwrap();
        assert_eq!(
            body(state)["temperatures"],
            serde_json::json!({"tool0": {"actual": 30.0, "target": 200.0}})
        );
    }

    #[test]
    fn percent_rounds_like_python_and_prefers_genius() {
        assert_eq!(percent(Some(41.6), None, None, None), 42);
        assert_eq!(percent(Some(2.5), None, None, None), 2);
        assert_eq!(percent(None, None, None, None), 0);
        assert_eq!(percent(Some(100.4), None, None, None), 100);
        assert_eq!(
            percent(Some(10.0), Some(300.0), Some(100.0), Some("genius")),
            75
        );
        assert_eq!(percent(Some(f64::NAN), None, None, None), 0);
    }
}
