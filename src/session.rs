//! One connection attempt loop to one broker: builds rumqttc options (MQTT 3.1.1 or 5) from a
//! [`ConnectionConfig`], runs rumqttc's event loop in a task that reconnects with backoff, and
//! reports what happens as [`NetEvent`]s. The connection state machine lives in
//! `connection.rs`; this module only translates between it and rumqttc.

use std::io;
use std::time::Duration;

use rumqttc::v5;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{ConnectionConfig, Protocol};
use crate::error::Result;
use crate::message::{Incoming, Message, Qos, PACKET_MAX};
use crate::tls;

/// Requests rumqttc buffers between us and the socket; the core keeps the rest itself.
const REQUEST_CAPACITY: usize = 1024;
/// QoS 1/2 messages in flight at once (packet ids are finite; the rest wait in our queue).
const MAX_INFLIGHT: u16 = 1000;
const CONNECT_TIMEOUT_SECS: u64 = 10;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub enum NetEvent {
    /// CONNACK; MQTT 5 brokers may announce the largest packet they take.
    Connected {
        max_packet: Option<u32>,
    },
    /// The connection failed or broke; the task retries after `retry_in` by itself.
    Down {
        reason: String,
        retry_in: Duration,
        /// A connection that was up for less than [`STABLE_CONNECTION`] ended.
        quick: bool,
        loss: Loss,
    },
    /// MQTT 5: the broker answered a QoS 1/2 publish with a failure reason. Sending it again
    /// would get the same answer.
    Rejected {
        pkid: u16,
        reason: &'static str,
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

/// What a lost connection says about the messages sent on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// The broker closed or reset the connection without a word (all a 3.1.1 broker can do
    /// with a packet it refuses: Mosquitto's "disconnected due to oversize packet").
    Closed,
    /// The broker's DISCONNECT (MQTT 5), or the client itself, refused a message it sent.
    MessageRefused(&'static str),
    /// MQTT 5: the broker answered the oldest unacknowledged publish with a reason code
    /// rumqttc cannot read (Mosquitto's "packet too large" in a PUBACK), which ends the
    /// connection.
    AckRefused(&'static str),
    /// MQTT 5: another client connected with the same client id.
    TakenOver,
    /// The silence watchdog gave up: this many QoS 0 messages were written after the broker
    /// last answered, and are probably lost (QoS 0 is never sent again).
    Silent { unconfirmed: u64 },
    /// Anything else (a connect that failed, a protocol error).
    Other,
}

/// A failed step: the reason in words, and what it means for the messages.
struct Failure {
    reason: String,
    loss: Loss,
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
    net.set_tcp_nodelay(true); // docs/behaviour.md §7.1: Nagle adds ~20 ms at p99
    net.set_connection_timeout(CONNECT_TIMEOUT_SECS);
    let tls_config = match &cfg.tls {
        Some(t) => Some(rumqttc::TlsConfiguration::Rustls(tls::client_config(t)?)),
        None => None,
    };
    // Over WebSockets rumqttc takes the broker as a URL in place of the host name.
    let (host, transport) = match (&cfg.websocket_path, tls_config) {
        (None, None) => (cfg.host.clone(), rumqttc::Transport::tcp()),
        (None, Some(t)) => (cfg.host.clone(), rumqttc::Transport::tls_with_config(t)),
        (Some(path), None) => (ws_url("ws", cfg, path), rumqttc::Transport::Ws),
        (Some(path), Some(t)) => (
            ws_url("wss", cfg, path),
            rumqttc::Transport::wss_with_config(t),
        ),
    };
    // 0 turns keepalive off (MQTT's rule), and with it the silence watchdog.
    let keepalive = Duration::from_secs(cfg.keepalive.into());
    let address = cfg.address();
    let ctx = Ctx {
        client_cert: cfg.tls.as_ref().is_some_and(|t| t.files.certfile.is_some()),
        ciphers: cfg.tls.as_ref().is_some_and(|t| {
            t.files
                .ciphers
                .as_deref()
                .is_some_and(|c| !c.trim().is_empty())
        }),
    };

    let (client, task) = match cfg.protocol {
        Protocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(&cfg.client_id, &host, cfg.port);
            o.set_keep_alive(keepalive)
                .set_clean_session(cfg.clean_session)
                .set_max_packet_size(PACKET_MAX, PACKET_MAX)
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
            let link = V4(el, address, ctx);
            (Client::V4(client), tokio::spawn(drive(link, tx, keepalive)))
        }
        Protocol::V5 => {
            let mut o = v5::MqttOptions::new(&cfg.client_id, &host, cfg.port);
            o.set_keep_alive(keepalive)
                .set_clean_start(cfg.clean_session)
                .set_max_packet_size(Some(PACKET_MAX as u32))
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
            let link = V5(el, address, ctx);
            (Client::V5(client), tokio::spawn(drive(link, tx, keepalive)))
        }
    };
    Ok(Session {
        client,
        events,
        task,
    })
}

fn ws_url(scheme: &str, cfg: &ConnectionConfig, path: &str) -> String {
    let host = if cfg.host.contains(':') {
        format!("[{}]", cfg.host)
    } else {
        cfg.host.clone()
    };
    format!("{scheme}://{host}:{}{path}", cfg.port)
}

struct Backoff(Duration);

/// A connection lost sooner than this after it came up does not reset the backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

impl Backoff {
    fn new() -> Self {
        Backoff(BACKOFF_FIRST)
    }
    /// Back to the first delay; returns the delay it replaced, for [`Backoff::restore`].
    fn reset(&mut self) -> Duration {
        std::mem::replace(&mut self.0, BACKOFF_FIRST)
    }
    fn restore(&mut self, d: Duration) {
        self.0 = d;
    }
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }
}

/// One step of a rumqttc event loop, translated.
struct Step {
    /// What the core needs to know, if anything.
    event: Option<NetEvent>,
    /// Whether a packet came in from the broker (it is alive).
    heard: bool,
}

/// rumqttc's two event loops (MQTT 3.1.1 and 5) behind one face, so one driver runs both.
trait Link {
    /// Polls once; the error is the failure, already in words.
    async fn step(&mut self) -> Result<Step, Failure>;
    /// Forgets the connection and everything rumqttc would replay on its own: the core
    /// re-sends what was not acknowledged itself. rumqttc's buffered events go too: after the
    /// next CONNACK, a stale "written" from the old connection would be taken for a new one.
    fn reset(&mut self);
}

struct V4(rumqttc::EventLoop, String, Ctx);
struct V5(v5::EventLoop, String, Ctx);

impl Link for V4 {
    async fn step(&mut self) -> Result<Step, Failure> {
        use rumqttc::{Event, Outgoing, Packet};
        let ev = self.0.poll().await.map_err(|e| Failure {
            reason: describe_v4(&e, &self.1, self.2),
            loss: loss_v4(&e),
        })?;
        let heard = matches!(ev, Event::Incoming(_));
        let event = match ev {
            Event::Incoming(Packet::ConnAck(_)) => Some(NetEvent::Connected { max_packet: None }),
            Event::Incoming(Packet::Publish(p)) => Some(NetEvent::Message(Incoming {
                topic: p.topic,
                payload: p.payload.to_vec(),
                qos: p.qos as u8,
                retain: p.retain,
            })),
            Event::Incoming(Packet::PubAck(a)) => Some(NetEvent::Acked(a.pkid)),
            Event::Incoming(Packet::PubComp(a)) => Some(NetEvent::Acked(a.pkid)),
            Event::Incoming(Packet::SubAck(a)) => Some(NetEvent::SubAck {
                pkid: a.pkid,
                granted: a
                    .return_codes
                    .iter()
                    .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure)),
            }),
            Event::Outgoing(Outgoing::Publish(pkid)) => Some(NetEvent::Written(pkid)),
            Event::Outgoing(Outgoing::Subscribe(pkid)) => Some(NetEvent::SubscribeSent(pkid)),
            Event::Outgoing(Outgoing::Disconnect) => Some(NetEvent::DisconnectSent),
            _ => None,
        };
        Ok(Step { event, heard })
    }

    fn reset(&mut self) {
        self.0.clean();
        self.0.pending.clear();
        self.0.state.events.clear();
    }
}

