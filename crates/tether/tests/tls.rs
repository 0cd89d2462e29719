//! TLS (`wss://`): a local CA and certificates made in each test with
//! `rcgen`; trusted, untrusted, wrong-name and self-signed servers; mutual
//! TLS; the open timeout; redirects; the reconnect classification of TLS
//! failures (fatal); and interop with Python `websockets` over TLS both ways
//! (`interop/py_tls_server.py`, `interop/py_tls_client.py`).
#![cfg(feature = "rustls")]

mod peers;

use peers::{peers, Peer};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tether::reconnect::{Backoff, Event, ReconnectPolicy};
use tether::{ClientBuilder, ErrorKind, Message, Response, Server, ServerBuilder, WebSocket};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The bound on each step of a test.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out after {STEP:?}"))
}

// ---------------------------------------------------------------------------
// A local PKI
// ---------------------------------------------------------------------------

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM and DER.
struct Leaf {
    cert_pem: String,
    cert_der: Vec<u8>,
    key_pem: String,
    key_der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        }
    }

    /// A server certificate for `names`.
    fn server(&self, names: &[&str]) -> Leaf {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }
}

/// The names of the certificate of a local test server.
const LOCAL: &[&str] = &["localhost", "127.0.0.1"];

/// A scratch directory for PEM files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tether-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Servers and clients
// ---------------------------------------------------------------------------

