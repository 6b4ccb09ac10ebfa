//! JSON encoding of Python values, written straight from the Python objects.
//!
//! What consumers rely on (docs/behaviour.md §3.11): keys in the dict's insertion order,
//! non-string keys stringified as Python's `json` module does, values JSON cannot carry written
//! as their `str()`, NaN and infinities as `null`, integers of any size exact (beyond 4300
//! digits as a string of their digits), UTF-8 text.

use std::borrow::Cow;
use std::io::Write as _;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};

/// Deeper than this is written as its `str()`.
const MAX_DEPTH: usize = 100;

/// Integers with more digits are written as a JSON string of their digits: Python's default
/// int-to-str limit (`sys.set_int_max_str_digits`), which its `json.loads` applies to numbers
/// too, so a consumer in Python would refuse the whole message. Fixed, not the process's
/// current limit: what consumers get must not depend on a setting of OctoPrint's process.
const MAX_NUMBER_DIGITS: u32 = 4300;

/// The containers being written, outermost first: a container met again inside itself is
/// written as its `str()` (Python's repr shows the cycle as `{...}`) instead of recursing
/// until the depth limit, which a container holding itself twice would do 2^100 times, on
/// OctoPrint's thread and with the GIL held.
type Path = Vec<usize>;

/// `value` as a dict: itself, or a copy of a mapping that is not a dict. OctoPrint hands out
/// frozendicts (temperatures, printer data), which are no dict subclass before Python 3.11.
pub fn as_dict<'py>(value: &Bound<'py, PyAny>) -> Option<Bound<'py, PyDict>> {
    if let Ok(dict) = value.cast::<PyDict>() {
        return Some(dict.clone());
    }
    let mapping = value.cast::<PyMapping>().ok()?;
    let dict = PyDict::new(value.py());
    dict.update(mapping).ok()?;
    Some(dict)
}

/// An event message: the payload's keys, then `_event` and the timestamp field.
pub fn encode_event(
    payload: Option<&Bound<'_, PyAny>>,
    event: &str,
    timestamp_field: &str,
    timestamp: u64,
) -> Vec<u8> {
    encode_stamped(payload, Some(event), timestamp_field, timestamp)
}

/// A payload dict with `_event` (when given) and the timestamp field added after its own keys.
/// A key of the payload with one of those names keeps its place and gets the plugin's value,
/// as a Python dict update would. A payload that is not a dict is kept under `payload`.
pub fn encode_stamped(
    payload: Option<&Bound<'_, PyAny>>,
    event: Option<&str>,
    timestamp_field: &str,
    timestamp: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut obj = ObjectWriter::new(&mut out);
    let mut wrote_event = event.is_none();
    let mut wrote_ts = false;
    if let Some(payload) = payload.filter(|p| p.is_truthy().unwrap_or(true)) {
        let mut path: Path = vec![payload.as_ptr() as usize];
        match as_dict(payload) {
            Some(dict) => {
                for (k, v) in dict.iter() {
                    let key = key_string(&k);
                    obj.key(&key);
                    match event {
                        Some(event) if key == "_event" => {
                            write_str(obj.out, event);
                            wrote_event = true;
                        }
                        _ if key == timestamp_field => {
                            write_u64(obj.out, timestamp);
                            wrote_ts = true;
                        }
                        _ => write_value(obj.out, &v, &mut path),
                    }
                }
            }
            // Events fired by other plugins may carry a bare value; keep it rather than fail.
            None => {
                obj.key("payload");
                path.clear();
                write_value(obj.out, payload, &mut path);
            }
        }
    }
    if let (false, Some(event)) = (wrote_event, event) {
        obj.key("_event");
        write_str(obj.out, event);
    }
    if !wrote_ts {
        obj.key(timestamp_field);
        write_u64(obj.out, timestamp);
    }
    obj.finish();
    out
}

/// Any Python value as JSON text.
pub fn encode_value(value: &Bound<'_, PyAny>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value, &mut Path::new());
    out
}