impl Link for V5 {
    async fn step(&mut self) -> Result<Step, Failure> {
        use rumqttc::Outgoing;
        use v5::mqttbytes::v5::{Packet, PubAckReason, PubRecReason, SubscribeReasonCode};
        use v5::Event;
        let ev = self.0.poll().await.map_err(|e| Failure {
            reason: describe_v5(&e, &self.1, self.2),
            loss: loss_v5(&e),
        })?;
        let heard = matches!(ev, Event::Incoming(_));
        let event = match ev {
            Event::Incoming(Packet::ConnAck(c)) => Some(NetEvent::Connected {
                max_packet: c.properties.and_then(|p| p.max_packet_size),
            }),
            Event::Incoming(Packet::PubAck(a))
                if !matches!(
                    a.reason,
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                ) =>
            {
                Some(NetEvent::Rejected {
                    pkid: a.pkid,
                    reason: puback_reason(&a.reason),
                })
            }
            Event::Incoming(Packet::PubRec(a))
                if !matches!(
                    a.reason,
                    PubRecReason::Success | PubRecReason::NoMatchingSubscribers
                ) =>
            {
                Some(NetEvent::Rejected {
                    pkid: a.pkid,
                    reason: pubrec_reason(&a.reason),
                })
            }
            Event::Incoming(Packet::Publish(p)) => Some(NetEvent::Message(Incoming {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload.to_vec(),
                qos: p.qos as u8,
                retain: p.retain,
            })),
            Event::Incoming(Packet::PubAck(a)) => Some(NetEvent::Acked(a.pkid)),
            Event::Incoming(Packet::PubComp(a)) => Some(NetEvent::Acked(a.pkid)),
            Event::Incoming(Packet::SubAck(a)) => Some(NetEvent::SubAck {
                pkid: a.pkid,
                granted: a
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
            }),
            Event::Outgoing(Outgoing::Publish(pkid)) => Some(NetEvent::Written(pkid)),
            Event::Outgoing(Outgoing::Subscribe(pkid)) => Some(NetEvent::SubscribeSent(pkid)),
            Event::Outgoing(Outgoing::Disconnect) => Some(NetEvent::DisconnectSent),
            _ => None,
        };
        Ok(Step { event, heard })
    }