async fn echo(mut ws: WebSocket) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// A tether echo server over TLS with `leaf`, on an ephemeral port.
async fn tls_server(leaf: &Leaf) -> Server {
    ServerBuilder::new()
        .max_message_size(Some(4 << 20))
        .tls_pem_bytes(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .expect("server certificate")
        .serve("127.0.0.1:0", echo)
        .await
        .expect("start the TLS server")
}

/// A text message comes back.
async fn assert_echo(ws: &mut WebSocket, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(
        within("echo", ws.recv()).await.unwrap().unwrap(),
        Message::text(text)
    );
}

/// Text and a large binary message come back.
async fn assert_echoes(ws: &mut WebSocket) {
    let big = Message::binary((0..(2 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    for msg in [Message::text("hello over TLS"), big] {
        within("send", ws.send(msg.clone())).await.expect("send");
        let got = within("echo", ws.recv())
            .await
            .expect("the connection ended")
            .expect("recv failed");
        assert!(got == msg, "the echo differs");
    }
}

/// The ALPN protocol the connection negotiated.
fn alpn(ws: &WebSocket) -> Option<Vec<u8>> {
    match ws.get_ref() {
        tether::MaybeTlsStream::Tls(s) => s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
        _ => panic!("not a TLS stream"),
    }
}

async fn connect_err(builder: ClientBuilder) -> tether::Error {
    match within("connect", builder.connect()).await {
        Ok(_) => panic!("expected the connection to fail"),
        Err(e) => {
            eprintln!("connect failed as expected: {e}");
            e
        }
    }
}

/// The `rustls::Error` in the source chain of a TLS error.
fn rustls_error(e: &tether::Error) -> &rustls::Error {
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return r;
        }
        cause = c.source();
    }
    panic!("no rustls::Error in the source chain of {e:?}")
}

// ---------------------------------------------------------------------------
// Client and server
// ---------------------------------------------------------------------------

/// Trusted (the test CA as an extra root): the connection works both ways,
/// over TLS, with ALPN http/1.1, by IP address and by host name.
#[tokio::test]
async fn trusted_connection_echoes() {
    let ca = Ca::new("tether test CA");
    let leaf = ca.server(LOCAL);
    let seen_tls = Arc::new(Mutex::new(Vec::new()));
    let seen = seen_tls.clone();
    let server = ServerBuilder::new()
        .max_message_size(Some(4 << 20))
        .tls_pem_bytes(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .unwrap()
        .serve("127.0.0.1:0", move |ws: WebSocket| {
            seen.lock().unwrap().push(ws.get_ref().is_tls());
            echo(ws)
        })
        .await
        .unwrap();
    let port = server.local_addr().port();
    for url in [
        format!("wss://127.0.0.1:{port}/"),
        format!("wss://localhost:{port}/chat?x=1"),
    ] {
        let mut ws = within(
            "connect",
            ClientBuilder::new(&url)
                .max_message_size(Some(4 << 20))
                .add_root_certificate_pem(ca.pem().as_bytes())
                .unwrap()
                .connect(),
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(ws.get_ref().is_tls());
        assert_eq!(alpn(&ws).as_deref(), Some(&b"http/1.1"[..]), "{url}");
        assert_echoes(&mut ws).await;
        within("close", ws.close(tether::CloseCode::NORMAL, "bye"))
            .await
            .unwrap();
        // The close handshake completes over TLS (close_notify, then EOF).
        assert!(within("end", ws.recv()).await.is_none());
    }
    assert_eq!(*seen_tls.lock().unwrap(), vec![true, true]);
    server.shutdown().await;
}

/// The same, with PEM files on both sides, and with DER on both sides, and
/// the built-in roots turned off (only the test CA is trusted).
#[tokio::test]
async fn pem_files_and_der() {
    let ca = Ca::new("tether test CA");
    let leaf = ca.server(LOCAL);
    let dir = Scratch::new("files");
    let ca_file = dir.write("ca.pem", &ca.pem());
    let cert_file = dir.write("cert.pem", &leaf.cert_pem);
    let key_file = dir.write("key.pem", &leaf.key_pem);

    let server = ServerBuilder::new()
        .tls_pem(&cert_file, &key_file)
        .unwrap()
        .serve("127.0.0.1:0", echo)
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let mut ws = ClientBuilder::new(&url)
        .add_root_certificate_pem_file(&ca_file)
        .unwrap()
        .tls_built_in_roots(false)
        .connect()
        .await
        .unwrap();
    assert_echo(&mut ws, "files").await;
    drop(ws); // else shutdown waits the close timeout for its answer
    server.shutdown().await;

    let server = ServerBuilder::new()
        .tls_der(vec![leaf.cert_der.clone()], leaf.key_der.clone())
        .unwrap()
        .serve("127.0.0.1:0", echo)
        .await
        .unwrap();
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let mut ws = ClientBuilder::new(&url)
        .add_root_certificate_der(ca.der())
        .unwrap()
        .tls_built_in_roots(false)
        .connect()
        .await
        .unwrap();
    assert_echo(&mut ws, "der").await;
    drop(ws); // else shutdown waits the close timeout for its answer
    server.shutdown().await;
}

/// Not trusted (no extra root; the platform's store does not hold the test
/// CA): ErrorKind::Tls, with a message that says why, fatal for the
/// reconnect loop: one attempt, then the error.
#[tokio::test]
async fn untrusted_certificate_is_a_fatal_tls_error() {
    let ca = Ca::new("tether untrusted CA");
    let server = tls_server(&ca.server(LOCAL)).await;
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());

    let e = connect_err(ClientBuilder::new(&url)).await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains("certificate not trusted (UnknownIssuer) for host 127.0.0.1"),
        "{shown}"
    );
    assert!(
        matches!(
            rustls_error(&e),
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{e:?}"
    );

    // The reconnect row: TLS → fatal at once.
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let policy = ReconnectPolicy::default()
        .backoff(Backoff {
            initial_max: Duration::from_millis(20),
            min: Duration::from_millis(10),
            factor: 2.0,
            max: Duration::from_millis(50),
            jitter: 0.5,
        })
        .on_event(move |ev| sink.lock().unwrap().push(ev.clone()));
    let mut connections = ClientBuilder::new(&url).reconnecting(policy);
    let e = match within("next", connections.next()).await {
        Some(Err(e)) => e,
        Some(Ok(_)) => panic!("connected to an untrusted server"),
        None => panic!("the stream ended without an error"),
    };
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert_eq!(e.attempts(), Some(1), "{e:?}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    assert!(within("next", connections.next()).await.is_none());
    assert_eq!(connections.attempts(), 1);
    let events = events.lock().unwrap().clone();
    let connecting = events
        .iter()
        .filter(|e| matches!(e, Event::Connecting { .. }))
        .count();
    let retries = events
        .iter()
        .filter(|e| matches!(e, Event::Retry { .. }))
        .count();
    assert_eq!((connecting, retries), (1, 0), "{events:?}");
    server.shutdown().await;
}

/// A trusted certificate for another name: ErrorKind::Tls, naming both.
#[tokio::test]
async fn wrong_host_name_is_a_tls_error() {
    let ca = Ca::new("tether test CA");
    let server = tls_server(&ca.server(&["other.example"])).await;
    let port = server.local_addr().port();
    for host in ["127.0.0.1", "localhost"] {
        let e = connect_err(
            ClientBuilder::new(format!("wss://{host}:{port}/"))
                .add_root_certificate_pem(ca.pem().as_bytes())
                .unwrap(),
        )
        .await;
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
        let shown = e.to_string();
        assert!(
            shown.contains(&format!(
                "certificate not valid for host {host} (NotValidForName)"
            )),
            "{shown}"
        );
        // The names it is valid for: in the cause, which Display does not
        // repeat.
        let cause = rustls_error(&e).to_string();
        assert!(cause.contains("other.example"), "{shown}: {cause}");
    }
    server.shutdown().await;
}

/// `danger_accept_invalid_certs`: a self-signed certificate for another
/// name is accepted; the connection works.
#[tokio::test]
async fn danger_accept_invalid_certs_connects() {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["other.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let leaf = Leaf {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    };
    let server = tls_server(&leaf).await;
    let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
    let e = connect_err(ClientBuilder::new(&url)).await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let mut ws = within(
        "connect",
        ClientBuilder::new(&url)
            .max_message_size(Some(4 << 20))
            .danger_accept_invalid_certs(true)
            .connect(),
    )
    .await
    .unwrap();
    assert_echoes(&mut ws).await;
    drop(ws); // else shutdown waits the close timeout for its answer
    server.shutdown().await;
}

/// A server that accepts TCP and never answers the ClientHello: the open
/// timeout covers the TLS handshake.
#[tokio::test]
async fn open_timeout_covers_tls() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(tcp);
    });
    let started = std::time::Instant::now();
    let e = connect_err(
        ClientBuilder::new(format!("wss://{addr}/")).open_timeout(Some(Duration::from_millis(300))),
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();
}

/// wss:// to a plain HTTP server (one that answers the ClientHello with a
/// 400, as most do): a TLS error that says so, not a retryable one.
#[tokio::test]
async fn plain_server_at_a_wss_url() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        let _ = tcp.shutdown().await;
    });
    let e = connect_err(ClientBuilder::new(format!("wss://{addr}/"))).await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("does not speak TLS"), "{e}");
    server.await.unwrap();
}

