//! One connection attempt loop to one broker: builds rumqttc options (MQTT 3.1.1 or 5) from a
//! [`ConnectionConfig`], runs rumqttc's event loop in a task that reconnects with backoff, and
//! reports what happens as [`NetEvent`]s. The connection state machine lives in
//! `runner.rs`, the failure descriptions in `failure.rs`; this module only translates between
//! the runner and rumqttc.

use std::time::Duration;

use rumqttc::v5;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{ConnectionConfig, Protocol};
use crate::error::Result;
use crate::failure::{
    describe_v4, describe_v5, loss_v4, loss_v5, puback_reason, pubrec_reason, Ctx, Loss,
    CONNECT_TIMEOUT_SECS,
};
use crate::message::{Incoming, Message, Qos, PACKET_MAX};
use crate::tls;

/// Requests rumqttc buffers between us and the socket; the core keeps the rest itself.
const REQUEST_CAPACITY: usize = 1024;
/// QoS 1/2 messages in flight at once (packet ids are finite; the rest wait in our queue).
const MAX_INFLIGHT: u16 = 1000;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub enum NetEvent {
    /// CONNACK; MQTT 5 brokers may announce the largest packet they take.
    Connected {
        max_packet: Option<u32>,
        /// The node connected to (`host:port`).
        address: String,
    },
    /// The connection failed or broke; the task retries after `retry_in` by itself.
    Down {
        reason: String,
        retry_in: Duration,
        /// A connection that was up for less than [`STABLE_CONNECTION`] ended.
        quick: bool,
        loss: Loss,
        /// The node that failed, and the one tried next when there are several
        /// (`broker.failover`).
        address: String,
        next: Option<String>,
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
            Client::V5(c) => {
                let (topic, qos, payload) = (m.topic.as_str(), qos5(m.qos), m.payload.clone());
                if m.expiry.is_none() && m.correlation.is_none() {
                    c.try_publish(topic, qos, m.retain, payload)
                } else {
                    let properties = v5::mqttbytes::v5::PublishProperties {
                        message_expiry_interval: m.expiry,
                        correlation_data: m.correlation.clone(),
                        ..Default::default()
                    };
                    c.try_publish_with_properties(topic, qos, m.retain, payload, properties)
                }
                .is_ok()
            }
        }
    }

    /// `keep_retain`: with MQTT 5, the broker keeps the retain flag of messages published
    /// while subscribed (Retain As Published); 3.1.1 brokers always clear it on those.
    pub fn try_subscribe(&self, filter: &str, qos: Qos, keep_retain: bool) -> bool {
        match self {
            Client::V4(c) => c.try_subscribe(filter, qos4(qos)).is_ok(),
            Client::V5(c) => {
                let mut f = v5::mqttbytes::v5::Filter::new(filter, qos5(qos));
                f.preserve_retain = keep_retain;
                c.try_subscribe_many([f]).is_ok()
            }
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
    // 0 turns keepalive off (MQTT's rule), and with it the silence watchdog.
    let keepalive = Duration::from_secs(cfg.keepalive.into());
    let ctx = Ctx {
        client_cert: cfg.tls.as_ref().is_some_and(|t| t.files.certfile.is_some()),
        ciphers: cfg.tls.as_ref().is_some_and(|t| {
            t.files
                .ciphers
                .as_deref()
                .is_some_and(|c| !c.trim().is_empty())
        }),
    };
    let endpoints = cfg.endpoints();
    let addresses: Vec<String> = endpoints
        .iter()
        .map(|(h, p)| crate::config::address_text(h, *p))
        .collect();
    // Over WebSockets rumqttc takes the broker as a URL in place of the host name.
    let target = |host: &str, port: u16| match (&cfg.websocket_path, &tls_config) {
        (None, None) => (host.to_string(), rumqttc::Transport::tcp()),
        (None, Some(t)) => (
            host.to_string(),
            rumqttc::Transport::tls_with_config(t.clone()),
        ),
        (Some(path), None) => (ws_url("ws", host, port, path), rumqttc::Transport::Ws),
        (Some(path), Some(t)) => (
            ws_url("wss", host, port, path),
            rumqttc::Transport::wss_with_config(t.clone()),
        ),
    };

    let (client, task) = match cfg.protocol {
        Protocol::V311 => {
            let options: Vec<rumqttc::MqttOptions> = endpoints
                .iter()
                .map(|(host, port)| {
                    let (host, transport) = target(host, *port);
                    let mut o = rumqttc::MqttOptions::new(&cfg.client_id, host, *port);
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
                    o
                })
                .collect();
            let (client, mut el) = rumqttc::AsyncClient::new(options[0].clone(), REQUEST_CAPACITY);
            el.set_network_options(net);
            let link = V4(el, Nodes::new(addresses, options), ctx);
            (Client::V4(client), tokio::spawn(drive(link, tx, keepalive)))
        }
        Protocol::V5 => {
            let options: Vec<v5::MqttOptions> = endpoints
                .iter()
                .map(|(host, port)| {
                    let (host, transport) = target(host, *port);
                    let mut o = v5::MqttOptions::new(&cfg.client_id, host, *port);
                    o.set_keep_alive(keepalive)
                        .set_clean_start(cfg.clean_session)
                        .set_max_packet_size(Some(PACKET_MAX as u32))
                        .set_outgoing_inflight_upper_limit(MAX_INFLIGHT)
                        .set_transport(transport)
                        .set_network_options(net.clone());
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
                    o
                })
                .collect();
            let (client, el) = v5::AsyncClient::new(options[0].clone(), REQUEST_CAPACITY);
            let link = V5(el, Nodes::new(addresses, options), ctx);
            (Client::V5(client), tokio::spawn(drive(link, tx, keepalive)))
        }
    };
    Ok(Session {
        client,
        events,
        task,
    })
}

fn ws_url(scheme: &str, host: &str, port: u16, path: &str) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("{scheme}://{host}:{port}{path}")
}

