//! The messages the plugin publishes, built from Python values and the publishing settings:
//! events, progress, temperatures, metadata and the helpers' payloads. Each builder decides
//! topic, payload bytes, QoS and retain flag (`docs/behaviour.md`, topics and payloads; helper
//! API), or why there is nothing to send; `lib.rs` only hands the result to the core.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyString};

use crate::config::PublishConfig;
use crate::error::{Error, Result};
use crate::message::{Message, Qos};
use crate::printer::{percent, Job, Progress, Sample};
use crate::temperature::Reading;
use crate::{events, payload, pystr, topic};

/// The plugin's own messages (events, progress, temperatures, metadata): QoS 0, kept while
/// offline unless `publish.queueWhileOffline` is off.
fn own(cfg: &PublishConfig, topic: String, payload: Vec<u8>, retain: bool) -> Message {
    Message {
        topic,
        payload: payload.into(),
        qos: Qos::AtMostOnce,
        retain,
        queue_offline: cfg.queue_events_offline,
        expiry: None,
        correlation: None,
    }
}

/// A topic or filter as Rust text; an invalid topic like any other MQTT cannot carry when
/// UTF-8 cannot encode it, rather than a lossy copy naming another topic.
pub fn topic_text<'a>(topic: &'a Bound<'_, PyString>) -> Result<&'a str> {
    pystr::utf8(topic).ok_or_else(|| Error::topic(&topic.to_string_lossy(), topic::LONE_SURROGATE))
}

/// An OctoPrint event on `<base><eventTopic>`; None when its class is switched off or
/// `publish.eventExclude` names it.
pub fn event(
    cfg: &PublishConfig,
    event: &Bound<'_, PyString>,
    payload: Option<&Bound<'_, PyAny>>,
    now: u64,
) -> Result<Option<Message>> {
    // Borrowed, not copied: see pystr.rs (this runs for every OctoPrint event).
    let (event, encodable) = match pystr::utf8(event) {
        Some(text) => (std::borrow::Cow::Borrowed(text), true),
        None => (event.to_string_lossy(), false),
    };
    let event = event.as_ref();
    if !cfg.event_active || !cfg.events.enabled(events::classify(event)) || cfg.excluded(event) {
        return Ok(None);
    }
    let topic = cfg.event_topic(event);
    if !encodable {
        return Err(Error::topic(&topic, topic::LONE_SURROGATE));
    }
    topic::validate_topic(&topic)?;
    let body = payload::encode_event(payload, event, &cfg.timestamp_field, now);
    let retain = cfg.retain && events::retain_follows_broker(event);
    Ok(Some(own(cfg, topic, body, retain)))
}

/// Print (`printing`, always retained) or slicing (`slicing`, retained per `broker.retain`)
/// progress, stamped; None when progress is switched off. `queue=None` follows
/// `publish.queueWhileOffline`.
pub fn progress(
    cfg: &PublishConfig,
    kind: &str,
    payload: &Bound<'_, PyAny>,
    queue: Option<bool>,
    now: u64,
) -> Result<Option<Message>> {
    let retain = match kind {
        "printing" => true,
        "slicing" => cfg.retain,
        other => {
            return Err(Error::ArgumentValue(format!(
                "progress kind must be 'printing' or 'slicing', not {other:?}"
            )))
        }
    };
    if !cfg.progress_active {
        return Ok(None);
    }
    let topic = cfg.progress_topic(kind);
    topic::validate_topic(&topic)?;
    let body = payload::encode_stamped(Some(payload), None, &cfg.timestamp_field, now);
    Ok(Some(Message {
        queue_offline: queue.unwrap_or(cfg.queue_events_offline),
        ..own(cfg, topic, body, retain)
    }))
}

/// One sample from OctoPrint's printer callback, `{"time": t, "<heater>": {"actual": a,
/// "target": t}, ...}`, read once for both the temperature topics and the state topic.
pub fn sample(data: &Bound<'_, PyAny>, now: u64) -> Result<Sample> {
    let data = payload::as_dict(data)
        .ok_or_else(|| Error::Payload("temperature data must be a mapping".into()))?;
    let time = match data.get_item("time")? {
        Some(t) => t.extract::<f64>().map(|t| t as u64).unwrap_or(now),
        None => now,
    };
    let mut heaters = Vec::with_capacity(data.len());
    for (heater, values) in data.iter() {
        let (Ok(heater), Some(values)) = (heater.extract::<String>(), payload::as_dict(&values))
        else {
            continue; // "time", or something a plugin added that is not a heater
        };
        let reading = Reading {
            actual: reading(&values, "actual")?,
            target: reading(&values, "target")?,
        };
        heaters.push((heater, reading));
    }
    Ok(Sample { time, heaters })
}