/// ws:// to a TLS server: the server drops it; the client sees a
/// connection error, and the server keeps serving TLS clients.
#[tokio::test]
async fn plain_client_at_a_tls_server() {
    let ca = Ca::new("tether test CA");
    let server = tls_server(&ca.server(LOCAL)).await;
    let port = server.local_addr().port();
    let e = connect_err(ClientBuilder::new(format!("ws://127.0.0.1:{port}/"))).await;
    assert_eq!(e.kind(), ErrorKind::Connect, "{e}");
    let mut ws = ClientBuilder::new(format!("wss://127.0.0.1:{port}/"))
        .add_root_certificate_pem(ca.pem().as_bytes())
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_echo(&mut ws, "still here").await;
    drop(ws); // else shutdown waits the close timeout for its answer
    server.shutdown().await;
}

/// Redirects over TLS: a relative Location and an https:// one are
/// followed (https maps to wss); a redirect from wss:// to ws:// is refused.
#[tokio::test]
async fn wss_redirects() {
    let ca = Ca::new("tether test CA");
    let leaf = ca.server(LOCAL);
    let plain = tether::serve("127.0.0.1:0", echo).await.unwrap();
    let plain_url = format!("ws://127.0.0.1:{}/", plain.local_addr().port());
    let port = Arc::new(OnceLock::<u16>::new());
    let p = port.clone();
    let server = ServerBuilder::new()
        .tls_pem_bytes(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .unwrap()
        .process_request(move |req| match req.path() {
            "/relative" => Some(Response::new(302).header("location", "/final")),
            "/https" => Some(Response::new(301).header(
                "location",
                &format!("https://localhost:{}/final", p.get().unwrap()),
            )),
            "/downgrade" => Some(Response::new(307).header("location", &plain_url)),
            _ => None,
        })
        .serve("127.0.0.1:0", |mut ws: WebSocket| async move {
            let path = ws
                .request()
                .map(|r| r.path().to_string())
                .unwrap_or_default();
            let _ = ws.send(Message::text(path)).await;
            echo(ws).await;
        })
        .await
        .unwrap();
    port.set(server.local_addr().port()).unwrap();
    let base = format!("wss://127.0.0.1:{}", server.local_addr().port());
    let client = |path: &str| {
        ClientBuilder::new(format!("{base}{path}"))
            .add_root_certificate_pem(ca.pem().as_bytes())
            .unwrap()
    };
    for path in ["/relative", "/https"] {
        let mut ws = within("connect", client(path).connect())
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(ws.get_ref().is_tls());
        assert_eq!(
            within("path", ws.recv()).await.unwrap().unwrap(),
            Message::text("/final"),
            "{path}"
        );
    }
    let e = connect_err(client("/downgrade")).await;
    assert_eq!(e.kind(), ErrorKind::Redirect, "{e}");
    assert!(e.to_string().contains("wss:// to ws://"), "{e}");
    server.shutdown().await;
    plain.shutdown().await;
}

/// `accept_tcp` on a listener of the test's own: TLS, then the upgrade.
#[tokio::test]
async fn accept_tcp_with_own_listener() {
    let ca = Ca::new("tether test CA");
    let leaf = ca.server(LOCAL);
    let builder = ServerBuilder::new()
        .tls_pem_bytes(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = builder.accept_tcp(tcp).await.expect("accept_tcp");
        assert!(ws.get_ref().is_tls());
        echo(ws).await;
    });
    let mut ws = ClientBuilder::new(format!("wss://{addr}/"))
        .add_root_certificate_pem(ca.pem().as_bytes())
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_echo(&mut ws, "own listener").await;
    ws.close(tether::CloseCode::NORMAL, "").await.unwrap();
    within("server task", task).await.unwrap();
}

