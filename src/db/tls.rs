//! TLS through rustls (ring provider only: REFERENCE.md explains why a second provider panics).
//!
//! libpq's `sslmode` semantics, which every PostgreSQL operator already knows:
//! - `prefer` (default) and `require` encrypt without verifying the server's certificate, unless
//!   a CA is configured (`--ssl-root-cert` / `sslrootcert=` in the URL): then the chain is
//!   verified, as libpq does when a root certificate file exists;
//! - `verify-ca` verifies the chain; `verify-full` verifies the chain and the host name, against
//!   the configured CA or, without one, the Mozilla roots compiled in.
//!
//! DESIGN.md first said `prefer` and `require` verify; that refuses every server with a
//! self-signed certificate (the Debian and RDS defaults) under the default sslmode, so dhctl
//! follows libpq instead (docs/configuration.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// How much of the server's certificate to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt only (libpq `prefer`/`require` without a CA).
    Nothing,
    /// The chain up to a trusted CA (libpq `verify-ca`).
    Chain,
    /// The chain and the host name (libpq `verify-full`).
    Full,
}

/// TLS settings taken from the connection string and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub verify: Verify,
    pub root_cert: Option<PathBuf>,
    /// A client certificate to present (libpq `sslcert` and `sslkey`).
    pub client: Option<ClientCert>,
}

/// PEM files of a client certificate (with its chain) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_connector(settings: &TlsSettings) -> Result<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = CertVerifier {
        verify: settings.verify,
        webpki: match settings.verify {
            Verify::Nothing => None,
            Verify::Chain | Verify::Full => {
                let roots = Arc::new(root_store(settings.root_cert.as_deref())?);
                Some(
                    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                        .build()
                        .map_err(|e| Error::usage(format!("TLS setup failed: {e}")))?,
                )
            }
        },
        provider: Arc::clone(&provider),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::usage(format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match &settings.client {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let chain = certificates(&client.cert)?;
            let key = private_key(&client.key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::usage(format!(
                    "{} and {} do not make a client certificate: {e}",
                    client.cert.display(),
                    client.key.display()
                ))
            })?
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// Every certificate of a PEM file (a client certificate and its intermediates).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::usage(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::usage(format!(
            "{}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The client's private key. As libpq, refuses a key others may read: owned by the user it must
/// be 0600 or less, owned by root 0640 or less.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        let mode = meta.mode() & 0o777;
        let too_open = if meta.uid() == 0 {
            mode & 0o037 != 0
        } else {
            mode & 0o077 != 0
        };
        if too_open {
            return Err(Error::usage_hint(
                format!(
                    "{}: the private key file has group or world access (mode {mode:o})",
                    path.display()
                ),
                "chmod 600 it (0640 when owned by root), as libpq requires",
            ));
        }
    }
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| {
            Error::usage(format!(
                "{}: no unencrypted PEM private key found (PKCS#8, PKCS#1 or SEC1)",
                path.display()
            ))
        })
}

fn root_store(root_cert: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let Some(path) = root_cert else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let pem = read(path)?;
    let mut reader = std::io::BufReader::new(pem.as_slice());
    for cert in rustls_pemfile::certs(&mut reader) {
        let cert = cert.map_err(|e| {
            Error::usage(format!(
                "{}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
        roots
            .add(cert)
            .map_err(|e| Error::usage(format!("{}: certificate rejected: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(Error::usage(format!(
            "{}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(roots)
}

#[derive(Debug)]
struct CertVerifier {
    verify: Verify,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if self.verify == Verify::Chain => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    // The handshake signature is always checked: even unverified TLS must prove the server holds
    // the key of the certificate it sent.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