/// A heater's message on `<base><temperatureTopic>`, stamped with its sample's time.
pub fn temperature(cfg: &PublishConfig, heater: &str, r: Reading, time: u64) -> Result<Message> {
    let topic = cfg.temperature_topic(heater);
    topic::validate_topic(&topic)?;
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(b"{\"actual\":");
    payload::write_reading(&mut body, r.actual);
    body.extend_from_slice(b",\"target\":");
    payload::write_reading(&mut body, r.target);
    body.push(b',');
    body.extend_from_slice(&payload::encode_key(&cfg.timestamp_field));
    body.extend_from_slice(format!(":{time}}}").as_bytes());
    Ok(own(cfg, topic, body, cfg.retain))
}

/// A heater's `actual` or `target`: a number, or nothing (missing, None, NaN, not a number).
fn reading(values: &Bound<'_, PyDict>, key: &str) -> Result<Option<f64>> {
    Ok(values
        .get_item(key)?
        .and_then(|v| v.extract::<f64>().ok())
        .filter(|v| v.is_finite()))
}

/// File metadata for each key of `publish.metadataKeys`: the value at print start, or with
/// `metadata=None` an empty payload per key (clears the retained value when the job ends).
/// A key that makes no valid topic is logged and skipped.
pub fn metadata(cfg: &PublishConfig, metadata: Option<&Bound<'_, PyAny>>) -> Result<Vec<Message>> {
    if !cfg.metadata_active {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for key in &cfg.metadata_keys {
        let body = match metadata {
            None => Vec::new(),
            Some(m) => match lookup(m, key)? {
                Some(value) => payload::encode_text(&value),
                None => continue,
            },
        };
        let topic = cfg.metadata_topic(key);
        if let Err(e) = topic::validate_topic(&topic) {
            warn!("Metadata key {key:?} cannot be published: {e}");
            continue;
        }
        out.push(own(cfg, topic, body, cfg.retain));
    }
    Ok(out)
}

/// `key` in a metadata dict: the literal key first, else a dotted path through nested dicts.
fn lookup<'py>(metadata: &Bound<'py, PyAny>, key: &str) -> Result<Option<Bound<'py, PyAny>>> {
    let Some(dict) = payload::as_dict(metadata) else {
        return Ok(None);
    };
    if let Some(v) = dict.get_item(key)? {
        return Ok(Some(v));
    }
    let mut current = metadata.clone();
    for part in key.split('.') {
        let Some(next) = payload::as_dict(&current)
            .map(|d| d.get_item(part))
            .transpose()?
            .flatten()
        else {
            return Ok(None);
        };
        current = next;
    }
    Ok(Some(current))
}

/// What `mqtt_publish` was called with, flags as Python passed them (any truthy value).
pub struct HelperCall<'a, 'py> {
    pub topic: &'a Bound<'py, PyString>,
    pub payload: &'a Bound<'py, PyAny>,
    pub retained: Option<&'a Bound<'py, PyAny>>,
    pub qos: i64,
    pub allow_queueing: Option<&'a Bound<'py, PyAny>>,
    pub raw_data: Option<&'a Bound<'py, PyAny>>,
}

/// `mqtt_publish`'s message: `retained=None` follows `broker.retain`.
pub fn helper(cfg: &PublishConfig, call: HelperCall<'_, '_>) -> Result<Message> {
    let topic = topic_text(call.topic)?;
    topic::validate_topic(topic)?;
    let qos = Qos::try_from(call.qos)?;
    let truthy = |v: Option<&Bound<'_, PyAny>>| v.map_or(Ok(false), |v| v.is_truthy());
    let queue_offline = truthy(call.allow_queueing)?;
    let payload = helper_payload(call.payload, truthy(call.raw_data)?)?;
    let retain = match call.retained.filter(|r| !r.is_none()) {
        Some(r) => r.is_truthy()?,
        None => cfg.retain,
    };
    Ok(Message {
        topic: topic.to_owned(),
        payload: payload.into(),
        qos,
        retain,
        queue_offline,
        expiry: None,
        correlation: None,
    })
}