/// The broker's nodes (`broker.url`, then `broker.failover`): the options to connect to each,
/// which one is in use, and where the current round of attempts began.
struct Nodes<O> {
    addresses: Vec<String>,
    options: Vec<O>,
    at: usize,
    round_start: usize,
}

impl<O: Clone> Nodes<O> {
    fn new(addresses: Vec<String>, options: Vec<O>) -> Self {
        Nodes {
            addresses,
            options,
            at: 0,
            round_start: 0,
        }
    }

    fn address(&self) -> &str {
        &self.addresses[self.at]
    }

    /// Moves to the next node; true when that ends a round in which every node failed.
    fn advance(&mut self) -> bool {
        self.at = (self.at + 1) % self.options.len();
        self.at == self.round_start
    }

    /// Connected: a failure from here starts a new round.
    fn settled(&mut self) {
        self.round_start = self.at;
    }

    fn current(&self) -> O {
        self.options[self.at].clone()
    }
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

/// One event of rumqttc's: a packet from the broker, translated, or one of ours going out.
enum Polled {
    Incoming(Option<NetEvent>),
    Outgoing(rumqttc::Outgoing),
}

/// rumqttc's two event loops (MQTT 3.1.1 and 5) behind one face, so one driver runs both.
trait Link {
    /// Polls once; the error is the failure, already in words.
    async fn poll(&mut self) -> Result<Polled, Failure>;

    async fn step(&mut self) -> Result<Step, Failure> {
        Ok(match self.poll().await? {
            Polled::Incoming(event) => Step { event, heard: true },
            Polled::Outgoing(o) => Step {
                event: outgoing(o),
                heard: false,
            },
        })
    }

    /// Forgets the connection and everything rumqttc would replay on its own: the core
    /// re-sends what was not acknowledged itself. rumqttc's buffered events go too: after the
    /// next CONNACK, a stale "written" from the old connection would be taken for a new one.
    fn reset(&mut self);

    /// Moves to the next of the broker's nodes; true when every node failed in this round
    /// (then the backoff applies), always true with one node.
    fn next_node(&mut self) -> bool;

