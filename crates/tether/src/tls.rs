//! TLS for `wss://` clients and for servers: rustls with the `ring` crypto
//! provider, set explicitly on every configuration (no process-wide default
//! provider is installed or needed).
//!
//! - The client trusts the platform's certificate store (feature `tls`) and/or
//!   Mozilla's roots compiled in (feature `webpki-roots`), plus the roots given
//!   to `ClientBuilder::add_root_certificate_pem_file` and its siblings. It
//!   sends SNI (for host names, not for IP addresses) and offers ALPN
//!   `http/1.1`. A caller's configuration (`ClientBuilder::tls_config`)
//!   replaces all of that but SNI; a copy of it is used, with ALPN `http/1.1`.
//! - A server given a certificate (`ServerBuilder::tls_pem`) or a rustls
//!   configuration (`ServerBuilder::tls_config`, with its ALPN set to
//!   `http/1.1`) accepts TLS before the WebSocket upgrade, within the open
//!   timeout.
//! - The server's configurations are built with the `ring` provider; one
//!   given to `tls_config` keeps its own.
//! - Certificate and host-name failures are [`ErrorKind::Tls`], which the
//!   reconnect policy treats as fatal. The [`Error`]'s source is a
//!   `rustls::Error` (one level down the `source()` chain).
//!
//! Without the TLS features the types below are empty stand-ins, so that the
//! client and server code need no `cfg`.

use crate::error::{Error, ErrorKind, Result};
use crate::transport::MaybeTlsStream;
use tokio::net::TcpStream;

#[cfg(not(feature = "rustls"))]
pub(crate) use disabled::*;
#[cfg(feature = "rustls")]
pub(crate) use enabled::*;

#[cfg(not(feature = "rustls"))]
mod disabled {
    use super::*;

    /// TLS settings of a client: none without the TLS features.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct ClientTls;

    /// TLS settings of a server: cannot exist without the TLS features.
    #[derive(Debug, Clone)]
    pub(crate) enum ServerTls {}

    /// Unreachable in practice: `parse_url` refuses `wss://` in this build.
    pub(crate) async fn connect(_: &ClientTls, _: TcpStream, _: &str) -> Result<MaybeTlsStream> {
        Err(Error::msg(
            ErrorKind::InvalidUrl,
            "wss:// needs TLS: build tether with the `tls` feature",
        ))
    }

    impl ClientTls {
        /// No settings, so nothing to refuse.
        pub(crate) fn validate(&self) -> Result<()> {
            Ok(())
        }
    }

    /// No TLS, so never a TLS refusal.
    pub(crate) fn refusal(
        e: std::io::Error,
        _host: &str,
    ) -> std::result::Result<Error, std::io::Error> {
        Err(e)
    }

    pub(crate) async fn accept(tls: Option<&ServerTls>, tcp: TcpStream) -> Result<MaybeTlsStream> {
        match tls {
            None => Ok(MaybeTlsStream::Tcp(tcp)),
            Some(never) => match *never {},
        }
    }
}

#[cfg(feature = "rustls")]
mod enabled {
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use rustls::{
        ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    };
    use std::fmt;
    use std::path::Path;
    use std::sync::{Arc, OnceLock};

    /// The ALPN protocol offered by the client and accepted by the server.
    const ALPN_HTTP11: &[u8] = b"http/1.1";

    /// The crypto provider of every configuration: `ring`.
    fn provider() -> Arc<CryptoProvider> {
        static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
        PROVIDER
            .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
            .clone()
    }

    fn config_error(what: impl fmt::Display) -> Error {
        Error::msg(ErrorKind::Config, format!("TLS configuration: {what}"))
    }

    fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| {
            Error::io(ErrorKind::Config, e)
                .with_message(format!("could not read the {what} {}", path.display()))
        })
    }

    /// Every certificate in a PEM text.
    fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| config_error(format!("invalid PEM in the {what}: {e}")))?;
        if certs.is_empty() {
            return Err(config_error(format!(
                "no certificate (-----BEGIN CERTIFICATE-----) in the {what}"
            )));
        }
        Ok(certs)
    }

    /// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM text.
    fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => config_error(format!(
                "no private key (-----BEGIN PRIVATE KEY-----) in the {what}"
            )),
            e => config_error(format!("invalid PEM in the {what}: {e}")),
        })
    }

    fn key_from_der(der: Vec<u8>) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::try_from(der)
            .map_err(|e| config_error(format!("invalid private key (DER): {e}")))
    }

    /// Checks that the chain and key go together and that the key is usable.
    fn check_cert_and_key(
        chain: &[CertificateDer<'static>],
        key: &PrivateKeyDer<'static>,
    ) -> Result<()> {
        rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider())
            .map(|_| ())
            .map_err(|e| config_error(format!("certificate and private key: {e}")))
    }

    // -----------------------------------------------------------------------
    // Client
    // -----------------------------------------------------------------------

    /// The TLS settings of a [`crate::ClientBuilder`], and the rustls configuration
    /// built from them (once, shared by the builder's clones until a setting
    /// changes).
    #[derive(Clone)]
    pub(crate) struct ClientTls {
        extra_roots: Vec<CertificateDer<'static>>,
        built_in_roots: bool,
        client_auth: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
        accept_invalid_certs: bool,
        /// The caller's configuration (`ClientBuilder::tls_config`), used
        /// instead of one built from the settings above.
        custom: Option<Arc<ClientConfig>>,
        cache: Arc<OnceLock<Arc<ClientConfig>>>,
    }

    impl Default for ClientTls {
        fn default() -> Self {
            ClientTls {
                extra_roots: Vec::new(),
                built_in_roots: true,
                client_auth: None,
                accept_invalid_certs: false,
                custom: None,
                cache: Arc::default(),
            }
        }
    }

    impl fmt::Debug for ClientTls {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // Never the key.
            f.debug_struct("ClientTls")
                .field("extra_roots", &self.extra_roots.len())
                .field("built_in_roots", &self.built_in_roots)
                .field("client_certificate", &self.client_auth.is_some())
                .field("danger_accept_invalid_certs", &self.accept_invalid_certs)
                .field("custom_config", &self.custom.is_some())
                .finish()
        }
    }

    impl ClientTls {
        /// A setting changes: the cached configuration no longer applies.
        fn changed(&mut self) -> &mut Self {
            self.cache = Arc::default();
            self
        }

        fn config(&self) -> Result<Arc<ClientConfig>> {
            if let Some(c) = self.cache.get() {
                return Ok(c.clone());
            }
            let config = Arc::new(self.build()?);
            Ok(self.cache.get_or_init(|| config).clone())
        }

        /// Refuses a caller's configuration combined with tether's trust
        /// and client-certificate options: that configuration has its own
        /// verifier and client certificate, which tether cannot add to
        /// (rustls has no way to add roots to a built configuration), and
        /// silently ignoring either side would trust other servers than
        /// the caller thinks.
        pub(crate) fn validate(&self) -> Result<()> {
            if self.custom.is_none() {
                return Ok(());
            }
            let mut set = Vec::new();
            if !self.extra_roots.is_empty() {
                set.push("add_root_certificate_*");
            }
            if !self.built_in_roots {
                set.push("tls_built_in_roots(false)");
            }
            if self.client_auth.is_some() {
                set.push("client_certificate_*");
            }
            if self.accept_invalid_certs {
                set.push("danger_accept_invalid_certs(true)");
            }
            if set.is_empty() {
                return Ok(());
            }
            Err(config_error(format!(
                "tls_config is a whole rustls configuration and cannot be combined with {}: \
                 put the roots, the verifier or the client certificate in that configuration",
                set.join(", ")
            )))
        }

        fn build(&self) -> Result<ClientConfig> {
            self.validate()?;
            if let Some(custom) = &self.custom {
                // A copy with ALPN http/1.1 only: the upgrade is an
                // HTTP/1.1 request (RFC 6455 §4.1). A configuration shared
                // with an HTTP client often offers h2 first, and a server
                // that picks it would read our request as a broken HTTP/2
                // preface (WebSocket over HTTP/2 is RFC 8441, which tether
                // does not speak). The copy shares the caller's verifier,
                // client certificate resolver and session cache.
                let mut config = ClientConfig::clone(custom);
                config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
                return Ok(config);
            }
            let provider = provider();
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(config_error)?;
            let builder = if self.accept_invalid_certs {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            } else {
                let mut roots = if self.built_in_roots {
                    RootCertStore::clone(&built_in_roots())
                } else {
                    RootCertStore::empty()
                };
                for cert in &self.extra_roots {
                    roots.add(cert.clone()).map_err(config_error)?;
                }
                if roots.is_empty() {
                    tracing::warn!(
                        "no trusted root certificates: every wss:// server will be refused \
                         (add roots with ClientBuilder::add_root_certificate_*, or enable \
                         tether's `tls` or `webpki-roots` feature)"
                    );
                }
                builder.with_root_certificates(roots)
            };
            let mut config = match &self.client_auth {
                Some((chain, key)) => builder
                    .with_client_auth_cert(chain.clone(), key.clone_key())
                    .map_err(|e| config_error(format!("client certificate: {e}")))?,
                None => builder.with_no_client_auth(),
            };
            config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
            Ok(config)
        }
    }

    /// The roots trusted by default: the platform's store (feature `tls`)
    /// and Mozilla's roots (feature `webpki-roots`), loaded once.
    fn built_in_roots() -> Arc<RootCertStore> {
        static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
        ROOTS
            .get_or_init(|| {
                #[allow(unused_mut)]
                let mut roots = RootCertStore::empty();
                #[cfg(feature = "tls")]
                {
                    let found = rustls_native_certs::load_native_certs();
                    for e in &found.errors {
                        tracing::warn!(error = %e, "could not read part of the platform's certificate store");
                    }
                    let (added, ignored) = roots.add_parsable_certificates(found.certs);
                    tracing::debug!(added, ignored, "loaded the platform's root certificates");
                    if added == 0 {
                        tracing::warn!(
                            "the platform's certificate store has no usable certificate \
                             (is the ca-certificates package installed?)"
                        );
                    }
                }
                #[cfg(feature = "webpki-roots")]
                roots
                    .roots
                    .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                Arc::new(roots)
            })
            .clone()
    }

    /// `danger_accept_invalid_certs`: any certificate, for any name; the
    /// handshake signatures are still checked (the peer holds the key of the
    /// certificate it sent, whatever that certificate is).
    #[derive(Debug)]
    struct AcceptAnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> std::result::Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

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
                &self.0.signature_verification_algorithms,
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
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// The TLS handshake of a `wss://` connection, with SNI for `host`.
    pub(crate) async fn connect(
        tls: &ClientTls,
        tcp: TcpStream,
        host: &str,
    ) -> Result<MaybeTlsStream> {
        let config = tls.config()?;
        if tls.accept_invalid_certs {
            tracing::warn!(
                host,
                "danger_accept_invalid_certs: the server's certificate is NOT verified"
            );
        }
        let name = ServerName::try_from(host.to_string()).map_err(|_| {
            Error::msg(
                ErrorKind::InvalidUrl,
                format!("{host:?} is not a valid TLS server name"),
            )
        })?;
        match tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
        {
            Ok(s) => Ok(MaybeTlsStream::Tls(Box::new(s.into()))),
            Err(e) => Err(handshake_error(e, Peer::Server(host.to_string()))),
        }
    }

    /// The settings behind the TLS options of [`crate::ClientBuilder`]
    /// (documented there).
    impl ClientTls {
        pub(crate) fn add_roots_pem_file(&mut self, path: &Path) -> Result<()> {
            let pem = read_file(path, "root certificate file")?;
            self.add_roots_pem(&pem, &format!("root certificate file {}", path.display()))
        }

        pub(crate) fn add_roots_pem(&mut self, pem: &[u8], what: &str) -> Result<()> {
            for cert in certs_from_pem(pem, what)? {
                self.add_root(cert)?;
            }
            Ok(())
        }

        pub(crate) fn add_root_der(&mut self, der: Vec<u8>) -> Result<()> {
            self.add_root(CertificateDer::from(der))
        }

        fn add_root(&mut self, cert: CertificateDer<'static>) -> Result<()> {
            RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| config_error(format!("invalid root certificate: {e}")))?;
            self.changed().extra_roots.push(cert);
            Ok(())
        }

        pub(crate) fn set_built_in_roots(&mut self, enabled: bool) {
            self.changed().built_in_roots = enabled;
        }

        pub(crate) fn client_auth_pem_files(
            &mut self,
            cert_path: &Path,
            key_path: &Path,
        ) -> Result<()> {
            let cert = read_file(cert_path, "client certificate file")?;
            let key = read_file(key_path, "client key file")?;
            let chain = certs_from_pem(
                &cert,
                &format!("client certificate file {}", cert_path.display()),
            )?;
            let key = key_from_pem(&key, &format!("client key file {}", key_path.display()))?;
            self.client_auth(chain, key)
        }

        pub(crate) fn client_auth_pem(
            &mut self,
            cert_chain_pem: &[u8],
            key_pem: &[u8],
        ) -> Result<()> {
            let chain = certs_from_pem(cert_chain_pem, "client certificate")?;
            let key = key_from_pem(key_pem, "client key")?;
            self.client_auth(chain, key)
        }

        pub(crate) fn client_auth_der(
            &mut self,
            cert_chain: Vec<Vec<u8>>,
            key: Vec<u8>,
        ) -> Result<()> {
            let chain = cert_chain.into_iter().map(CertificateDer::from).collect();
            self.client_auth(chain, key_from_der(key)?)
        }

        fn client_auth(
            &mut self,
            chain: Vec<CertificateDer<'static>>,
            key: PrivateKeyDer<'static>,
        ) -> Result<()> {
            check_cert_and_key(&chain, &key)?;
            self.changed().client_auth = Some((chain, Arc::new(key)));
            Ok(())
        }

        pub(crate) fn set_accept_invalid_certs(&mut self, accept: bool) {
            self.changed().accept_invalid_certs = accept;
        }

        pub(crate) fn set_custom(&mut self, config: Arc<ClientConfig>) {
            self.changed().custom = Some(config);
        }
    }

    // -----------------------------------------------------------------------
    // Server
    // -----------------------------------------------------------------------

    /// The TLS configuration of a server.
    #[derive(Clone)]
    pub(crate) struct ServerTls {
        config: Arc<ServerConfig>,
    }

    impl fmt::Debug for ServerTls {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ServerTls").finish_non_exhaustive()
        }
    }

    impl ServerTls {
        fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self> {
            check_cert_and_key(&chain, &key)?;
            let mut config = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(config_error)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| config_error(format!("server certificate: {e}")))?;
            config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
            Ok(ServerTls {
                config: Arc::new(config),
            })
        }
    }

    /// The server side of the TLS handshake, when the server has a
    /// certificate.
    pub(crate) async fn accept(tls: Option<&ServerTls>, tcp: TcpStream) -> Result<MaybeTlsStream> {
        let Some(tls) = tls else {
            return Ok(MaybeTlsStream::Tcp(tcp));
        };
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "?".to_string(), |a| a.to_string());
        match tokio_rustls::TlsAcceptor::from(tls.config.clone())
            .accept(tcp)
            .await
        {
            Ok(s) => Ok(MaybeTlsStream::Tls(Box::new(s.into()))),
            Err(e) => Err(handshake_error(e, Peer::Client(peer))),
        }
    }

    /// The constructors behind the TLS options of [`crate::ServerBuilder`]
    /// (documented there).
    impl ServerTls {
        pub(crate) fn from_pem_files(cert_chain_path: &Path, key_path: &Path) -> Result<Self> {
            let cert = read_file(cert_chain_path, "certificate file")?;
            let key = read_file(key_path, "private key file")?;
            let chain = certs_from_pem(
                &cert,
                &format!("certificate file {}", cert_chain_path.display()),
            )?;
            let key = key_from_pem(&key, &format!("private key file {}", key_path.display()))?;
            ServerTls::new(chain, key)
        }

        pub(crate) fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
            let chain = certs_from_pem(cert_chain_pem, "server certificate")?;
            let key = key_from_pem(key_pem, "server key")?;
            ServerTls::new(chain, key)
        }

        pub(crate) fn from_der(cert_chain: Vec<Vec<u8>>, key: Vec<u8>) -> Result<Self> {
            let chain = cert_chain.into_iter().map(CertificateDer::from).collect();
            ServerTls::new(chain, key_from_der(key)?)
        }

        /// A caller's configuration, with ALPN `http/1.1` alone (the
        /// reasons are in the docs of `ServerBuilder::tls_config`): the same
        /// `Arc` when it says so already, else a copy that shares the
        /// rest (resolver, verifier, session cache are `Arc`s inside).
        pub(crate) fn from_config(config: Arc<ServerConfig>) -> Self {
            if config.alpn_protocols == [ALPN_HTTP11] {
                return ServerTls { config };
            }
            let others: Vec<String> = config
                .alpn_protocols
                .iter()
                .filter(|p| p.as_slice() != ALPN_HTTP11)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            if !others.is_empty() {
                tracing::warn!(
                    dropped = ?others,
                    "tls_config: a tether server speaks WebSocket over HTTP/1.1 only; \
                     it accepts ALPN http/1.1 alone"
                );
            }
            let mut copy = ServerConfig::clone(&config);
            copy.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
            ServerTls {
                config: Arc::new(copy),
            }
        }
    }

    // -----------------------------------------------------------------------
    // Errors
    // -----------------------------------------------------------------------

    /// The other end of a failed TLS handshake.
    #[derive(Debug)]
    enum Peer {
        /// This end is the client of this host.
        Server(String),
        /// This end is the server; the client's address.
        Client(String),
    }

    /// A TLS handshake failure in plain words: the message of the
    /// [`ErrorKind::Tls`] error, whose source is the `rustls::Error` (so its
    /// text is not repeated here).
    struct TlsFailure<'a> {
        peer: &'a Peer,
        error: &'a rustls::Error,
    }

    impl fmt::Display for TlsFailure<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            use rustls::{AlertDescription as A, CertificateError as C, Error as E};
            let (peer, whose) = match self.peer {
                Peer::Server(host) => (format!("the server {host}"), format!("host {host}")),
                Peer::Client(addr) => (format!("the client {addr}"), format!("the client {addr}")),
            };
            match self.error {
                E::InvalidCertificate(C::UnknownIssuer) => write!(
                    f,
                    "certificate not trusted (UnknownIssuer) for {whose}: \
                     its issuer is not among the trusted root certificates"
                ),
                E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                    write!(f, "certificate not valid for {whose} (NotValidForName)")
                }
                E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                    write!(f, "certificate expired (Expired) for {whose}")
                }
                E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                    write!(f, "certificate not valid yet (NotValidYet) for {whose}")
                }
                E::InvalidCertificate(_) => write!(f, "invalid certificate for {whose}"),
                E::NoCertificatesPresented => write!(f, "{peer} presented no certificate"),
                E::AlertReceived(A::CertificateRequired) => {
                    write!(
                        f,
                        "{peer} requires a client certificate (alert CertificateRequired)"
                    )
                }
                E::AlertReceived(
                    a @ (A::UnknownCA
                    | A::BadCertificate
                    | A::CertificateUnknown
                    | A::CertificateExpired
                    | A::UnsupportedCertificate
                    | A::AccessDenied),
                ) => write!(f, "{peer} refused our certificate (alert {a:?})"),
                E::AlertReceived(A::NoApplicationProtocol) => write!(
                    f,
                    "{peer} accepts none of the ALPN protocols offered (http/1.1)"
                ),
                E::AlertReceived(a) => {
                    write!(f, "{peer} ended the TLS handshake with the alert {a:?}")
                }
                E::InvalidMessage(_)
                | E::InappropriateMessage { .. }
                | E::InappropriateHandshakeMessage { .. } => {
                    let hint = match self.peer {
                        Peer::Server(_) => "is it a plain ws:// server?",
                        Peer::Client(_) => "is it a plain ws:// client?",
                    };
                    write!(f, "{peer} does not speak TLS ({hint})")
                }
                _ => write!(f, "TLS handshake with {peer} failed"),
            }
        }
    }

    /// An I/O error on a `wss://` connection after the TLS handshake: the
    /// [`ErrorKind::Tls`] error when it carries a `rustls::Error` (an alert
    /// from the server, such as a refused client certificate), else the I/O
    /// error back.
    pub(crate) fn refusal(
        e: std::io::Error,
        host: &str,
    ) -> std::result::Result<Error, std::io::Error> {
        if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            Ok(handshake_error(e, Peer::Server(host.to_string())))
        } else {
            Err(e)
        }
    }

    /// Classifies an I/O error of a TLS handshake: a `rustls::Error`
    /// (tokio-rustls returns it as `io::Error(InvalidData, rustls::Error)`)
    /// is [`ErrorKind::Tls`]; anything else (reset, EOF) is
    /// [`ErrorKind::Connect`], which a retry may fix.
    fn handshake_error(e: std::io::Error, peer: Peer) -> Error {
        if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
            let inner = e.into_inner().expect("checked above");
            let error = *inner.downcast::<rustls::Error>().expect("checked above");
            let failure = TlsFailure {
                peer: &peer,
                error: &error,
            };
            return Error::msg(ErrorKind::Tls, failure.to_string()).with_source(error);
        }
        let during = match &peer {
            Peer::Server(host) => format!("connection to {host} lost during the TLS handshake"),
            Peer::Client(addr) => format!("client {addr} went away during the TLS handshake"),
        };
        Error::io(ErrorKind::Connect, e).with_message(during)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rustls_errors_are_tls_and_others_connect() {
            let io = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            );
            let e = handshake_error(io, Peer::Server("example.com".into()));
            assert_eq!(e.kind(), ErrorKind::Tls);
            let shown = e.to_string();
            assert!(
                shown.contains("certificate not trusted (UnknownIssuer) for host example.com"),
                "{shown}"
            );
            // The rustls error is the source, and Display does not repeat it.
            let src = std::error::Error::source(&e).expect("the rustls error");
            assert!(src.is::<rustls::Error>(), "{e:?}");
            assert!(!shown.contains(&src.to_string()), "{shown}");

            let io = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            let e = handshake_error(io, Peer::Server("example.com".into()));
            assert_eq!(e.kind(), ErrorKind::Connect);
            assert_eq!(e.io_kind(), Some(std::io::ErrorKind::UnexpectedEof));
        }

        #[test]
        fn debug_never_shows_the_key() {
            let tls = ClientTls::default();
            let s = format!("{tls:?}");
            assert!(s.contains("client_certificate: false"), "{s}");
        }
    }
}
