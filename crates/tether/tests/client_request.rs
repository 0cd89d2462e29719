//! What a client connection is opened to and over: `IntoClientRequest`
//! (an `http::Request` with its headers and subprotocols, a `url::Url`, an
//! `http::Uri`, an invalid request) and `ClientBuilder::connect_on` (a Unix
//! socket, an in-memory duplex, a redirect, the open timeout).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tether::{http, ClientBuilder, ErrorKind, Message, Response, ServerBuilder, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// The bound on each step of a test.
const STEP: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out after {STEP:?}"))
}

/// What a server saw of an upgrade request.
#[derive(Debug)]
struct Seen {
    target: String,
    headers: http::HeaderMap,
    subprotocol: Option<String>,
}

/// A server that reports each request it upgrades, then echoes.
async fn reporting_server(protocols: &[&str]) -> (tether::Server, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = ServerBuilder::new()
        .subprotocols(protocols.iter().copied())
        .serve("127.0.0.1:0", move |ws: WebSocket| {
            let req = ws.request().expect("a server keeps the request");
            let _ = tx.send(Seen {
                target: req.target.clone(),
                headers: req.headers.clone(),
                subprotocol: ws.subprotocol().map(String::from),
            });
            echo(ws)
        })
        .await
        .unwrap();
    (server, rx)
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocket<S>) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

async fn assert_echo<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>, msg: Message) {
    within("send", ws.send(msg.clone())).await.unwrap();
    let got = within("echo", ws.recv()).await.unwrap().unwrap();
    assert!(got == msg, "the echo differs");
}

// ---------------------------------------------------------------------------
// IntoClientRequest
// ---------------------------------------------------------------------------

/// A custom header, the subprotocol list and the Origin of an
/// `http::Request` reach the server; the server's choice comes back.
#[tokio::test]
async fn request_headers_and_subprotocols_reach_the_server() {
    let (server, mut seen) = reporting_server(&["chat.v1"]).await;
    let request = http::Request::builder()
        .uri(format!("ws://{}/room/7?lang=en", server.local_addr()))
        .header("x-custom", "forty-two")
        .header("x-custom", "forty-three")
        .header("origin", "https://app.example")
        .header("sec-websocket-protocol", "chat.v2, chat.v1")
        .body(())
        .unwrap();
    let mut ws = within("connect", tether::connect(request)).await.unwrap();
    assert_eq!(ws.subprotocol(), Some("chat.v1"));
    assert_echo(&mut ws, Message::text("hello")).await;

    let seen = within("report", seen.recv()).await.unwrap();
    assert_eq!(seen.target, "/room/7?lang=en");
    let custom: Vec<_> = seen.headers.get_all("x-custom").iter().collect();
    assert_eq!(custom, ["forty-two", "forty-three"]);
    assert_eq!(seen.headers["origin"], "https://app.example");
    assert_eq!(seen.headers["sec-websocket-protocol"], "chat.v2, chat.v1");
    assert_eq!(seen.subprotocol.as_deref(), Some("chat.v1"));
    within("close", ws.close(tether::CloseCode::NORMAL, ""))
        .await
        .unwrap();
    server.shutdown().await;
}

/// A request built as for tungstenite (the handshake headers already in
/// it, with a fixed key) works: tether's own Host, Upgrade, Connection and
/// a fresh key are sent, once each.
#[tokio::test]
async fn a_tungstenite_style_request_sends_each_handshake_header_once() {
    let (server, mut seen) = reporting_server(&[]).await;
    let addr = server.local_addr();
    let request = http::Request::builder()
        .uri(format!("ws://{addr}/"))
        .header("host", "elsewhere.example")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("user-agent", "my-app/1.0")
        .body(())
        .unwrap();
    let mut ws = within("connect", tether::connect(request)).await.unwrap();
    assert_echo(&mut ws, Message::binary(vec![1u8, 2, 3])).await;
    let seen = within("report", seen.recv()).await.unwrap();
    let all = |name: &str| -> Vec<String> {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(all("host"), [addr.to_string()]);
    assert_eq!(all("upgrade").len(), 1);
    assert_eq!(all("connection").len(), 1);
    assert_eq!(all("sec-websocket-version"), ["13"]);
    let key = all("sec-websocket-key");
    assert_eq!(key.len(), 1);
    assert_ne!(key[0], "dGhlIHNhbXBsZSBub25jZQ==", "a fresh key each time");
    // The request's User-Agent replaces tether's default.
    assert_eq!(all("user-agent"), ["my-app/1.0"]);
    within("close", ws.close(tether::CloseCode::NORMAL, ""))
        .await
        .unwrap();
    server.shutdown().await;
}

/// `url::Url` and `&url::Url`, `http::Uri` and `&http::Uri` give the same
/// request as the URL string.
#[tokio::test]
async fn url_and_uri_values() {
    let (server, mut seen) = reporting_server(&[]).await;
    let text = format!("ws://{}/feed?since=5", server.local_addr());
    let url = tether::url::Url::parse(&text).unwrap();
    let uri: http::Uri = text.parse().unwrap();
    let builders = [
        ClientBuilder::new(&url),
        ClientBuilder::new(url.clone()),
        ClientBuilder::new(&uri),
        ClientBuilder::new(uri.clone()),
        ClientBuilder::new(&text),
    ];
    for b in builders {
        let mut ws = within("connect", b.connect()).await.unwrap();
        assert_echo(&mut ws, Message::text("x")).await;
        let seen = within("report", seen.recv()).await.unwrap();
        assert_eq!(seen.target, "/feed?since=5");
        assert_eq!(seen.headers["host"], server.local_addr().to_string());
    }
    server.shutdown().await;
}

/// A method other than GET is a Config error from connect, and nothing is
/// opened: the listener sees no connection.
#[tokio::test]
async fn invalid_method_fails_before_connecting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let request = http::Request::post(format!("ws://{addr}/"))
        .body(())
        .unwrap();
    let builder = ClientBuilder::new(request);
    assert_eq!(builder.validate().unwrap_err().kind(), ErrorKind::Config);
    let err = within("connect", builder.connect()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("must be GET, not POST"), "{err}");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err(),
        "a connection was opened"
    );

    // The same with the reconnect loop: it stops before its first attempt.
    let request = http::Request::put(format!("ws://{addr}/"))
        .body(())
        .unwrap();
    let mut connections = ClientBuilder::new(request).reconnecting(Default::default());
    let first = within("reconnecting", connections.next()).await.unwrap();
    assert_eq!(first.unwrap_err().kind(), ErrorKind::Config);
}

