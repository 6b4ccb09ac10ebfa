//! rustls client configuration from the plugin's TLS settings (ring provider only).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore,
    SignatureScheme, SupportedCipherSuite,
};

use crate::config::TlsConfig;
use crate::error::{Error, Result};

pub fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = cipher_suites(&provider, tls.files.ciphers.as_deref())?;
    let provider = Arc::new(provider);
    let roots = Arc::new(root_store(tls.files.ca_certs.as_deref())?);
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| Error::Config(format!("TLS: cannot use the CA certificates: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure {
        Arc::new(SkipHostName(verifier))
    } else {
        verifier
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);

    let config = match (&tls.files.certfile, &tls.files.keyfile) {
        (Some(cert), key) => {
            let chain = read_certs(cert, "broker.tls.certfile")?;
            // A PEM file holding both the certificate and the key is common.
            let (key_path, where_) = match key.as_deref() {
                Some(k) => (k, "broker.tls.keyfile".to_string()),
                None => (
                    cert.as_str(),
                    "broker.tls.certfile (broker.tls.keyfile is unset, so the key is looked for there)".to_string(),
                ),
            };
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                Error::Config(format!(
                    "TLS: no usable private key (PKCS#1, PKCS#8 or SEC1 PEM) in {where_} {key_path:?}: {e}"
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::Config(format!(
                    "TLS: the client certificate (broker.tls.certfile) and the key (broker.tls.keyfile) do not belong together: {e}"
                ))
            })?
        }
        (None, Some(_)) => {
            return Err(Error::Config(
                "TLS: broker.tls.keyfile is set but broker.tls.certfile is not".into(),
            ))
        }
        (None, None) => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The OpenSSL name of each suite the ring provider offers: the classic plugin handed
/// `broker.tls.ciphers` to OpenSSL, so stored values use these names (TLS 1.3 suites have the
/// same name in OpenSSL and IANA).
const OPENSSL_NAMES: &[(&str, &str)] = &[
    ("TLS13_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    ("TLS13_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    (
        "TLS13_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

fn openssl_name(suite: &SupportedCipherSuite) -> &'static str {
    let rustls_name = format!("{:?}", suite.suite());
    OPENSSL_NAMES
        .iter()
        .find(|(r, _)| *r == rustls_name)
        .map(|(_, o)| *o)
        .unwrap_or("?")
}

/// `broker.tls.ciphers`: a list separated by `:`, `,` or spaces of OpenSSL or IANA suite names.
/// As with OpenSSL, naming only TLS 1.2 suites leaves the TLS 1.3 suites as they are (and the
/// other way round); a version whose suites are named is limited to those. Names rustls does
/// not offer (old CBC or RSA-key-exchange suites, OpenSSL keywords like `HIGH`) are refused
/// with the list of what is supported rather than silently ignored.
fn cipher_suites(
    provider: &CryptoProvider,
    spec: Option<&str>,
) -> Result<Vec<SupportedCipherSuite>> {
    let all = &provider.cipher_suites;
    let names: Vec<&str> = spec
        .unwrap_or("")
        .split(|c: char| c == ':' || c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(all.clone());
    }
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        // IANA names equal rustls' for TLS 1.2 and OpenSSL's for TLS 1.3.
        let found = all.iter().find(|s| {
            name.eq_ignore_ascii_case(openssl_name(s))
                || name.eq_ignore_ascii_case(&format!("{:?}", s.suite()))
        });
        match found {
            Some(s) if !chosen.contains(s) => chosen.push(*s),
            Some(_) => {}
            None => unknown.push(name),
        }
    }
    if !unknown.is_empty() {
        let supported: Vec<&str> = all.iter().map(openssl_name).collect();
        return Err(Error::Config(format!(
            "TLS: broker.tls.ciphers names cipher suites this plugin does not support ({}); supported: {}",
            unknown.join(", "),
            supported.join(":")
        )));
    }
    let is13 = |s: &SupportedCipherSuite| s.version().version == ProtocolVersion::TLSv1_3;
    let names_13 = chosen.iter().any(is13);
    let names_12 = chosen.iter().any(|s| !is13(s));
    let mut suites = chosen;
    // The version left unnamed keeps its defaults, after the named ones.
    suites.extend(
        all.iter()
            .filter(|s| if is13(s) { !names_13 } else { !names_12 })
            .copied(),
    );
    Ok(suites)
}

fn root_store(ca_file: Option<&str>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs(path, "broker.tls.ca_certs")? {
                roots.add(cert).map_err(|_| {
                    Error::Config(format!(
                        "TLS: broker.tls.ca_certs {path:?} holds a PEM block that is not a usable X.509 CA certificate"
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::Config(
                    "TLS: no system CA certificates found; set broker.tls.ca_certs".into(),
                ));
            }
        }
    }
    Ok(roots)
}

fn read_certs(path: &str, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    if !Path::new(path).is_file() {
        return Err(Error::Config(format!(
            "TLS: {key} {path:?} does not exist or is not a file"
        )));
    }
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::Config(format!("TLS: cannot read {key} {path:?}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "TLS: no PEM certificate in {key} {path:?}"
        )));
    }
    Ok(certs)
}

/// `tls_insecure`: the chain is still verified against the trusted roots, only the host-name
/// check is skipped (LAN brokers reached by IP address).
#[derive(Debug)]
struct SkipHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for SkipHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: Option<&str>) -> Result<Vec<&'static str>> {
        let provider = rustls::crypto::ring::default_provider();
        Ok(cipher_suites(&provider, spec)?
            .iter()
            .map(openssl_name)
            .collect())
    }

    #[test]
    fn every_offered_suite_has_an_openssl_name() {
        let all = names(None).unwrap();
        assert_eq!(all.len(), OPENSSL_NAMES.len());
        assert!(!all.contains(&"?"), "{all:?}");
    }

    #[test]
    fn tls12_names_limit_tls12_and_keep_tls13() {
        let got = names(Some("ECDHE-RSA-AES128-GCM-SHA256")).unwrap();
        assert_eq!(got[0], "ECDHE-RSA-AES128-GCM-SHA256");
        assert!(got.contains(&"TLS_AES_128_GCM_SHA256"));
        assert!(!got.contains(&"ECDHE-RSA-AES256-GCM-SHA384"));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn iana_names_any_case_and_separators() {
        let got = names(Some(
            "tls_aes_256_gcm_sha384, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 ECDHE-ECDSA-AES256-GCM-SHA384",
        ))
        .unwrap();
        assert_eq!(
            got,
            ["TLS_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"]
        );
    }

    #[test]
    fn unsupported_names_are_refused_with_what_is_supported() {
        let err = names(Some("HIGH:!aNULL:ECDHE-RSA-AES128-GCM-SHA256"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HIGH, !aNULL"), "{err}");
        assert!(err.contains("supported: TLS_AES_256_GCM_SHA384:"), "{err}");
        assert!(err.contains("ECDHE-RSA-CHACHA20-POLY1305"), "{err}");
    }

    #[test]
    fn blank_means_the_defaults() {
        assert_eq!(names(Some(" ")).unwrap(), names(None).unwrap());
    }
}
