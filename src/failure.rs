//! Failures in the words of what the user can fix: rumqttc's errors and MQTT 5 reason codes
//! described, and what a lost connection means for the messages sent on it ([`Loss`]).

use std::io;

use rumqttc::v5;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT_SECS: u64 = 10;

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

fn is_closed(io: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        io.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    ) && rustls_cause(io).is_none()
}

/// What rumqttc's two error types (3.1.1 and 5, `$m` the module of each) say alike about a
/// lost connection, and what they say alike in words: written once for both.
macro_rules! closed {
    ($m:ident, $e:expr) => {{
        use $m::{ConnectionError as E, StateError as S};
        match $e {
            E::Io(io)
            | E::MqttState(S::Io(io))
            | E::MqttState(S::Deserialization($m::mqttbytes::Error::Io(io))) => is_closed(io),
            E::MqttState(S::ConnectionAborted) => true,
            _ => false,
        }
    }};
}

macro_rules! describe_shared {
    ($m:ident, $e:expr, $address:expr, $ctx:expr) => {{
        use $m::{ConnectionError as E, StateError as S};
        let (address, ctx) = ($address, $ctx);
        // A closure, so that `return None` leaves only this match.
        (|| {
            Some(match $e {
            // Reads fail inside the packet decoder (a TLS 1.3 alert, a reset): say what the
            // I/O error was, not that the packet was malformed.
            E::Io(io)
            | E::MqttState(S::Io(io))
            | E::MqttState(S::Deserialization($m::mqttbytes::Error::Io(io))) => {
                describe_io(io, address, ctx)
            }
            E::MqttState(S::AwaitPingResp) => {
                "the broker stopped answering (no reply to the keepalive ping)".into()
            }
            E::MqttState(S::ConnectionAborted) => "the broker closed the connection".into(),
            E::Tls(t) => describe_tls(t, ctx),
            E::NotConnAck(_) => format!("{address} did not answer like an MQTT broker"),
            E::RequestsDone => "the MQTT client stopped".into(),
            E::Websocket(w) => format!("WebSocket: {w}"),
            E::WsConnect(w) => format!("WebSocket: {w}"),
            E::InvalidUrl(_) => format!("WebSocket: {address} does not make a valid URL (check broker.url and broker.ws_path)"),
            E::ResponseValidation(_) => "WebSocket: the server did not accept an MQTT WebSocket connection (check broker.ws_path)".into(),
            _ => return None,
            })
        })()
    }};
}

pub fn loss_v4(e: &rumqttc::ConnectionError) -> Loss {
    use rumqttc::{ConnectionError as E, StateError as S};
    if closed!(rumqttc, e) {
        return Loss::Closed;
    }
    match e {
        E::MqttState(S::Deserialization(rumqttc::mqttbytes::Error::OutgoingPacketTooLarge {
            ..
        })) => Loss::MessageRefused("larger than this client's 64 MiB packet limit"),
        _ => Loss::Other,
    }
}

pub fn loss_v5(e: &v5::ConnectionError) -> Loss {
    use v5::mqttbytes::v5::DisconnectReasonCode as D;
    use v5::{ConnectionError as E, StateError as S};
    if closed!(v5, e) {
        return Loss::Closed;
    }
    match e {
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
pub fn disconnect_reason(code: &v5::mqttbytes::v5::DisconnectReasonCode) -> Option<&'static str> {
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

/// An MQTT 5 acknowledgement's failure reason in words; PUBACK and PUBREC have the same
/// reasons as types of their own.
macro_rules! ack_reason {
    ($name:ident, $reason:ident) => {
        pub fn $name(r: &v5::mqttbytes::v5::$reason) -> &'static str {
            use v5::mqttbytes::v5::$reason as R;
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
    };
}

ack_reason!(puback_reason, PubAckReason);
ack_reason!(pubrec_reason, PubRecReason);

/// What the failure descriptions need to know about the settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx {
    pub client_cert: bool,
    /// `broker.tls.ciphers` limits the suites offered.
    pub ciphers: bool,
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

/// A refused CONNECT's "not authorised": what to check.
const NOT_AUTHORISED: &str =
    "not authorised (check the user name, the password and the broker's ACL)";

pub fn describe_v4(e: &rumqttc::ConnectionError, address: &str, ctx: Ctx) -> String {
    use rumqttc::{ConnectReturnCode as C, ConnectionError as E};
    if let Some(said) = describe_shared!(rumqttc, e, address, ctx) {
        return said;
    }
    match e {
        E::ConnectionRefused(code) => match code {
            C::BadUserNamePassword => {
                "the broker refused the connection: bad user name or password".into()
            }
            // Mosquitto 2 answers this to a wrong password too, never "bad user name or
            // password".
            C::NotAuthorized => format!("the broker refused the connection: {NOT_AUTHORISED}"),
            C::BadClientId => "the broker refused the connection: client id rejected".into(),
            C::RefusedProtocolVersion => {
                "the broker refused the connection: it does not speak MQTT 3.1.1".into()
            }
            C::ServiceUnavailable => {
                "the broker refused the connection: service unavailable".into()
            }
            C::Success => "the broker answered CONNACK success but the connection failed".into(),
        },
        E::MqttState(other) => format!("MQTT protocol error: {other}"),
        E::NetworkTimeout => {
            format!("timed out connecting to {address} (no answer within {CONNECT_TIMEOUT_SECS} s)")
        }
        E::FlushTimeout => format!("timed out sending to {address}"),
        // Described above.
        other => other.to_string(),
    }
}

pub fn describe_v5(e: &v5::ConnectionError, address: &str, ctx: Ctx) -> String {
    use v5::mqttbytes::v5::ConnectReturnCode as C;
    use v5::{ConnectionError as E, StateError as S};
    if let Some(said) = describe_shared!(v5, e, address, ctx) {
        return said;
    }
    match e {
        E::ConnectionRefused(code) => {
            let why = match code {
                C::BadUserNamePassword => "bad user name or password",
                C::NotAuthorized => NOT_AUTHORISED,
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
        // Described above.
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
