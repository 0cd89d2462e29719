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
}
