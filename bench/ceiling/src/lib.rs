//! What the two benchmark binaries share: the clock, process figures, command-line
//! arguments, the event payload and the client options.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// CLOCK_MONOTONIC in nanoseconds: the clock Python's `time.monotonic_ns()` and
/// `time.perf_counter_ns()` read on Linux, so times taken in different processes compare.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// User and system CPU seconds of this process (all threads).
pub fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes into the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// (VmRSS, VmHWM) of this process in KiB.
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `--key value` pairs after the mode.
pub struct Args(HashMap<String, String>);

impl Args {
    pub fn parse(args: impl Iterator<Item = String>) -> Args {
        let mut map = HashMap::new();
        let mut args = args.peekable();
        while let Some(a) = args.next() {
            let key = a
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("unexpected argument {a:?}"));
            let value = match args.peek() {
                Some(v) if !v.starts_with("--") => args.next().unwrap(),
                _ => "1".to_owned(),
            };
            map.insert(key.to_owned(), value);
        }
        Args(map)
    }

    pub fn str(&self, key: &str, default: &str) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| default.to_owned())
    }

    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("--{key} {v:?} is not a number")),
            None => default,
        }
    }

    pub fn qos(&self) -> rumqttc::QoS {
        match self.num("qos", 0u8) {
            0 => rumqttc::QoS::AtMostOnce,
            1 => rumqttc::QoS::AtLeastOnce,
            2 => rumqttc::QoS::ExactlyOnce,
            q => panic!("bad --qos {q}"),
        }
    }
}

/// Client options as the plugin's core sets them: TCP_NODELAY, large packets, 1,000 QoS 1
/// messages in flight.
pub fn options(id: &str, host: &str, port: u16) -> (rumqttc::MqttOptions, rumqttc::NetworkOptions) {
    let mut o = rumqttc::MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(60))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(1000);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    (o, net)
}

/// The typical event, as the plugin's core encodes it (compact JSON), with the sequence
/// number in the file name so the subscriber can match each message to its send time.
pub fn event_payload(seq: u64, timestamp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    write!(
        out,
        "{{\"name\":\"benchy_{seq:07}.gcode\",\"path\":\"prints/calibration/benchy_{seq:07}.gcode\",\
\"origin\":\"local\",\"size\":3688412,\"owner\":\"admin\",\"user\":\"admin\",\
\"_event\":\"FileAdded\",\"_timestamp\":{timestamp}}}"
    )
    .expect("write to a Vec");
    out
}

/// The sequence number inside a payload made by [`event_payload`] (or by the Python side).
pub fn payload_seq(payload: &[u8]) -> Option<u64> {
    const MARK: &[u8] = b"benchy_";
    let at = payload.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let digits = payload.get(at..at + 7)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Percentile (0..=100) of sorted values, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let p = event_payload(1234, 1795593310);
        assert_eq!(payload_seq(&p), Some(1234));
        assert!(p.len() > 150 && p.len() < 220, "{}", p.len());
    }
}
