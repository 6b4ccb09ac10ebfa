//! rustls client configuration from the plugin's TLS settings (ring provider only).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::config::TlsConfig;
use crate::error::{Error, Result};

pub fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