    fn reset(&mut self) {
        self.0.clean();
        self.0.pending.clear();
        self.0.state.events.clear();
    }
}

/// Runs a link until DISCONNECT went out or the core stops listening: reconnects with
/// backoff, and gives up on a connection that stayed silent for 1.5 keepalive periods (a
/// frozen broker or a dead network path keeps TCP open; rumqttc alone would notice only at
/// the second unanswered ping).
async fn drive(mut link: impl Link, tx: mpsc::Sender<NetEvent>, keepalive: Duration) {
    let mut backoff = Backoff::new();
    let silence_limit = keepalive * 3 / 2;
    let mut connected = false;
    // The last connection ended right after it came up: a second one in a row is a pattern
    // (a broker dropping this client at once), a first one may be a broker restarting.
    let mut last_was_quick = false;
    // QoS 0 messages written since the broker last sent anything.
    let mut unconfirmed: u64 = 0;
    let mut last_heard = Instant::now();
    // When the current connection came up, and the backoff it reset.
    let mut connected_at = Instant::now();
    let mut backoff_before = BACKOFF_FIRST;
    // One timer for the whole connection, moved only when it fires before the real deadline:
    // arming a new one for every step cost a timer-wheel insert and removal per message.
    let watchdog = tokio::time::sleep(silence_limit);
    tokio::pin!(watchdog);
    loop {
        let step = {
            let step = link.step();
            tokio::pin!(step);
            loop {
                tokio::select! {
                    s = &mut step => break s,
                    _ = &mut watchdog, if connected && !silence_limit.is_zero() => {
                        let deadline = last_heard + silence_limit;
                        if Instant::now() < deadline {
                            // Heard from the broker since: keep polling the same step.
                            watchdog.as_mut().reset(deadline);
                            continue;
                        }
                        break Err(Failure {
                            reason: format!(
                                "the broker stopped answering (nothing received for {} s, 1.5 times the keepalive)",
                                silence_limit.as_secs()
                            ),
                            loss: Loss::Silent { unconfirmed },
                        });
                    }
                }
            }
        };
        match step {
            Ok(Step { event, heard }) => {
                if heard {
                    last_heard = Instant::now();
                    unconfirmed = 0;
                }
                let Some(event) = event else { continue };
                let last = matches!(event, NetEvent::DisconnectSent);
                if matches!(event, NetEvent::Written(0)) {
                    unconfirmed += 1;
                }
                if matches!(event, NetEvent::Connected { .. }) {
                    connected = true;
                    connected_at = Instant::now();
                    backoff_before = backoff.reset();
                    watchdog.as_mut().reset(last_heard + silence_limit);
                }
                if tx.send(event).await.is_err() || last {
                    return;
                }
            }
            Err(Failure { reason, loss }) => {
                // A broker that drops us right after accepting (another client with the same
                // id, an ACL) would otherwise be reconnected to every second, forever.
                let quick = connected && connected_at.elapsed() < STABLE_CONNECTION;
                if quick && last_was_quick {
                    backoff.restore(backoff_before);
                }
                if connected {
                    last_was_quick = quick;
                }
                connected = false;
                unconfirmed = 0;
                // The next attempt starts from scratch (also after the silence watchdog
                // abandoned a connection mid-packet).
                link.reset();
                let retry_in = backoff.next();
                let down = NetEvent::Down {
                    reason,
                    retry_in,
                    quick,
                    loss,
                };
                if tx.send(down).await.is_err() {
                    return;
                }
                tokio::time::sleep(retry_in).await;
                link.reset();
            }
        }
    }
}