/// Mutual TLS: a server (rustls, in the test) that requires a client
/// certificate from the test CA. With one, the connection works; without,
/// a TLS error that says the server requires one.
#[tokio::test]
async fn client_certificate() {
    let ca = Ca::new("tether test CA");
    let leaf = ca.server(LOCAL);
    let client_leaf = ca.issue(&["client.example"], ExtendedKeyUsagePurpose::ClientAuth);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().into()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![leaf.cert_der.clone().into()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    if let Ok(ws) = tether::accept(tls).await {
                        let mut ws = ws;
                        while let Some(Ok(m)) = ws.recv().await {
                            if m.is_data() && ws.send(m).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let url = format!("wss://localhost:{}/", addr.port());
    let trusted = || {
        ClientBuilder::new(&url)
            .add_root_certificate_pem(ca.pem().as_bytes())
            .unwrap()
    };

    let mut ws = within(
        "connect",
        trusted()
            .client_certificate_pem(
                client_leaf.cert_pem.as_bytes(),
                client_leaf.key_pem.as_bytes(),
            )
            .unwrap()
            .connect(),
    )
    .await
    .expect("with a client certificate");
    assert_echo(&mut ws, "mutual").await;

    // DER works too.
    let mut ws = within(
        "connect",
        trusted()
            .client_certificate_der(
                vec![client_leaf.cert_der.clone()],
                client_leaf.key_der.clone(),
            )
            .unwrap()
            .connect(),
    )
    .await
    .expect("with a client certificate (DER)");
    assert_echo(&mut ws, "der").await;

    let e = connect_err(trusted()).await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(
        e.to_string().contains("requires a client certificate"),
        "{e}"
    );
    server.abort();
}

/// `ServerBuilder::tls_config`: a rustls configuration built here (client
/// authentication required, ALPN `h2` and `http/1.1` as an HTTP/2 server
/// would list them) is used by `serve`: a client with a certificate
/// connects and one without is refused by the TLS handshake; ALPN is
/// `http/1.1` for a client that offers `h2` too, and a client that offers
/// only `h2` is refused (no_application_protocol).
#[tokio::test]
async fn tls_config_of_the_caller() {
    let ca = Ca::new("tether test CA");
    let leaf = ca.server(LOCAL);
    let client_leaf = ca.issue(&["client.example"], ExtendedKeyUsagePurpose::ClientAuth);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().into()).unwrap();
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![leaf.cert_der.clone().into()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let config = Arc::new(config);
    let server = ServerBuilder::new()
        .tls_config(config.clone())
        .serve("127.0.0.1:0", echo)
        .await
        .unwrap();
    // The caller's configuration is left as it was.
    assert_eq!(config.alpn_protocols.len(), 2);
    let port = server.local_addr().port();
    let url = format!("wss://localhost:{port}/");
    let trusted = || {
        ClientBuilder::new(&url)
            .add_root_certificate_pem(ca.pem().as_bytes())
            .unwrap()
    };

    let mut ws = within(
        "connect",
        trusted()
            .client_certificate_pem(
                client_leaf.cert_pem.as_bytes(),
                client_leaf.key_pem.as_bytes(),
            )
            .unwrap()
            .connect(),
    )
    .await
    .expect("with a client certificate");
    assert_echo(&mut ws, "own config").await;
    assert_eq!(alpn(&ws).as_deref(), Some(&b"http/1.1"[..]));
    drop(ws);

    let e = connect_err(trusted()).await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(
        e.to_string().contains("requires a client certificate"),
        "{e}"
    );

    // A raw TLS client (with a certificate) offering ALPN as a browser does.
    let raw = |offer: Vec<Vec<u8>>| {
        let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(
                vec![client_leaf.cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::try_from(client_leaf.key_der.clone()).unwrap(),
            )
            .unwrap();
        c.alpn_protocols = offer;
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(c))
                .connect(name, tcp)
                .await
        }
    };
    let tls = within(
        "h2 and http/1.1",
        raw(vec![b"h2".to_vec(), b"http/1.1".to_vec()]),
    )
    .await
    .expect("TLS with h2 and http/1.1 offered");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(tls);
    let e = within("h2 alone", raw(vec![b"h2".to_vec()]))
        .await
        .expect_err("h2 alone is refused");
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    assert!(
        matches!(
            inner,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            ))
        ),
        "{e:?}"
    );
    server.shutdown().await;
}