/// A value published raw (file metadata): text as it is, containers and other scalars as
/// JSON text (`12.5`, `true`, `null`).
pub fn encode_text(value: &Bound<'_, PyAny>) -> Vec<u8> {
    match value.cast::<PyString>() {
        Ok(s) => crate::pystr::text(s).as_bytes().to_vec(),
        Err(_) => encode_value(value),
    }
}

/// A JSON object key (quoted and escaped).
pub fn encode_key(key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    write_str(&mut out, key);
    out
}

/// A sample reading as JSON: finite floats as numbers, anything else as `null`.
pub fn write_reading(out: &mut Vec<u8>, value: Option<f64>) {
    match value {
        Some(f) => write_float(out, f),
        None => out.extend_from_slice(b"null"),
    }
}

struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(b':');
    }

    fn finish(self) {
        self.out.push(b'}');
    }
}

fn write_value(out: &mut Vec<u8>, v: &Bound<'_, PyAny>, path: &mut Path) {
    if v.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(s) = v.cast::<PyString>() {
        write_str(out, &crate::pystr::text(s));
    } else if let Ok(b) = v.cast::<PyBool>() {
        // Before int: bool is a subclass of int.
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if v.is_instance_of::<PyInt>() {
        write_int(out, v);
    } else if let Ok(f) = v.cast::<PyFloat>() {
        write_float(out, f.value());
    } else if let Ok(d) = v.cast::<PyDict>() {
        write_dict(out, v, d, path);
    } else if let Ok(l) = v.cast::<PyList>() {
        if !enter(path, v) {
            return write_str(out, &display(v));
        }
        write_array(out, l.iter(), path);
        path.pop();
    } else if let Ok(t) = v.cast::<PyTuple>() {
        if !enter(path, v) {
            return write_str(out, &display(v));
        }
        write_array(out, t.iter(), path);
        path.pop();
    } else if let Some(d) = as_dict(v) {
        // Checked after the concrete types: the Mapping check is an isinstance on an ABC.
        write_dict(out, v, &d, path);
    } else {
        // datetimes, sets, bytes, enums, arbitrary objects: their string form.
        write_str(out, &display(v));
    }
}

/// Pushes the container onto the path; false (and nothing pushed) when it is already on it
/// or the path is too deep.
fn enter(path: &mut Path, v: &Bound<'_, PyAny>) -> bool {
    let id = v.as_ptr() as usize;
    if path.len() >= MAX_DEPTH || path.contains(&id) {
        return false;
    }
    path.push(id);
    true
}

/// `container` is the object on the path (a mapping's identity, not its dict copy's).
fn write_dict(
    out: &mut Vec<u8>,
    container: &Bound<'_, PyAny>,
    d: &Bound<'_, PyDict>,
    path: &mut Path,
) {
    if !enter(path, container) {
        return write_str(out, &display(container));
    }
    let mut obj = ObjectWriter::new(out);
    for (k, item) in d.iter() {
        obj.key(&key_string(&k));
        write_value(obj.out, &item, path);
    }
    obj.finish();
    path.pop();
}

fn write_array<'py>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    path: &mut Path,
) {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(out, &item, path);
    }
    out.push(b']');
}

fn write_int(out: &mut Vec<u8>, v: &Bound<'_, PyAny>) {
    if let Ok(i) = v.extract::<i64>() {
        let _ = write!(out, "{i}");
    } else if let Ok(u) = v.extract::<u64>() {
        let _ = write!(out, "{u}");
    } else if fits_a_number(v) {
        // Beyond 64 bits: int's own decimal text is exact (and valid JSON).
        match int_digits(v) {
            Some(digits) => out.extend_from_slice(digits.as_bytes()),
            None => write_str(out, &display(v)),
        }
    } else {
        write_str(out, &int_digits(v).unwrap_or_else(|| display(v)));
    }
}

