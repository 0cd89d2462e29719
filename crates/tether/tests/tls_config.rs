//! `ClientBuilder::tls_config`: the caller's rustls configuration, with a
//! custom certificate verifier, against a tether TLS server; ALPN forced to
//! http/1.1; the refusal to combine it with tether's own TLS options.
#![cfg(feature = "rustls")]

use rcgen::{CertificateParams, KeyPair};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether::rustls;
use tether::{ClientBuilder, ErrorKind, Message, ServerBuilder, WebSocket};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

const STEP: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out after {STEP:?}"))
}

/// A self-signed certificate for localhost: no root store trusts it.
struct SelfSigned {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
}

fn self_signed() -> SelfSigned {
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    SelfSigned {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
    }
}

async fn echo(mut ws: WebSocket) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

async fn tls_server(cert: &SelfSigned) -> tether::Server {
    ServerBuilder::new()
        .tls_pem_bytes(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes())
        .unwrap()
        .serve("127.0.0.1:0", echo)
        .await
        .unwrap()
}

/// A verifier that records each certificate it is asked about, then
/// accepts only `expected` (a pinned certificate) or refuses everything.
#[derive(Debug)]
struct Recording {
    provider: Arc<CryptoProvider>,
    expected: Option<Vec<u8>>,
    calls: Mutex<Vec<String>>,
}

impl Recording {
    fn new(expected: Option<Vec<u8>>) -> Arc<Recording> {
        Arc::new(Recording {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            expected,
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.calls
            .lock()
            .unwrap()
            .push(server_name.to_str().into_owned());
        match &self.expected {
            Some(der) if der.as_slice() == end_entity.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

/// A client configuration with `verifier`, offering only `h2` by ALPN (as
/// a configuration shared with an HTTP/2 client might).
fn config_with(verifier: Arc<Recording>) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// The caller's verifier decides: it is called with the URL's host name,
/// and the connection works with a certificate no root store trusts. The
/// configuration offered only h2, yet http/1.1 is negotiated (tether's
/// server accepts nothing else, so an h2-only offer would be refused).
#[tokio::test]
async fn a_custom_verifier_is_used_and_alpn_is_http11() {
    let cert = self_signed();
    let server = tls_server(&cert).await;
    let verifier = Recording::new(Some(cert.cert_der.clone()));
    let config = config_with(verifier.clone());
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let mut ws = within(
        "connect",
        ClientBuilder::new(&url)
            .tls_config(config.clone())
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(verifier.calls(), ["localhost"]);
    match ws.get_ref() {
        tether::MaybeTlsStream::Tls(s) => {
            assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        }
        _ => panic!("not a TLS stream"),
    }
    // The caller's configuration itself is left as it was.
    assert_eq!(config.alpn_protocols, [b"h2".to_vec()]);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        within("echo", ws.recv()).await.unwrap().unwrap(),
        Message::text("hello")
    );
    within("close", ws.close(tether::CloseCode::NORMAL, ""))
        .await
        .unwrap();

    // Without the configuration, the same server is not trusted.
    let err = within("connect", ClientBuilder::new(&url).connect())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    server.shutdown().await;
}

/// A verifier that refuses makes the connection fail with ErrorKind::Tls,
/// the rustls error as its source.
#[tokio::test]
async fn a_refusing_verifier_is_a_tls_error() {
    let cert = self_signed();
    let server = tls_server(&cert).await;
    let verifier = Recording::new(None);
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let err = within(
        "connect",
        ClientBuilder::new(&url)
            .tls_config(config_with(verifier.clone()))
            .connect(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert_eq!(verifier.calls(), ["localhost"]);
    let mut cause = std::error::Error::source(&err);
    let mut found = false;
    while let Some(c) = cause {
        found |= c.downcast_ref::<rustls::Error>().is_some();
        cause = c.source();
    }
    assert!(found, "no rustls::Error in {err:?}");
    server.shutdown().await;
}

/// tls_config with tether's own trust or client-certificate options is a
/// Config error, in either order, before anything is opened; the options
/// at their defaults are fine.
#[tokio::test]
async fn tls_config_is_not_combined_with_other_tls_options() {
    let cert = self_signed();
    let server = tls_server(&cert).await;
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let config = || config_with(Recording::new(Some(cert.cert_der.clone())));
    type Setting = Box<dyn Fn(ClientBuilder) -> ClientBuilder>;
    let (cert_pem, key_pem) = (cert.cert_pem.clone(), cert.key_pem.clone());
    let der = cert.cert_der.clone();
    let settings: Vec<(&str, Setting)> = vec![
        (
            "add_root_certificate_*",
            Box::new(move |b| b.add_root_certificate_der(der.clone()).unwrap()),
        ),
        (
            "tls_built_in_roots(false)",
            Box::new(|b| b.tls_built_in_roots(false)),
        ),
        (
            "client_certificate_*",
            Box::new(move |b| {
                b.client_certificate_pem(cert_pem.as_bytes(), key_pem.as_bytes())
                    .unwrap()
            }),
        ),
        (
            "danger_accept_invalid_certs(true)",
            Box::new(|b| b.danger_accept_invalid_certs(true)),
        ),
    ];
    for (name, set) in &settings {
        let before = set(ClientBuilder::new(&url)).tls_config(config());
        let after = set(ClientBuilder::new(&url).tls_config(config()));
        for b in [before, after] {
            let e = b.validate().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{name}: {e}");
            assert!(e.to_string().contains(name), "{name}: {e}");
            let e = within("connect", b.connect()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{name}: {e}");
        }
    }
    // The defaults, set explicitly, do not conflict.
    let b = ClientBuilder::new(&url)
        .tls_built_in_roots(true)
        .danger_accept_invalid_certs(false)
        .tls_config(config());
    b.validate().unwrap();
    let ws = within("connect", b.connect()).await.unwrap();
    drop(ws);
    server.shutdown().await;
}