/// Bad TLS settings are ErrorKind::Config, at once, naming the file.
#[tokio::test]
async fn bad_settings_are_config_errors() {
    let ca = Ca::new("tether test CA");
    let leaf = ca.server(LOCAL);
    let other = ca.server(LOCAL);
    let dir = Scratch::new("bad");
    let missing = dir.0.join("missing.pem");

    let e = ClientBuilder::new("wss://h/")
        .add_root_certificate_pem_file(&missing)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    let garbage = dir.write("garbage.pem", "not a certificate\n");
    let e = ClientBuilder::new("wss://h/")
        .add_root_certificate_pem_file(&garbage)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("garbage.pem"), "{e}");

    let e = ClientBuilder::new("wss://h/")
        .add_root_certificate_der(vec![1, 2, 3])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");

    // A key that is not the certificate's.
    let e = ServerBuilder::new()
        .tls_pem_bytes(leaf.cert_pem.as_bytes(), other.key_pem.as_bytes())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let e = ClientBuilder::new("wss://h/")
        .client_certificate_pem(leaf.cert_pem.as_bytes(), other.key_pem.as_bytes())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");

    // No key in the key file.
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let e = ServerBuilder::new().tls_pem(&cert, &cert).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("no private key"), "{e}");

    // The builder's Debug never shows the key.
    let b = ClientBuilder::new("wss://h/")
        .client_certificate_pem(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())
        .unwrap();
    let shown = format!("{b:?}");
    assert!(shown.contains("client_certificate: true"), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
}

// ---------------------------------------------------------------------------
// Interop with Python websockets over TLS
// ---------------------------------------------------------------------------

/// `interop/<script>` with `args`, run by the Python of the venv made by
/// `interop/install.sh`.
fn python_script(script: &str, args: &[&Path]) -> Command {
    let mut cmd = Peer::Python.command(script);
    cmd.args(args);
    cmd
}

