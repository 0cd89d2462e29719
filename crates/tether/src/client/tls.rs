//! The TLS options of the client: thin calls into `crate::tls`, which holds
//! the rustls code.

use super::ClientBuilder;
#[cfg(doc)]
use crate::error::ErrorKind;
use crate::error::Result;

/// TLS options of the client (feature `tls`, on by default): thin calls into
/// `crate::tls`, which holds the rustls code.
impl ClientBuilder {
    /// Trusts the CA certificates of a PEM file (one or more
    /// `-----BEGIN CERTIFICATE-----` sections) for `wss://`, besides the
    /// built-in roots.
    ///
    /// ```no_run
    /// # async fn run() -> tether::Result<()> {
    /// let ws = tether::ClientBuilder::new("wss://internal.example:8443/feed")
    ///     .add_root_certificate_pem_file("ca.pem")?
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the file cannot be read or holds no
    /// valid certificate.
    pub fn add_root_certificate_pem_file(
        mut self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<Self> {
        self.tls.add_roots_pem_file(path.as_ref())?;
        Ok(self)
    }

    /// Trusts the CA certificates of a PEM text, besides the built-in
    /// roots. See [`ClientBuilder::add_root_certificate_pem_file`].
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when the text holds no valid certificate.
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Result<Self> {
        self.tls.add_roots_pem(pem, "root certificates")?;
        Ok(self)
    }

    /// Trusts a CA certificate in DER form, besides the built-in roots.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when it is not a valid certificate.
    pub fn add_root_certificate_der(mut self, der: impl Into<Vec<u8>>) -> Result<Self> {
        self.tls.add_root_der(der.into())?;
        Ok(self)
    }

    /// Whether the built-in roots are trusted (default `true`): the
    /// platform's certificate store with the `tls` feature, Mozilla's
    /// roots with the `webpki-roots` feature. With `false`, only the
    /// certificates added with `add_root_certificate_*` are trusted
    /// (pinning a private CA).
    pub fn tls_built_in_roots(mut self, enabled: bool) -> Self {
        self.tls.set_built_in_roots(enabled);
        self
    }

    /// A client certificate for servers that ask for one (mutual TLS):
    /// the certificate chain (leaf first) and the private key, each from a
    /// PEM file.
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when a file cannot be read, holds no
    /// certificate or key, or the key does not match the certificate.
    pub fn client_certificate_pem_file(
        mut self,
        cert_path: impl AsRef<std::path::Path>,
        key_path: impl AsRef<std::path::Path>,
    ) -> Result<Self> {
        self.tls
            .client_auth_pem_files(cert_path.as_ref(), key_path.as_ref())?;
        Ok(self)
    }

    /// A client certificate from PEM texts: the chain (leaf first) and the
    /// private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// As [`ClientBuilder::client_certificate_pem_file`].
    pub fn client_certificate_pem(mut self, cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        self.tls.client_auth_pem(cert_chain_pem, key_pem)?;
        Ok(self)
    }

    /// A client certificate in DER form: the chain (leaf first) and the
    /// private key (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// As [`ClientBuilder::client_certificate_pem_file`].
    pub fn client_certificate_der(
        mut self,
        cert_chain: Vec<Vec<u8>>,
        key: Vec<u8>,
    ) -> Result<Self> {
        self.tls.client_auth_der(cert_chain, key)?;
        Ok(self)
    }

    /// **For tests only.** Accepts any server certificate: self-signed,
    /// expired, issued for another name, issued by anyone. The connection
    /// is still encrypted, but to whoever answered: anyone on the path can
    /// read and change it. Never use this in production; trust a private
    /// CA with [`ClientBuilder::add_root_certificate_pem_file`] instead.
    /// A warning is logged on each connection that uses it.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls.set_accept_invalid_certs(accept);
        self
    }

    /// Uses your rustls configuration for `wss://`: a custom certificate
    /// verifier, another crypto provider, a client certificate resolver, a
    /// session cache shared with your HTTP client. Needs the `rustls`
    /// feature (on with `tls`); the `rustls` version is the one tether
    /// depends on (0.23).
    ///
    /// - **ALPN**: tether uses a copy of the configuration whose
    ///   `alpn_protocols` is `["http/1.1"]`, whatever yours holds. The
    ///   upgrade is an HTTP/1.1 request (RFC 6455 §4.1): a server offered
    ///   `h2` may choose it and would then not understand the request.
    /// - **Other TLS options**: the configuration replaces them all, so it
    ///   cannot be combined with `add_root_certificate_*`,
    ///   `tls_built_in_roots(false)`, `client_certificate_*` or
    ///   `danger_accept_invalid_certs(true)`: with any of them,
    ///   [`connect`](ClientBuilder::connect) fails with
    ///   [`ErrorKind::Config`] before opening anything (and so does
    ///   [`validate`](ClientBuilder::validate)), rather than ignore one
    ///   side and trust other servers than you meant. Put the roots, the
    ///   verifier or the client certificate in the configuration.
    /// - SNI and the host name checked are the URL's host, as without it;
    ///   certificate failures are [`ErrorKind::Tls`] errors whose source is
    ///   the `rustls::Error`.
    ///
    /// ```no_run
    /// # async fn run() -> tether::Result<()> {
    /// use std::sync::Arc;
    /// use tether::rustls;
    /// let mut roots = rustls::RootCertStore::empty();
    /// # let ca_der: Vec<u8> = Vec::new();
    /// roots.add(rustls::pki_types::CertificateDer::from(ca_der)).unwrap();
    /// let config = rustls::ClientConfig::builder_with_provider(Arc::new(
    ///     rustls::crypto::ring::default_provider(),
    /// ))
    /// .with_safe_default_protocol_versions()
    /// .unwrap()
    /// .with_root_certificates(roots)
    /// .with_no_client_auth();
    /// let ws = tether::ClientBuilder::new("wss://internal.example:8443/feed")
    ///     .tls_config(Arc::new(config))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls.set_custom(config);
        self
    }
}
