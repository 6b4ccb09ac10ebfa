//! One connection attempt loop to one broker: builds rumqttc options (MQTT 3.1.1 or 5) from a
//! [`ConnectionConfig`], runs rumqttc's event loop in a task that reconnects with backoff, and
//! reports what happens as [`NetEvent`]s. The connection state machine lives in
//! `connection.rs`; this module only translates between it and rumqttc.

use std::io;
use std::time::Duration;

use rumqttc::v5;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{ConnectionConfig, Protocol};
use crate::error::Result;
use crate::message::{Incoming, Message, Qos};
use crate::tls;

/// Large enough for camera snapshots; rumqttc's default (10 KiB) refuses ordinary payloads.
pub const MAX_PACKET_SIZE: usize = 64 * 1024 * 1024;
/// Requests rumqttc buffers between us and the socket; the core keeps the rest itself.
const REQUEST_CAPACITY: usize = 1024;
/// QoS 1/2 messages in flight at once (packet ids are finite; the rest wait in our queue).
const MAX_INFLIGHT: u16 = 1000;
const CONNECT_TIMEOUT_SECS: u64 = 10;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub enum NetEvent {
    Connected,
    /// The connection failed or broke; the task retries after `retry_in` by itself.
    Down {
        reason: String,
        retry_in: Duration,
    },
    /// A PUBLISH went out on the socket (packet id 0 for QoS 0).
    Written(u16),
    /// The broker acknowledged a QoS 1 (PUBACK) or QoS 2 (PUBCOMP) publish.
    Acked(u16),
    /// DISCONNECT went out: the task has ended.
    DisconnectSent,
    /// A SUBSCRIBE went out with this packet id.
    SubscribeSent(u16),
    /// The broker's answer to a SUBSCRIBE: false when it refused the filter.
    SubAck {
        pkid: u16,
        granted: bool,
    },
    Message(Incoming),
}

pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

fn qos4(q: Qos) -> rumqttc::QoS {
    match q {
        Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
        Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: Qos) -> v5::mqttbytes::QoS {
    match q {
        Qos::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
        Qos::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
        Qos::ExactlyOnce => v5::mqttbytes::QoS::ExactlyOnce,
    }
}

impl Client {
    /// Hands a publish to rumqttc without waiting; false when its request buffer is full.
    pub fn try_publish(&self, m: &Message) -> bool {
        match self {
            Client::V4(c) => c
                .try_publish(m.topic.as_str(), qos4(m.qos), m.retain, m.payload.clone())
                .is_ok(),
            Client::V5(c) => c
                .try_publish(m.topic.as_str(), qos5(m.qos), m.retain, m.payload.clone())
                .is_ok(),
        }
    }

    pub fn try_subscribe(&self, filter: &str, qos: Qos) -> bool {
        match self {
            Client::V4(c) => c.try_subscribe(filter, qos4(qos)).is_ok(),
            Client::V5(c) => c.try_subscribe(filter, qos5(qos)).is_ok(),
        }
    }

    pub fn try_unsubscribe(&self, filter: &str) -> bool {
        match self {
            Client::V4(c) => c.try_unsubscribe(filter).is_ok(),
            Client::V5(c) => c.try_unsubscribe(filter).is_ok(),
        }
    }

    pub fn try_disconnect(&self) -> bool {
        match self {
            Client::V4(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        }
    }
}

pub struct Session {
    pub client: Client,
    pub events: mpsc::Receiver<NetEvent>,
    task: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts connecting in the background. Fails only for settings that can never work (TLS
/// files), which the caller reports instead of retrying.
pub fn start(cfg: &ConnectionConfig) -> Result<Session> {
    let (tx, events) = mpsc::channel(1024);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true); // see spec/measured.md: Nagle adds ~20 ms at p99
    net.set_connection_timeout(CONNECT_TIMEOUT_SECS);
    let transport = match &cfg.tls {
        Some(t) => rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
            tls::client_config(t)?,
        )),
        None => rumqttc::Transport::tcp(),
    };
    let keepalive = Duration::from_secs(cfg.keepalive.max(5).into());
    let address = cfg.address();

    let (client, task) = match cfg.protocol {
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
            o.set_keep_alive(keepalive)
                .set_clean_session(cfg.clean_session)
                .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
                .set_inflight(MAX_INFLIGHT)
                .set_transport(transport);
            if let Some(user) = &cfg.username {
                o.set_credentials(user, cfg.password.clone().unwrap_or_default());
            }
            if let Some(st) = &cfg.status {
                o.set_last_will(rumqttc::LastWill::new(
                    &st.topic,
                    "disconnected",
                    rumqttc::QoS::AtLeastOnce,
                    st.retain,
                ));
            }
            let (client, mut el) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
            el.set_network_options(net);
            (Client::V4(client), tokio::spawn(run_v4(el, tx, address)))
        }
        Protocol::V5 => {
            let mut o = v5::MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
            o.set_keep_alive(keepalive)
                .set_clean_start(cfg.clean_session)
                .set_max_packet_size(Some(MAX_PACKET_SIZE as u32))
                .set_outgoing_inflight_upper_limit(MAX_INFLIGHT)
                .set_transport(transport)
                .set_network_options(net);
            if !cfg.clean_session {
                // MQTT 5 ends a session at disconnect unless asked to keep it.
                o.set_session_expiry_interval(Some(u32::MAX));
            }
            if let Some(user) = &cfg.username {
                o.set_credentials(user, cfg.password.clone().unwrap_or_default());
            }
            if let Some(st) = &cfg.status {
                o.set_last_will(v5::mqttbytes::v5::LastWill::new(
                    &st.topic,
                    "disconnected",
                    v5::mqttbytes::QoS::AtLeastOnce,
                    st.retain,
                    None,
                ));
            }
            let (client, el) = v5::AsyncClient::new(o, REQUEST_CAPACITY);
            (Client::V5(client), tokio::spawn(run_v5(el, tx, address)))
        }
    };
    Ok(Session {
        client,
        events,
        task,
    })
}

struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(BACKOFF_FIRST)
    }
    fn reset(&mut self) {
        self.0 = BACKOFF_FIRST;
    }
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }
}

async fn run_v4(mut el: rumqttc::EventLoop, tx: mpsc::Sender<NetEvent>, address: String) {
    use rumqttc::{Event, Outgoing, Packet};
    let mut backoff = Backoff::new();
    loop {
        let ev = match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                NetEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => NetEvent::Message(Incoming {
                topic: p.topic,
                payload: p.payload.to_vec(),
                qos: p.qos as u8,
                retain: p.retain,
            }),
            Ok(Event::Incoming(Packet::PubAck(a))) => NetEvent::Acked(a.pkid),
            Ok(Event::Incoming(Packet::PubComp(a))) => NetEvent::Acked(a.pkid),
            Ok(Event::Incoming(Packet::SubAck(a))) => NetEvent::SubAck {
                pkid: a.pkid,
                granted: a
                    .return_codes
                    .iter()
                    .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure)),
            },
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => NetEvent::Written(pkid),
            Ok(Event::Outgoing(Outgoing::Subscribe(pkid))) => NetEvent::SubscribeSent(pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = tx.send(NetEvent::DisconnectSent).await;
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let retry_in = backoff.next();
                let down = NetEvent::Down {
                    reason: describe_v4(&e, &address),
                    retry_in,
                };
                if tx.send(down).await.is_err() {
                    return;
                }
                tokio::time::sleep(retry_in).await;
                // The core re-sends what was unacknowledged itself; rumqttc must not replay it
                // too (it would, with a persistent session).
                el.clean();
                el.pending.clear();
                continue;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

async fn run_v5(mut el: v5::EventLoop, tx: mpsc::Sender<NetEvent>, address: String) {
    use v5::mqttbytes::v5::Packet;
    use v5::Event;
    let mut backoff = Backoff::new();
    loop {
        let ev = match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                NetEvent::Connected
            }
            Ok(Event::Incoming(Packet::Publish(p))) => NetEvent::Message(Incoming {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
                qos: p.qos as u8,
                retain: p.retain,
            }),
            Ok(Event::Incoming(Packet::PubAck(a))) => NetEvent::Acked(a.pkid),
            Ok(Event::Incoming(Packet::PubComp(a))) => NetEvent::Acked(a.pkid),
            Ok(Event::Incoming(Packet::SubAck(a))) => NetEvent::SubAck {
                pkid: a.pkid,
                granted: a
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, v5::mqttbytes::v5::SubscribeReasonCode::Success(_))),
            },
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => NetEvent::Written(pkid),
            Ok(Event::Outgoing(rumqttc::Outgoing::Subscribe(pkid))) => {
                NetEvent::SubscribeSent(pkid)
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                let _ = tx.send(NetEvent::DisconnectSent).await;
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let retry_in = backoff.next();
                let down = NetEvent::Down {
                    reason: describe_v5(&e, &address),
                    retry_in,
                };
                if tx.send(down).await.is_err() {
                    return;
                }
                tokio::time::sleep(retry_in).await;
                el.clean();
                el.pending.clear();
                continue;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

fn describe_io(e: &io::Error, address: &str) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => format!(
            "connection refused by {address}: is the broker running and listening on that port?"
        ),
        TimedOut => format!("timed out talking to {address}"),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
            "the broker closed the connection".into()
        }
        _ if e.to_string().contains("lookup address")
            || e.to_string().contains("Name or service") =>
        {
            format!("cannot resolve the broker's host name ({address}): check broker.url")
        }
        _ => format!("network error talking to {address}: {e}"),
    }
}

