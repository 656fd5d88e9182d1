//! TLS on the gate's listeners (feature `tls`: rustls with ring): HTTPS
//! for the HTTP routes and the event stream, and TLS for the gRPC service.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// A gate's certificate chain and private key, in PEM.
#[derive(Clone)]
pub struct GateTls {
    cert_chain: Arc<[u8]>,
    key: Arc<[u8]>,
}

impl std::fmt::Debug for GateTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GateTls { .. }")
    }
}

impl GateTls {
    /// A certificate chain and key in PEM (the key in PKCS#8, PKCS#1 or
    /// SEC1 form).
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when they do not parse or do not go together.
    pub fn from_pem(cert_chain: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Result<Self> {
        let tls = Self {
            cert_chain: cert_chain.into().into(),
            key: key.into().into(),
        };
        tls.server_config(Vec::new())?;
        Ok(tls)
    }

    /// Reads the certificate chain and key from PEM files.
    ///
    /// # Errors
    ///
    /// `INVALID_CONFIG` when a file cannot be read, or as for
    /// [`from_pem`](GateTls::from_pem).
    pub fn from_pem_files(
        cert_chain: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<Self> {
        let read = |path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| Error::Config(format!("gate TLS: {}: {e}", path.display())))
        };
        Self::from_pem(read(cert_chain.as_ref())?, read(key.as_ref())?)
    }

    fn server_config(&self, alpn: Vec<Vec<u8>>) -> Result<rustls::ServerConfig> {
        let bad = |what: &str, error: &dyn std::fmt::Display| {
            Error::Config(format!("gate TLS: {what}: {error}"))
        };
        let certs = CertificateDer::pem_slice_iter(&self.cert_chain)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad("the certificate chain", &e))?;
        if certs.is_empty() {
            return Err(Error::Config(
                "gate TLS: no certificate in the chain".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| bad("the key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("protocol versions", &e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad("the certificate and key", &e))?;
        config.alpn_protocols = alpn;
        Ok(config)
    }

    /// The acceptor of the HTTP listener.
    pub(crate) fn http_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor> {
        let config = self.server_config(vec![b"http/1.1".to_vec()])?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// The identity of the gRPC listener; a handshake gets `handshake`.
    pub(crate) fn grpc_config(
        &self,
        handshake: std::time::Duration,
    ) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &*self.cert_chain,
                &*self.key,
            ))
            .timeout(handshake)
    }
}
