//! Every record goes to Python's `octoprint.plugins.mqtt` logger (via pyo3-log), so it lands
//! in octoprint.log next to the plugin's own lines.

pub const TARGET: &str = "octoprint.plugins.mqtt";

macro_rules! info { ($($arg:tt)+) => { log::info!(target: $crate::logging::TARGET, $($arg)+) } }
macro_rules! warn { ($($arg:tt)+) => { log::warn!(target: $crate::logging::TARGET, $($arg)+) } }
macro_rules! error { ($($arg:tt)+) => { log::error!(target: $crate::logging::TARGET, $($arg)+) } }
macro_rules! debug { ($($arg:tt)+) => { log::debug!(target: $crate::logging::TARGET, $($arg)+) } }
