"""Test certificates for the TLS tests, made with the `cryptography` package.

`make_certs(directory)` writes a small PKI as PEM files and returns their paths:

- a trusted CA, and a second CA that nothing trusts;
- server certificates signed by the trusted CA: for `localhost` + 127.0.0.1, for a wrong
  name only, and an expired one (valid 2020-2021) for `localhost`;
- a server certificate for `localhost` signed by the untrusted CA;
- client certificates signed by the trusted CA, one with an RSA key (written as PKCS#8 and
  as PKCS#1) and one with an EC key (written as PKCS#8 and as SEC1), plus a file holding
  both the RSA client certificate and its key;
- a client certificate signed by the untrusted CA.

EC P-256 keys keep generation fast; RSA is used where a PKCS#1 key is needed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from support.mqtt_env import Broker

GOOD_HOSTS = ("localhost", "127.0.0.1")
WRONG_HOST = "wrong.example"

_PEM = serialization.Encoding.PEM
_NO_PASSWORD = serialization.NoEncryption()


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key (PKCS#8 PEM) on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    directory: Path
    ca: Path  # the CA the client is told to trust
    other_ca: Path  # a CA nothing trusts
    server: Pair  # localhost + 127.0.0.1, by `ca`
    server_wrong_name: Pair  # wrong.example only, by `ca`
    server_expired: Pair  # localhost, valid 2020-2021, by `ca`
    server_untrusted: Pair  # localhost + 127.0.0.1, by `other_ca`
    client_rsa: Path  # client certificate by `ca`, RSA key
    client_rsa_pkcs8: Path
    client_rsa_pkcs1: Path  # "BEGIN RSA PRIVATE KEY"
    client_ec: Path  # client certificate by `ca`, EC key
    client_ec_pkcs8: Path
    client_ec_sec1: Path  # "BEGIN EC PRIVATE KEY"
    client_combined: Path  # RSA client certificate followed by its PKCS#8 key
    client_untrusted: Pair  # client certificate by `other_ca`


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "octoprint-mqtt tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _build(
    subject: str,
    key,
    issuer: tuple[x509.Certificate, object] | None,
    *,
    is_ca: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    client: bool = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate for `key`; self-signed when `issuer` (cert, key) is None."""
    not_before = not_before or _now() - dt.timedelta(days=1)
    not_after = not_after or _now() + dt.timedelta(days=30)
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    if is_ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        names = [x509.DNSName(d) for d in dns] + [
            x509.IPAddress(ipaddress.ip_address(i)) for i in ips
        ]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(_PEM)


def _key_pem(key, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(_PEM, fmt, _NO_PASSWORD)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o644)  # mosquitto may drop privileges; let any user read the test files
    return path


def make_certs(directory: Path) -> Certs:
    """Generate the whole set of PEM files in `directory` (created if needed)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o755)
    pkcs8 = serialization.PrivateFormat.PKCS8
    legacy = serialization.PrivateFormat.TraditionalOpenSSL  # PKCS#1 for RSA, SEC1 for EC

    def pair(name: str, cert: x509.Certificate, key) -> Pair:
        return Pair(
            _write(d / f"{name}.crt", _cert_pem(cert)),
            _write(d / f"{name}.key", _key_pem(key, pkcs8)),
        )

    ca_key = _ec_key()
    # The CAs date from before the expired certificate, as a real CA would.
    since = dt.datetime(2019, 1, 1, tzinfo=dt.timezone.utc)
    ca_cert = _build("Test CA", ca_key, None, is_ca=True, not_before=since)
    ca = (ca_cert, ca_key)
    other_key = _ec_key()
    other_cert = _build("Untrusted CA", other_key, None, is_ca=True, not_before=since)
    other = (other_cert, other_key)

    host_names = {"dns": ("localhost",), "ips": ("127.0.0.1",)}
    key = _ec_key()
    server = pair("server", _build("localhost", key, ca, **host_names), key)
    key = _ec_key()
    wrong = pair("server-wrong-name", _build(WRONG_HOST, key, ca, dns=(WRONG_HOST,)), key)
    key = _ec_key()
    expired_cert = _build(
        "localhost",
        key,
        ca,
        dns=("localhost",),
        not_before=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc),
        not_after=dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc),
    )
    expired = pair("server-expired", expired_cert, key)
    key = _ec_key()
    untrusted = pair("server-untrusted", _build("localhost", key, other, **host_names), key)

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_cert = _build("client-rsa", rsa_key, ca, client=True)
    ec_key = _ec_key()
    ec_cert = _build("client-ec", ec_key, ca, client=True)
    key = _ec_key()
    client_untrusted = pair("client-untrusted", _build("intruder", key, other, client=True), key)

    return Certs(
        directory=d,
        ca=_write(d / "ca.crt", _cert_pem(ca_cert)),
        other_ca=_write(d / "other-ca.crt", _cert_pem(other_cert)),
        server=server,
        server_wrong_name=wrong,
        server_expired=expired,
        server_untrusted=untrusted,
        client_rsa=_write(d / "client-rsa.crt", _cert_pem(rsa_cert)),
        client_rsa_pkcs8=_write(d / "client-rsa.pkcs8.key", _key_pem(rsa_key, pkcs8)),
        client_rsa_pkcs1=_write(d / "client-rsa.pkcs1.key", _key_pem(rsa_key, legacy)),
        client_ec=_write(d / "client-ec.crt", _cert_pem(ec_cert)),
        client_ec_pkcs8=_write(d / "client-ec.pkcs8.key", _key_pem(ec_key, pkcs8)),
        client_ec_sec1=_write(d / "client-ec.sec1.key", _key_pem(ec_key, legacy)),
        client_combined=_write(
            d / "client-combined.pem", _cert_pem(rsa_cert) + _key_pem(rsa_key, pkcs8)
        ),
        client_untrusted=client_untrusted,
    )


# What the core says about each TLS failure (session.rs).
NOT_TRUSTED = "TLS: the broker's certificate is not signed by a trusted CA"
WRONG_NAME = "TLS: the broker's certificate is not valid for this host name"
EXPIRED = "TLS: the broker's certificate has expired"
CLIENT_CERT_REJECTED = "TLS: the broker rejected the client certificate"


@dataclass
class TlsBroker:
    broker: Broker  # plain listener: broker.host / broker.port
    tls_port: int


# Mosquitto (OpenSSL) offers TLS 1.3 by default, and rustls takes it. A listener limited to
# TLS 1.2 comes from an OpenSSL config given to the mosquitto process only.
OPENSSL_MAX_TLS12 = """\
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MaxProtocol = TLSv1.2
"""


def negotiated_tls_version(tb: TlsBroker, certs: Certs) -> str:
    """The TLS version the broker's TLS listener agrees to (with a client certificate, in
    case it requires one)."""
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.load_cert_chain(certs.client_ec, certs.client_ec_sec1)
    with socket.create_connection((tb.broker.host, tb.tls_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version()