    /// Connected: the round of attempts starts again from this node.
    fn settled(&mut self);

    fn address(&self) -> String;

    fn nodes(&self) -> usize;
}

fn received(topic: String, payload: &[u8], qos: u8, retain: bool) -> Incoming {
    Incoming {
        topic,
        payload: payload.to_vec(),
        qos,
        retain,
        response_topic: None,
        correlation: None,
    }
}

/// `granted`: every filter of the SUBSCRIBE was accepted.
fn suback(pkid: u16, granted: bool) -> Option<NetEvent> {
    Some(NetEvent::SubAck { pkid, granted })
}

/// What both protocol versions report of their own packets going out.
fn outgoing(o: rumqttc::Outgoing) -> Option<NetEvent> {
    use rumqttc::Outgoing;
    match o {
        Outgoing::Publish(pkid) => Some(NetEvent::Written(pkid)),
        Outgoing::Subscribe(pkid) => Some(NetEvent::SubscribeSent(pkid)),
        Outgoing::Disconnect => Some(NetEvent::DisconnectSent),
        _ => None,
    }
}

/// What [`Link::reset`] does, alike for both event loops (types of their own).
macro_rules! forget {
    ($el:expr) => {{
        $el.clean();
        $el.pending.clear();
        $el.state.events.clear();
    }};
}

/// Points the event loop at the node now in use (rumqttc reads its options at each connect).
macro_rules! set_options {
    ($link:expr) => {{
        let options = $link.1.current();
        $link.set(options);
    }};
}

struct V4(rumqttc::EventLoop, Nodes<rumqttc::MqttOptions>, Ctx);
struct V5(v5::EventLoop, Nodes<v5::MqttOptions>, Ctx);

impl V4 {
    fn set(&mut self, options: rumqttc::MqttOptions) {
        self.0.mqtt_options = options;
    }
}

impl V5 {
    fn set(&mut self, options: v5::MqttOptions) {
        self.0.options = options;
    }
}

impl Link for V4 {
    async fn poll(&mut self) -> Result<Polled, Failure> {
        use rumqttc::{Event, Packet};
        let ev = self.0.poll().await.map_err(|e| Failure {
            reason: describe_v4(&e, self.1.address(), self.2),
            loss: loss_v4(&e),
        })?;
        let packet = match ev {
            Event::Incoming(packet) => packet,
            Event::Outgoing(o) => return Ok(Polled::Outgoing(o)),
        };
        Ok(Polled::Incoming(match packet {
            Packet::ConnAck(_) => Some(NetEvent::Connected {
                max_packet: None,
                address: self.1.address().to_string(),
            }),
            Packet::Publish(p) => Some(NetEvent::Message(received(
                p.topic,
                &p.payload,
                p.qos as u8,
                p.retain,
            ))),
            Packet::PubAck(a) => Some(NetEvent::Acked(a.pkid)),
            Packet::PubComp(a) => Some(NetEvent::Acked(a.pkid)),
            Packet::SubAck(a) => {
                let mut codes = a.return_codes.iter();
                let granted = codes.all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure));
                suback(a.pkid, granted)
            }
            _ => None,
        }))
    }

    fn reset(&mut self) {
        forget!(self.0);
    }

    fn next_node(&mut self) -> bool {
        let round_done = self.1.advance();
        set_options!(self);
        round_done
    }

    fn settled(&mut self) {
        self.1.settled();
    }

    fn address(&self) -> String {
        self.1.address().to_string()
    }

    fn nodes(&self) -> usize {
        self.1.options.len()
    }
}