fn is_closed(io: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        io.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    ) && rustls_cause(io).is_none()
}

fn loss_v4(e: &rumqttc::ConnectionError) -> Loss {
    use rumqttc::{ConnectionError as E, StateError as S};
    match e {
        E::Io(io)
        | E::MqttState(S::Io(io))
        | E::MqttState(S::Deserialization(rumqttc::mqttbytes::Error::Io(io)))
            if is_closed(io) =>
        {
            Loss::Closed
        }
        E::MqttState(S::ConnectionAborted) => Loss::Closed,
        E::MqttState(S::Deserialization(rumqttc::mqttbytes::Error::OutgoingPacketTooLarge {
            ..
        })) => Loss::MessageRefused("larger than this client's 64 MiB packet limit"),
        _ => Loss::Other,
    }
}

fn loss_v5(e: &v5::ConnectionError) -> Loss {
    use v5::mqttbytes::v5::DisconnectReasonCode as D;
    use v5::{ConnectionError as E, StateError as S};
    match e {
        E::Io(io)
        | E::MqttState(S::Io(io))
        | E::MqttState(S::Deserialization(v5::mqttbytes::Error::Io(io)))
            if is_closed(io) =>
        {
            Loss::Closed
        }
        E::MqttState(S::ConnectionAborted) => Loss::Closed,
        E::MqttState(
            S::OutgoingPacketTooLarge { .. }
            | S::Deserialization(v5::mqttbytes::Error::OutgoingPacketTooLarge { .. }),
        ) => Loss::MessageRefused("larger than the broker's maximum packet size"),
        // Acks come in order: the one rumqttc could not read answers the oldest publish.
        E::MqttState(S::Deserialization(v5::mqttbytes::Error::InvalidConnectReturnCode(code))) => {
            Loss::AckRefused(
                match v5::mqttbytes::v5::DisconnectReasonCode::try_from(*code) {
                    Ok(c) => disconnect_reason(&c).unwrap_or("refused"),
                    Err(_) => "refused with an unknown reason code",
                },
            )
        }
        E::MqttState(S::ServerDisconnect { reason_code, .. }) => match reason_code {
            D::SessionTakenOver => Loss::TakenOver,
            D::PacketTooLarge
            | D::PayloadFormatInvalid
            | D::TopicNameInvalid
            | D::NotAuthorized
            | D::RetainNotSupported
            | D::QoSNotSupported => {
                Loss::MessageRefused(disconnect_reason(reason_code).unwrap_or("refused"))
            }
            _ => Loss::Other,
        },
        _ => Loss::Other,
    }
}