/// Whether `v` (an int) has at most [`MAX_NUMBER_DIGITS`] digits.
fn fits_a_number(v: &Bound<'_, PyAny>) -> bool {
    static BOUND: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = v.py();
    let bound = BOUND.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(10u32
            .into_pyobject(py)?
            .pow(MAX_NUMBER_DIGITS, py.None())?
            .unbind())
    });
    // abs() and < cannot fail for an int; were they to, the string is valid JSON too.
    bound
        .and_then(|b| v.call_method0("__abs__")?.lt(b.bind(py)))
        .unwrap_or(false)
}

/// The exact decimal digits of an int of any size (None only if Python cannot allocate them).
pub fn int_digits(v: &Bound<'_, PyAny>) -> Option<String> {
    let py = v.py();
    // int.__repr__, not str(): an IntEnum member's str() is its name.
    let repr = py
        .get_type::<PyInt>()
        .call_method1("__repr__", (v,))
        .and_then(|r| r.extract::<String>());
    if let Ok(digits) = repr {
        return Some(digits);
    }
    // Refused beyond sys.get_int_max_str_digits(). decimal converts without that limit (the
    // limit guards parsing untrusted text; this int is already in memory).
    py.import("decimal")
        .and_then(|m| m.getattr("Decimal"))
        .and_then(|decimal| decimal.call1((v,)))
        .and_then(|d| d.str())
        .map(|s| s.to_string_lossy().into_owned())
        .ok()
}
fn write_float(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        // serde_json writes the shortest text that reads back as the same float.
        serde_json::to_writer(&mut *out, &f).expect("writing to a Vec cannot fail");
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// Dict keys as Python's `json` turns them into strings; other key types by their `str()`
/// (where `json` would raise).
fn key_string<'a>(k: &'a Bound<'_, PyAny>) -> Cow<'a, str> {
    if let Ok(s) = k.cast::<PyString>() {
        crate::pystr::text(s)
    } else {
        Cow::Owned(other_key_string(k))
    }
}

fn other_key_string(k: &Bound<'_, PyAny>) -> String {
    if k.is_none() {
        "null".into()
    } else if let Ok(b) = k.cast::<PyBool>() {
        if b.is_true() { "true" } else { "false" }.into()
    } else if k.is_instance_of::<PyInt>() {
        int_text(k)
    } else if let Ok(f) = k.cast::<PyFloat>() {
        let f = f.value();
        if f.is_nan() {
            "NaN".into()
        } else if f.is_infinite() {
            if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
        } else {
            float_repr(k)
        }
    } else {
        display(k)
    }
}

fn int_text(v: &Bound<'_, PyAny>) -> String {
    int_digits(v).unwrap_or_else(|| display(v))
}

fn float_repr(v: &Bound<'_, PyAny>) -> String {
    v.py()
        .get_type::<PyFloat>()
        .call_method1("__repr__", (v,))
        .and_then(|r| r.extract::<String>())
        .unwrap_or_else(|_| display(v))
}

fn display(v: &Bound<'_, PyAny>) -> String {
    match v.str() {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => format!(
            "<unprintable {}>",
            v.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_up_to_4300_digits_are_numbers_longer_ones_strings() {
        Python::initialize();
        Python::attach(|py| {
            let eval = |code: &std::ffi::CStr| py.eval(code, None, None).unwrap();
            let nines = encode_value(&eval(c"10**4300 - 1"));
            assert_eq!(nines, vec![b'9'; 4300]);
            let big = encode_value(&eval(c"-(10**5000) - 7"));
            let mut expected = b"\"-1".to_vec();
            expected.extend(std::iter::repeat_n(b'0', 4999));
            expected.extend_from_slice(b"7\"");
            assert_eq!(big, expected);
            let key = encode_value(&eval(c"{10**4300: 1}"));
            assert!(key.starts_with(b"{\"1000") && key.ends_with(b"0\":1}"));
            assert_eq!(key.len(), "{\"\":1}".len() + 4301);
            assert!(PyErr::take(py).is_none());
        });
    }
}