impl Link for V5 {
    async fn poll(&mut self) -> Result<Polled, Failure> {
        use v5::mqttbytes::v5::{Packet, PubAckReason, PubRecReason, SubscribeReasonCode};
        use v5::Event;
        let ev = self.0.poll().await.map_err(|e| Failure {
            reason: describe_v5(&e, self.1.address(), self.2),
            loss: loss_v5(&e),
        })?;
        let packet = match ev {
            Event::Incoming(packet) => packet,
            Event::Outgoing(o) => return Ok(Polled::Outgoing(o)),
        };
        Ok(Polled::Incoming(match packet {
            Packet::ConnAck(c) => Some(NetEvent::Connected {
                max_packet: c.properties.and_then(|p| p.max_packet_size),
                address: self.1.address().to_string(),
            }),
            Packet::PubAck(a)
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
            Packet::PubRec(a)
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
            Packet::Publish(p) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                let mut m = received(topic, &p.payload, p.qos as u8, p.retain);
                if let Some(props) = p.properties {
                    m.response_topic = props.response_topic;
                    m.correlation = props.correlation_data;
                }
                Some(NetEvent::Message(m))
            }
            Packet::PubAck(a) => Some(NetEvent::Acked(a.pkid)),
            Packet::PubComp(a) => Some(NetEvent::Acked(a.pkid)),
            Packet::SubAck(a) => {
                let mut codes = a.return_codes.iter();
                let granted = codes.all(|c| matches!(c, SubscribeReasonCode::Success(_)));
                suback(a.pkid, granted)
            }
            _ => None,
        }))
    }

    fn reset(&mut self) {
        forget!(self.0);
    }

    fn next_node(&mut self) -> bool {
        let round_done = self.1.advance();
        set_options!(self);
        round_done
    }

    fn settled(&mut self) {
        self.1.settled();
    }

    fn address(&self) -> String {
        self.1.address().to_string()
    }

    fn nodes(&self) -> usize {
        self.1.options.len()
    }
}

/// How long the broker may take to close the connection after our DISCONNECT.
const DRAIN_MAX: Duration = Duration::from_millis(250);

/// After DISCONNECT went out: reads what the broker still sends (messages for our
/// subscriptions) until it closes the connection. Closing our end with them unread makes the
/// kernel answer with a reset, and a broker that sees the reset before the DISCONNECT (Mosquitto
/// does, while it is writing to us) fires the last will: a second `disconnected`.
async fn drain(link: &mut impl Link, tx: &mpsc::Sender<NetEvent>) {
    let _ = tokio::time::timeout(DRAIN_MAX, async {
        while let Ok(Step { event, .. }) = link.step().await {
            // Delivered like any other: they arrived before the goodbye.
            if let Some(ev @ NetEvent::Message(_)) = event {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
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
                    link.settled();
                    connected = true;
                    connected_at = Instant::now();
                    backoff_before = backoff.reset();
                    watchdog.as_mut().reset(last_heard + silence_limit);
                }
                if tx.send(event).await.is_err() {
                    return;
                }
                if last {
                    drain(&mut link, &tx).await;
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
                // Another node of the broker is tried at once; the backoff applies only once
                // every node failed in a row.
                let several = link.nodes() > 1;
                let address = link.address();
                let retry_in = if link.next_node() {
                    backoff.next()
                } else {
                    Duration::ZERO
                };
                let down = NetEvent::Down {
                    reason,
                    retry_in,
                    quick,
                    loss,
                    address,
                    next: several.then(|| link.address()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_tried_in_turn_and_a_round_ends_where_it_began() {
        let mut n = Nodes::new(vec!["a".into(), "b".into(), "c".into()], vec![0, 1, 2]);
        assert_eq!(n.address(), "a");
        assert!(!n.advance());
        assert!(!n.advance());
        assert!(n.advance(), "a, b and c failed");
        assert_eq!(n.current(), 0);
        n.advance();
        n.settled(); // connected to b
        assert!(!n.advance());
        assert!(!n.advance());
        assert!(n.advance(), "back at b");
        assert_eq!(n.address(), "b");
        let mut one = Nodes::new(vec!["a".into()], vec![0]);
        assert!(one.advance());
    }

    #[test]
    fn backoff_doubles_to_two_minutes_and_resets() {
        let mut b = Backoff::new();
        let secs: Vec<u64> = (0..10).map(|_| b.next().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 120, 120, 120]);
        b.reset();
        assert_eq!(b.next().as_secs(), 1);
    }
}