/// The other requests that cannot be sent, each with its kind.
#[test]
fn invalid_requests() {
    let cases: Vec<(http::Request<()>, ErrorKind, &str)> = vec![
        (
            http::Request::get("/chat").body(()).unwrap(),
            ErrorKind::InvalidUrl,
            "not absolute",
        ),
        (
            http::Request::get("http://h/").body(()).unwrap(),
            ErrorKind::InvalidUrl,
            "unsupported scheme",
        ),
        (
            http::Request::get("ws://h/")
                .version(http::Version::HTTP_2)
                .body(())
                .unwrap(),
            ErrorKind::Config,
            "HTTP/1.1",
        ),
        (
            http::Request::get("ws://h/")
                .header("sec-websocket-protocol", "chat v1")
                .body(())
                .unwrap(),
            ErrorKind::Config,
            "subprotocol",
        ),
        (
            http::Request::get("ws://h/")
                .header("sec-websocket-extensions", "permessage-deflate")
                .body(())
                .unwrap(),
            ErrorKind::Config,
            "Sec-WebSocket-Extensions",
        ),
    ];
    for (request, kind, text) in cases {
        let shown = format!("{} {}", request.method(), request.uri());
        let err = ClientBuilder::new(request).validate().unwrap_err();
        assert_eq!(err.kind(), kind, "{shown}: {err}");
        assert!(err.to_string().contains(text), "{shown}: {err}");
    }
}

/// The secrets in a request's headers stay secret: not in the builder's
/// `Debug`, and scrubbed from a refusal that echoes the request.
#[tokio::test]
async fn request_secrets_are_redacted() {
    let server = ServerBuilder::new()
        .process_request(|req| {
            let mut echo = String::from("you sent:\n");
            for (name, value) in &req.headers {
                echo.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
            }
            Some(Response::with_body(401, echo))
        })
        .serve("127.0.0.1:0", echo)
        .await
        .unwrap();
    let request = http::Request::get(format!("ws://{}/", server.local_addr()))
        .header("authorization", "Bearer hunter2-token")
        .header("x-api-key", "hunter3-key")
        .header("x-tenant-pin", "hunter4-pin")
        .body(())
        .unwrap();
    let builder = ClientBuilder::new(request).sensitive_header("X-Tenant-Pin");
    let shown = format!("{builder:?}");
    assert!(!shown.contains("hunter"), "{shown}");
    let err = within("connect", builder.connect()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HttpStatus);
    let body = err.response().unwrap().body_excerpt(4096);
    assert!(body.contains("you sent"), "the server echoed: {body}");
    for shown in [body, err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("hunter"), "{shown}");
    }
    server.shutdown().await;
}

// ---------------------------------------------------------------------------
// connect_on
// ---------------------------------------------------------------------------