/// MQTT 5 reason codes in words (None: a normal disconnect).
fn disconnect_reason(code: &v5::mqttbytes::v5::DisconnectReasonCode) -> Option<&'static str> {
    use v5::mqttbytes::v5::DisconnectReasonCode as D;
    Some(match code {
        D::NormalDisconnection | D::DisconnectWithWillMessage => return None,
        D::PacketTooLarge => "packet too large",
        D::PayloadFormatInvalid => "payload format invalid",
        D::TopicNameInvalid => "topic name invalid",
        D::NotAuthorized => "not authorised",
        D::RetainNotSupported => "retained messages not supported",
        D::QoSNotSupported => "QoS not supported",
        D::SessionTakenOver => {
            "session taken over: another client connected with the same client id"
        }
        D::ServerShuttingDown => "the broker is shutting down",
        D::ServerBusy => "server busy",
        D::KeepAliveTimeout => "keepalive timeout",
        D::QuotaExceeded => "quota exceeded",
        D::MessageRateTooHigh => "message rate too high",
        D::AdministrativeAction => "administrative action",
        D::MalformedPacket => "malformed packet",
        D::ProtocolError => "protocol error",
        D::ReceiveMaximumExceeded => "receive maximum exceeded",
        D::TopicAliasInvalid => "topic alias invalid",
        D::UseAnotherServer | D::ServerMoved => "use another server",
        D::MaximumConnectTime => "maximum connect time reached",
        D::ImplementationSpecificError => "implementation-specific error",
        _ => "unspecified error",
    })
}

fn puback_reason(r: &v5::mqttbytes::v5::PubAckReason) -> &'static str {
    use v5::mqttbytes::v5::PubAckReason as R;
    match r {
        R::NotAuthorized => "not authorised",
        R::TopicNameInvalid => "topic name invalid",
        R::PacketIdentifierInUse => "packet identifier in use",
        R::QuotaExceeded => "quota exceeded",
        R::PayloadFormatInvalid => "payload format invalid",
        // Mosquitto's answer to a message over its message_size_limit.
        R::ImplementationSpecificError => {
            "implementation-specific error (for Mosquitto: over its message_size_limit?)"
        }
        _ => "unspecified error",
    }
}

fn pubrec_reason(r: &v5::mqttbytes::v5::PubRecReason) -> &'static str {
    use v5::mqttbytes::v5::PubRecReason as R;
    match r {
        R::NotAuthorized => "not authorised",
        R::TopicNameInvalid => "topic name invalid",
        R::PacketIdentifierInUse => "packet identifier in use",
        R::QuotaExceeded => "quota exceeded",
        R::PayloadFormatInvalid => "payload format invalid",
        R::ImplementationSpecificError => {
            "implementation-specific error (for Mosquitto: over its message_size_limit?)"
        }
        _ => "unspecified error",
    }
}

/// What the failure descriptions need to know about the settings.
#[derive(Debug, Clone, Copy, Default)]
struct Ctx {
    client_cert: bool,
    /// `broker.tls.ciphers` limits the suites offered.
    ciphers: bool,
}