/// tether's client against `py_tls_server.py`, trusting the test CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_client_against_python_tls_server() {
    tokio::task::spawn_blocking(peers).await.unwrap();
    let ca = Ca::new("tether test CA");
    let leaf = ca.server(LOCAL);
    let dir = Scratch::new("py-server");
    let cert = dir.write("cert.pem", &leaf.cert_pem);
    let key = dir.write("key.pem", &leaf.key_pem);
    let mut child = python_script("py_tls_server.py", &[&cert, &key])
        .spawn()
        .expect("start py_tls_server.py");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(15), stdout.next_line())
        .await
        .expect("py_tls_server.py printed nothing within 15 s")
        .unwrap();
    let Some(port) = line
        .as_deref()
        .and_then(|l| l.strip_prefix("LISTENING "))
        .and_then(|p| p.trim().parse::<u16>().ok())
    else {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "py_tls_server.py printed {line:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    for host in ["127.0.0.1", "localhost"] {
        let mut ws = within(
            "connect",
            ClientBuilder::new(format!("wss://{host}:{port}/"))
                .max_message_size(Some(4 << 20))
                .add_root_certificate_pem(ca.pem().as_bytes())
                .unwrap()
                .connect(),
        )
        .await
        .unwrap_or_else(|e| panic!("connect to the Python TLS server: {e}"));
        assert_eq!(alpn(&ws).as_deref(), Some(&b"http/1.1"[..]));
        assert_echoes(&mut ws).await;
        within("close", ws.close(tether::CloseCode::NORMAL, ""))
            .await
            .unwrap();
        assert!(within("end", ws.recv()).await.is_none());
    }

    // Untrusted: the same server without the CA is a TLS error.
    let e = connect_err(ClientBuilder::new(format!("wss://127.0.0.1:{port}/"))).await;
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    assert!(e.to_string().contains("UnknownIssuer"), "{e}");

    if let Ok(Some(status)) = child.try_wait() {
        panic!("py_tls_server.py exited early ({status})");
    }
    let _ = child.start_kill();
}

/// `py_tls_client.py` against tether's TLS server, trusting the test CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_against_tether_tls_server() {
    tokio::task::spawn_blocking(peers).await.unwrap();
    let ca = Ca::new("tether test CA");
    let server = tls_server(&ca.server(LOCAL)).await;
    let dir = Scratch::new("py-client");
    let ca_file = dir.write("ca.pem", &ca.pem());
    for host in ["127.0.0.1", "localhost"] {
        let url = PathBuf::from(format!("wss://{host}:{}/", server.local_addr().port()));
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            python_script("py_tls_client.py", &[&url, &ca_file]).output(),
        )
        .await
        .expect("py_tls_client.py did not finish within 30 s")
        .expect("run py_tls_client.py");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("ok tls-echo"),
            "py_tls_client.py {}: {}\n{stdout}\n{}",
            url.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A Python client that does not trust the server's CA refuses it.
    let other = Ca::new("another CA");
    let other_file = dir.write("other.pem", &other.pem());
    let url = PathBuf::from(format!("wss://127.0.0.1:{}/", server.local_addr().port()));
    let out = python_script("py_tls_client.py", &[&url, &other_file])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("CERTIFICATE_VERIFY_FAILED"), "{stdout}");
    server.shutdown().await;
}

/// A burst of large messages echoed over TLS to a slow reader, the last
/// one followed by a ping: the server coalesces the last echo with the pong
/// while the socket is full, so TLS holds bytes that it took but could not
/// send yet; they must still reach the client when the socket drains (no
/// stall waiting for the last echo).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_burst_with_a_slow_reader_does_not_stall() {
    let ca = Ca::new("tether test CA");
    let server = tls_server(&ca.server(LOCAL)).await;
    let ws = ClientBuilder::new(format!("wss://127.0.0.1:{}/", server.local_addr().port()))
        .max_message_size(Some(4 << 20))
        .add_root_certificate_pem(ca.pem().as_bytes())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (mut rx, tx) = ws.split();
    const N: usize = 24;
    let msg = |i: usize| Message::binary(vec![i as u8; 300_000 + i]);
    let writer = tokio::spawn(async move {
        for i in 0..N {
            tx.send(msg(i)).await.unwrap();
        }
        tx.ping(&b"last"[..]).await.unwrap();
        tx
    });
    let mut pong = false;
    let mut i = 0;
    while i < N || !pong {
        let got = within(&format!("echo {i} (pong: {pong})"), rx.recv())
            .await
            .expect("ended")
            .expect("recv");
        match got {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"last");
                pong = true;
            }
            m => {
                assert!(m == msg(i), "echo {i} differs");
                i += 1;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
    }
    let tx = within("writer", writer).await.unwrap();
    within("close", tx.close(tether::CloseCode::NORMAL, ""))
        .await
        .unwrap();
    while within("end", rx.recv()).await.is_some() {}
    server.shutdown().await;
}