/// The bytes `mqtt_publish` sends for a payload (docs/behaviour.md §4.4): text as UTF-8, anything else as JSON; with
/// `raw_data`, bytes as they are, numbers as their text and None as nothing.
fn helper_payload(payload: &Bound<'_, PyAny>, raw_data: bool) -> Result<Vec<u8>> {
    if let Ok(s) = payload.cast::<PyString>() {
        return Ok(pystr::text(s).as_bytes().to_vec());
    }
    let is_bytes = payload.is_instance_of::<PyBytes>() || payload.is_instance_of::<PyByteArray>();
    if !raw_data {
        if is_bytes {
            return Err(Error::Payload(
                "bytes payloads are sent with raw_data=True; without it the payload is JSON-encoded"
                    .into(),
            ));
        }
        return Ok(payload::encode_value(payload));
    }
    if payload.is_none() {
        Ok(Vec::new())
    } else if let Ok(b) = payload.cast::<PyBytes>() {
        Ok(b.as_bytes().to_vec())
    } else if let Ok(b) = payload.cast::<PyByteArray>() {
        Ok(b.to_vec())
    } else if payload.is_instance_of::<PyInt>()
        || payload.is_instance_of::<PyFloat>()
        || payload.is_instance_of::<PyBool>()
    {
        match payload.str() {
            Ok(text) => Ok(text.to_string_lossy().as_bytes().to_vec()),
            // An int beyond Python's int-to-str limit: its digits all the same.
            Err(err) if payload.is_instance_of::<PyInt>() => payload::int_digits(payload)
                .map(String::into_bytes)
                .ok_or(Error::Python(err)),
            Err(err) => Err(Error::Python(err)),
        }
    } else {
        Err(Error::Payload(format!(
            "raw_data payloads must be bytes, bytearray, str, int, float or None, not {}",
            payload.get_type().name()?
        )))
    }
}

/// A value of OctoPrint's as JSON; what JSON cannot hold (a NaN) as null.
fn json_of(v: Option<Bound<'_, PyAny>>) -> serde_json::Value {
    v.and_then(|v| pythonize::depythonize(&v).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn item<'py>(d: &Bound<'py, PyDict>, key: &str) -> Result<Option<Bound<'py, PyAny>>> {
    Ok(d.get_item(key)?.filter(|v| !v.is_none()))
}

/// OctoPrint's job (`printer.get_current_job()`, or `job` of its current data): None when no
/// file is selected.
pub fn printer_job(job: Option<&Bound<'_, PyAny>>) -> Result<Option<Job>> {
    let Some(job) = job.and_then(payload::as_dict) else {
        return Ok(None);
    };
    let Some(file) = item(&job, "file")?.and_then(|f| payload::as_dict(&f)) else {
        return Ok(None);
    };
    let path = item(&file, "path")?;
    if path.is_none() {
        return Ok(None);
    }
    Ok(Some(Job {
        name: json_of(item(&file, "name")?),
        path: json_of(path),
        origin: json_of(item(&file, "origin")?),
        size: json_of(item(&file, "size")?),
        estimated_print_time: json_of(item(&job, "estimatedPrintTime")?),
        user: json_of(item(&job, "user")?),
    }))
}

/// OctoPrint's `progress` (of its current data), with the percentage the progress topic uses.
pub fn printer_progress(progress: Option<&Bound<'_, PyAny>>) -> Result<Option<Progress>> {
    let Some(p) = progress.and_then(payload::as_dict) else {
        return Ok(None);
    };
    let number = |key: &str| -> Result<Option<f64>> {
        Ok(item(&p, key)?
            .and_then(|v| v.extract::<f64>().ok())
            .filter(|v| v.is_finite()))
    };
    let origin = item(&p, "printTimeLeftOrigin")?;
    let origin_text = origin.as_ref().and_then(|o| o.extract::<String>().ok());
    let completion = number("completion")?;
    Ok(Some(Progress {
        completion,
        percent: percent(
            completion,
            number("printTime")?,
            number("printTimeLeft")?,
            origin_text.as_deref(),
        ),
        print_time: json_of(item(&p, "printTime")?),
        print_time_left: json_of(item(&p, "printTimeLeft")?),
        print_time_left_origin: json_of(origin),
    }))
}