/// What went wrong in a TLS handshake, in terms of what the user can fix.
fn describe_rustls(e: &rustls::Error, ctx: Ctx) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => {
            "TLS: the broker's certificate is not signed by a trusted CA (check broker.tls.ca_certs)".into()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "TLS: the broker's certificate is not valid for this host name (connect with a name the certificate lists, or turn on tls_insecure to skip the host-name check)".into()
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "TLS: the broker's certificate has expired".into()
        }
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "TLS: the broker's certificate is not valid yet (check this machine's clock)".into()
        }
        E::InvalidCertificate(C::Revoked) => "TLS: the broker's certificate was revoked".into(),
        E::InvalidCertificate(other) => format!("TLS: the broker's certificate is invalid ({other:?})"),
        E::AlertReceived(A::CertificateRequired) => {
            "TLS: the broker requires a client certificate (set broker.tls.certfile and keyfile)".into()
        }
        E::AlertReceived(
            A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::DecryptError | A::AccessDenied,
        ) => "TLS: the broker rejected the client certificate".into(),
        // TLS 1.2 brokers answer a missing client certificate, and a cipher list they share
        // nothing with, with the same plain handshake failure.
        E::AlertReceived(A::HandshakeFailure) if !ctx.client_cert && ctx.ciphers => {
            "TLS: the broker refused the handshake; it shares none of the cipher suites in broker.tls.ciphers, or it requires a client certificate (broker.tls.certfile and keyfile)".into()
        }
        E::AlertReceived(A::HandshakeFailure) if !ctx.client_cert => {
            "TLS: the broker refused the handshake; it probably requires a client certificate (set broker.tls.certfile and keyfile)".into()
        }
        E::AlertReceived(A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity)
            if ctx.ciphers =>
        {
            "TLS: the broker and this plugin share no TLS version or cipher suite (check broker.tls.ciphers)".into()
        }
        E::AlertReceived(A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity) => {
            "TLS: the broker and this plugin share no TLS version or cipher suite".into()
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
            "TLS: the broker did not answer with TLS (is this port a TLS listener?)".into()
        }
        other => format!("TLS: {other}"),
    }
}

