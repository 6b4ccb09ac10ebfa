//! Python `str` as Rust `&str` without a copy.
//!
//! With the stable ABI for Python 3.8 (abi3-py38), pyo3 can only read a `str` by encoding it
//! into a new `bytes` object and copying that: an allocation, a copy and a free for every key
//! and value of every event, the largest cost of encoding one (see docs/benchmark.md).
//! `PyUnicode_AsUTF8AndSize` returns the UTF-8 text CPython keeps inside the object (the
//! characters themselves for ASCII text) and exists in every CPython 3, but is part of the
//! stable ABI only from 3.10, so pyo3 does not declare it for 3.8.

use std::borrow::Cow;
use std::os::raw::c_char;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

extern "C" {
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut ffi::PyObject,
        size: *mut ffi::Py_ssize_t,
    ) -> *const c_char;
}

/// The text of `s`, borrowed from the object where CPython has it as UTF-8; text that is not
/// valid UTF-8 (lone surrogates) is copied with replacement characters, as before.
pub fn text<'a>(s: &'a Bound<'_, PyString>) -> Cow<'a, str> {
    match utf8(s) {
        Some(text) => Cow::Borrowed(text),
        None => s.to_string_lossy(),
    }
}

/// The text of `s` without a copy, or None when UTF-8 cannot encode it (lone surrogates):
/// for topics, where a lossy copy would publish or subscribe somewhere else than asked.
pub fn utf8<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a str> {
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str (the GIL is held: we have a Bound). The buffer belongs to the
    // object, which is immutable and outlives 'a; CPython guarantees it is valid UTF-8.
    let ptr = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut len) };
    if ptr.is_null() {
        // A UnicodeEncodeError: the caller says what it means for its value.
        let _ = PyErr::take(s.py());
        return None;
    }
    // SAFETY: see above; `len` bytes at `ptr` are the object's UTF-8 text.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len as usize) };
    // SAFETY: CPython produced it with its UTF-8 encoder.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_non_ascii_and_surrogates() {
        Python::initialize();
        Python::attach(|py| {
            for t in ["", "plain", "Grüße 🖨", "a\u{0}b"] {
                let s = PyString::new(py, t);
                assert_eq!(text(&s), t);
            }
            let lone = py.eval(c"'a\\ud800b'", None, None).unwrap();
            let lone = lone.cast::<PyString>().unwrap();
            // As before this module: pyo3's lossy copy (one U+FFFD per byte of the surrogate).
            assert_eq!(text(lone), lone.to_string_lossy());
            assert!(text(lone).starts_with('a') && text(lone).contains('\u{fffd}'));
            assert!(PyErr::take(py).is_none());
            assert_eq!(utf8(lone), None);
            assert!(PyErr::take(py).is_none());
            assert_eq!(utf8(&PyString::new(py, "Grüße")), Some("Grüße"));
        });
    }
}