/// A stream that counts the bytes written through it.
struct Counting<S> {
    inner: S,
    written: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written.fetch_add(n, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A compressible message of 256 KiB.
fn repetitive() -> Message {
    Message::text("the same words again and again; ".repeat(8192))
}

/// Over `tokio::io::duplex`, both ends in this process: messages both ways,
/// permessage-deflate negotiated and actually used (the compressible
/// message takes a fraction of its size on the wire), the request's path,
/// Host, headers and subprotocol at the server.
#[tokio::test]
async fn connect_on_a_duplex_with_deflate() {
    let (client_io, server_io) = tokio::io::duplex(16 * 1024);
    let server = tokio::spawn(async move {
        let mut ws = ServerBuilder::new()
            .subprotocols(["feed.v1"])
            .accept(server_io)
            .await
            .unwrap();
        let req = ws.request().unwrap();
        assert_eq!(req.target, "/feed?x=1");
        assert_eq!(req.header("host"), Some("feeds.internal:8080"));
        assert_eq!(req.header("x-custom"), Some("1"));
        assert!(ws.compression().is_some(), "deflate at the server");
        let mut received = 0;
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() {
                received += 1;
                ws.send(msg).await.unwrap();
            }
        }
        received
    });
    let written = Arc::new(AtomicUsize::new(0));
    let io = Counting {
        inner: client_io,
        written: written.clone(),
    };
    let request = http::Request::get("ws://feeds.internal:8080/feed?x=1")
        .header("x-custom", "1")
        .header("sec-websocket-protocol", "feed.v1")
        .body(())
        .unwrap();
    let mut ws = within("connect_on", ClientBuilder::new(request).connect_on(io))
        .await
        .unwrap();
    assert_eq!(ws.subprotocol(), Some("feed.v1"));
    assert!(ws.compression().is_some(), "deflate at the client");
    assert_echo(&mut ws, Message::text("hello")).await;
    let before = written.load(Ordering::Relaxed);
    let big = repetitive();
    let size = big.len();
    assert_echo(&mut ws, big).await;
    let sent = written.load(Ordering::Relaxed) - before;
    assert!(sent < size / 20, "{sent} bytes on the wire for {size}");
    assert_echo(&mut ws, Message::binary(vec![0u8; 10])).await;
    within("close", ws.close(tether::CloseCode::NORMAL, "bye"))
        .await
        .unwrap();
    assert_eq!(within("server", server).await.unwrap(), 3);
}

/// Over a Unix socket, with a tether server accepting on a `UnixListener`
/// (`ServerBuilder::accept`): messages both ways, deflate negotiated.
#[cfg(unix)]
#[tokio::test]
async fn connect_on_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("tether-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ws.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let builder = ServerBuilder::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let ws = builder.accept(stream).await.unwrap();
            let req = ws.request().unwrap();
            tx.send((
                req.target.clone(),
                req.header("host").map(String::from),
                ws.compression().is_some(),
            ))
            .unwrap();
            tokio::spawn(echo(ws));
        }
    });
    for (url, host) in [
        ("ws://localhost/unix?a=b", "localhost"),
        ("wss://api.example/unix?a=b", "api.example"),
    ] {
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut ws = within("connect_on", ClientBuilder::new(url).connect_on(stream))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(ws.compression().is_some(), "deflate at the client");
        assert_echo(&mut ws, Message::text("over a unix socket")).await;
        assert_echo(&mut ws, repetitive()).await;
        within("close", ws.close(tether::CloseCode::NORMAL, ""))
            .await
            .unwrap();
        let (target, seen_host, deflate) = within("report", seen.recv()).await.unwrap();
        assert_eq!(target, "/unix?a=b");
        assert_eq!(seen_host.as_deref(), Some(host));
        assert!(deflate, "deflate at the server");
    }
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A redirect is not followed: it is an HttpStatus error with the response
/// and its Location.
#[tokio::test]
async fn connect_on_returns_a_redirect() {
    let (client_io, server_io) = tokio::io::duplex(4096);
    let server = tokio::spawn(async move {
        ServerBuilder::new()
            .process_request(|_| Some(Response::new(302).header("location", "ws://other/next")))
            .accept(server_io)
            .await
    });
    let err = within(
        "connect_on",
        ClientBuilder::new("ws://h/old").connect_on(client_io),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HttpStatus, "{err}");
    assert_eq!(err.status(), Some(302));
    assert_eq!(
        err.response().unwrap().header_str("location"),
        Some("ws://other/next")
    );
    assert_eq!(err.url(), Some("ws://h/old"));
    assert_eq!(
        within("server", server).await.unwrap().unwrap_err().kind(),
        ErrorKind::HttpStatus
    );
}

/// The open timeout bounds the handshake on a stream that never answers;
/// an invalid setting fails before anything is written.
#[tokio::test(start_paused = true)]
async fn connect_on_timeout_and_config_errors() {
    let (client_io, mut server_io) = tokio::io::duplex(4096);
    let err = ClientBuilder::new("ws://h/")
        .open_timeout(Some(Duration::from_secs(3)))
        .connect_on(client_io)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // The request was written, the answer never came.
    let mut buf = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut server_io, &mut buf)
        .await
        .unwrap();
    assert!(buf[..n].starts_with(b"GET / HTTP/1.1\r\nHost: h\r\n"));

    let (client_io, mut server_io) = tokio::io::duplex(4096);
    let err = ClientBuilder::new("ws://h/")
        .subprotocol("not a token")
        .connect_on(client_io)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    // The client's end was dropped unwritten: EOF at once.
    let n = tokio::io::AsyncReadExt::read(&mut server_io, &mut buf)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let (client_io, _server_io) = tokio::io::duplex(4096);
    let err = ClientBuilder::new("http://h/")
        .connect_on(client_io)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidUrl, "{err}");
}