/// The rustls error inside an I/O error, where tokio-rustls put one.
fn rustls_cause(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn describe_tls(e: &rumqttc::TlsError, ctx: Ctx) -> String {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    match e {
        rumqttc::TlsError::TLS(t) => describe_rustls(t, ctx),
        rumqttc::TlsError::Io(io) => match rustls_cause(io) {
            Some(t) => describe_rustls(t, ctx),
            None if matches!(io.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted) => {
                "TLS: the broker closed the connection during the handshake (is this port a TLS listener?)".into()
            }
            None => format!("TLS: {io}"),
        },
        other => format!("TLS: {other}"),
    }
}

fn describe_io(e: &io::Error, address: &str, ctx: Ctx) -> String {
    use io::ErrorKind::*;
    if let Some(t) = rustls_cause(e) {
        return describe_rustls(t, ctx);
    }
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

fn describe_v4(e: &rumqttc::ConnectionError, address: &str, ctx: Ctx) -> String {
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
        E::Io(io) => describe_io(io, address, ctx),
        E::MqttState(S::Io(io)) => describe_io(io, address, ctx),
        E::MqttState(S::AwaitPingResp) => {
            "the broker stopped answering (no reply to the keepalive ping)".into()
        }
        E::MqttState(S::ConnectionAborted) => "the broker closed the connection".into(),
        // Reads fail inside the packet decoder (a TLS 1.3 alert, a reset): say what the I/O
        // error was, not that the packet was malformed.
        E::MqttState(S::Deserialization(rumqttc::mqttbytes::Error::Io(io))) => {
            describe_io(io, address, ctx)
        }
        E::MqttState(other) => format!("MQTT protocol error: {other}"),
        E::NetworkTimeout => {
            format!("timed out connecting to {address} (no answer within {CONNECT_TIMEOUT_SECS} s)")
        }
        E::FlushTimeout => format!("timed out sending to {address}"),
        E::Tls(t) => describe_tls(t, ctx),
        E::NotConnAck(_) => format!("{address} did not answer like an MQTT broker"),
        E::RequestsDone => "the MQTT client stopped".into(),
        E::Websocket(w) => format!("WebSocket: {w}"),
        E::WsConnect(w) => format!("WebSocket: {w}"),
        E::InvalidUrl(_) => format!("WebSocket: {address} does not make a valid URL (check broker.url and broker.ws_path)"),
        E::ResponseValidation(_) => "WebSocket: the server did not accept an MQTT WebSocket connection (check broker.ws_path)".into(),
    }
}

fn describe_v5(e: &v5::ConnectionError, address: &str, ctx: Ctx) -> String {
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
        E::Io(io) => describe_io(io, address, ctx),
        E::MqttState(S::Io(io)) => describe_io(io, address, ctx),
        E::MqttState(S::AwaitPingResp) => {
            "the broker stopped answering (no reply to the keepalive ping)".into()
        }
        E::MqttState(S::ConnectionAborted) => "the broker closed the connection".into(),
        E::MqttState(S::Deserialization(v5::mqttbytes::Error::Io(io))) => {
            describe_io(io, address, ctx)
        }
        E::MqttState(S::Deserialization(v5::mqttbytes::Error::InvalidConnectReturnCode(code))) => {
            let why = v5::mqttbytes::v5::DisconnectReasonCode::try_from(*code)
                .ok()
                .and_then(|c| disconnect_reason(&c))
                .unwrap_or("an unknown reason code");
            format!("the broker refused a message ({why}, reason code {code:#04x} in its acknowledgement)")
        }
        E::MqttState(S::ServerDisconnect {
            reason_code,
            reason_string,
        }) => {
            let why = disconnect_reason(reason_code).unwrap_or("no reason given");
            match reason_string {
                Some(s) => format!("the broker disconnected this client: {why} ({s})"),
                None => format!("the broker disconnected this client: {why}"),
            }
        }
        E::MqttState(
            S::OutgoingPacketTooLarge { pkt_size, max }
            | S::Deserialization(v5::mqttbytes::Error::OutgoingPacketTooLarge { pkt_size, max }),
        ) => format!(
            "a {pkt_size}-byte packet is larger than the broker's maximum packet size ({max} bytes)"
        ),
        E::MqttState(other) => format!("MQTT protocol error: {other}"),
        E::Timeout(_) => {
            format!("timed out connecting to {address} (no answer within {CONNECT_TIMEOUT_SECS} s)")
        }
        E::Tls(t) => describe_tls(t, ctx),
        E::NotConnAck(_) => format!("{address} did not answer like an MQTT broker"),
        E::RequestsDone => "the MQTT client stopped".into(),
        E::Websocket(w) => format!("WebSocket: {w}"),
        E::WsConnect(w) => format!("WebSocket: {w}"),
        E::InvalidUrl(_) => format!("WebSocket: {address} does not make a valid URL (check broker.url and broker.ws_path)"),
        E::ResponseValidation(_) => "WebSocket: the server did not accept an MQTT WebSocket connection (check broker.ws_path)".into(),
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
        assert!(describe_v4(&e, "h:1", Ctx::default()).contains("bad user name or password"));
        let e = rumqttc::ConnectionError::Io(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(describe_v4(&e, "h:1", Ctx::default()).contains("h:1"));
    }

    #[test]
    fn tls_reasons_are_found_inside_io_errors() {
        let inner = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = rumqttc::ConnectionError::Tls(rumqttc::TlsError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            inner,
        )));
        assert!(describe_v4(&e, "h:1", Ctx::default()).contains("not signed by a trusted CA"));
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let e = rumqttc::ConnectionError::Io(io::Error::new(io::ErrorKind::InvalidData, alert));
        assert!(describe_v4(&e, "h:1", Ctx::default()).contains("requires a client certificate"));
    }

    #[test]
    fn io_errors_inside_the_packet_decoder_are_unwrapped() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let e = rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::Io(reset),
        ));
        assert_eq!(
            describe_v4(&e, "h:1", Ctx::default()),
            "the broker closed the connection"
        );
    }
}