fn describe_v4(e: &rumqttc::ConnectionError, address: &str) -> String {
    use rumqttc::{ConnectReturnCode as C, ConnectionError as E, StateError as S};
    match e {
        E::ConnectionRefused(code) => match code {
            C::BadUserNamePassword => {
                "the broker refused the connection: bad user name or password".into()
            }
            C::NotAuthorized => "the broker refused the connection: not authorised".into(),
            C::BadClientId => "the broker refused the connection: client id rejected".into(),
            C::RefusedProtocolVersion => {
                "the broker refused the connection: it does not speak MQTT 3.1.1".into()
            }
            C::ServiceUnavailable => {
                "the broker refused the connection: service unavailable".into()
            }
            C::Success => "the broker answered CONNACK success but the connection failed".into(),
        },
        E::Io(io) => describe_io(io, address),
        E::MqttState(S::Io(io)) => describe_io(io, address),
        E::MqttState(S::AwaitPingResp) => {
            "the broker stopped answering (no reply to the keepalive ping)".into()
        }
        E::MqttState(S::ConnectionAborted) => "the broker closed the connection".into(),
        E::MqttState(other) => format!("MQTT protocol error: {other}"),
        E::NetworkTimeout => {
            format!("timed out connecting to {address} (no answer within {CONNECT_TIMEOUT_SECS} s)")
        }
        E::FlushTimeout => format!("timed out sending to {address}"),
        E::Tls(t) => format!("TLS: {t}"),
        E::NotConnAck(_) => format!("{address} did not answer like an MQTT broker"),
        E::RequestsDone => "the MQTT client stopped".into(),
    }
}

fn describe_v5(e: &v5::ConnectionError, address: &str) -> String {
    use v5::mqttbytes::v5::ConnectReturnCode as C;
    use v5::{ConnectionError as E, StateError as S};
    match e {
        E::ConnectionRefused(code) => {
            let why = match code {
                C::BadUserNamePassword => "bad user name or password",
                C::NotAuthorized => "not authorised",
                C::ClientIdentifierNotValid | C::BadClientId => "client id rejected",
                C::UnsupportedProtocolVersion | C::RefusedProtocolVersion => {
                    "it does not speak MQTT 5"
                }
                C::ServerUnavailable | C::ServiceUnavailable => "server unavailable",
                C::ServerBusy => "server busy",
                C::Banned => "this client is banned",
                C::BadAuthenticationMethod => "bad authentication method",
                C::QuotaExceeded => "quota exceeded",
                C::ConnectionRateExceeded => "connection rate exceeded",
                C::UseAnotherServer | C::ServerMoved => "use another server",
                C::PacketTooLarge => "packet too large",
                other => return format!("the broker refused the connection: {other:?}"),
            };
            format!("the broker refused the connection: {why}")
        }
        E::Io(io) => describe_io(io, address),
        E::MqttState(S::Io(io)) => describe_io(io, address),
        E::MqttState(S::AwaitPingResp) => {
            "the broker stopped answering (no reply to the keepalive ping)".into()
        }
        E::MqttState(S::ConnectionAborted) => "the broker closed the connection".into(),
        E::MqttState(other) => format!("MQTT protocol error: {other}"),
        E::Timeout(_) => {
            format!("timed out connecting to {address} (no answer within {CONNECT_TIMEOUT_SECS} s)")
        }
        E::Tls(t) => format!("TLS: {t}"),
        E::NotConnAck(_) => format!("{address} did not answer like an MQTT broker"),
        E::RequestsDone => "the MQTT client stopped".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_two_minutes_and_resets() {
        let mut b = Backoff::new();
        let secs: Vec<u64> = (0..10).map(|_| b.next().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 120, 120, 120]);
        b.reset();
        assert_eq!(b.next().as_secs(), 1);
    }

    #[test]
    fn refusal_reasons_are_readable() {
        let e = rumqttc::ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::BadUserNamePassword,
        );
        assert!(describe_v4(&e, "h:1").contains("bad user name or password"));
        let e = rumqttc::ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(describe_v4(&e, "h:1").contains("h:1"));
    }
}
