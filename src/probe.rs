//! "Test connection": one connection attempt with settings that are not saved yet, on a
//! throwaway client of its own, so the live connection is never touched.

use std::time::{Duration, Instant};

use crate::config::{generate_client_id, Protocol, Settings};
use crate::link::{self, NetEvent};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// What happened, in the words the log uses for the same failure.
    pub reason: String,
    /// `host:port`, when a host was given.
    pub broker: Option<String>,
    pub protocol: &'static str,
    pub elapsed: Duration,
}

/// Connects once, waits at most `timeout` for the broker's answer and disconnects again.
/// Blocks the calling thread (call it without the GIL).
pub fn test_connection(settings: &Settings, timeout: Duration) -> Outcome {
    let started = Instant::now();
    // Values the live connection would replace (a client id too long for MQTT, an unknown
    // transport) are replaced the same way: a test behaves as the saved settings will.
    let mut settings = settings.clone();
    settings.sanitize();
    let settings = &settings;
    // Never the live client's id: the broker would drop the live connection for the test's.
    let client_id = match settings.client.client_id.as_deref().map(str::trim) {
        // The suffix must not push an id over what MQTT can send.
        Some(id) if !id.is_empty() && id.len() <= 65_530 => format!("{id}-test"),
        _ => generate_client_id().replacen("octoprint-mqtt-", "octoprint-mqtt-test-", 1),
    };
    let Some(mut conn) = settings.connection("") else {
        return Outcome {
            ok: false,
            reason: "no broker host is set (enter the broker's host name or IP address)".into(),
            broker: None,
            protocol: "",
            elapsed: started.elapsed(),
        };
    };
    // No last will and no stored session: a test must not announce "disconnected" on the
    // status topic when it hangs up, nor leave anything behind at the broker.
    conn.status = None;
    conn.clean_session = true;
    conn.client_id = client_id;
    let address = conn.address();
    let protocol = match conn.protocol {
        Protocol::V311 => "MQTT 3.1.1",
        Protocol::V5 => "MQTT 5",
    };
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(attempt(&conn, &address, timeout)),
        Err(e) => Err(format!("cannot start the connection test: {e}")),
    };
    let (ok, reason) = match result {
        Ok(()) => (true, format!("connected to {address} with {protocol}")),
        Err(reason) => (false, reason),
    };
    Outcome {
        ok,
        reason,
        broker: Some(address),
        protocol,
        elapsed: started.elapsed(),
    }
}

async fn attempt(
    conn: &crate::config::ConnectionConfig,
    address: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut session = link::start(conn).map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(timeout, async {
        loop {
            match session.events.recv().await {
                Some(NetEvent::Connected { .. }) => return Ok(()),
                Some(NetEvent::Down { reason, .. }) => return Err(reason),
                Some(_) => continue,
                None => return Err("the connection test ended unexpectedly".to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "timed out connecting to {address} (no answer within {} s)",
            timeout.as_secs_f32()
        ))
    });
    if answer.is_ok() && session.client.try_disconnect() {
        // A clean DISCONNECT keeps the broker's log free of "closed its connection"
        // warnings; not worth more than a moment.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(ev) = session.events.recv().await {
                if matches!(ev, NetEvent::DisconnectSent | NetEvent::Down { .. }) {
                    break;
                }
            }
        })
        .await;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> Settings {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn no_host_is_reported_without_connecting() {
        let out = test_connection(&settings("{}"), Duration::from_secs(1));
        assert!(!out.ok);
        assert!(out.reason.contains("no broker host"), "{}", out.reason);
    }

    #[test]
    fn a_closed_port_is_refused_quickly() {
        // Bind and drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = settings(&format!(
            r#"{{"broker": {{"url": "127.0.0.1", "port": {port}}}}}"#
        ));
        let out = test_connection(&s, Duration::from_secs(5));
        assert!(!out.ok);
        assert!(out.reason.contains("connection refused"), "{}", out.reason);
        assert!(out.elapsed < Duration::from_secs(5));
    }
}
