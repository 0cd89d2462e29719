//! Header injection (issue #9, item 4): a value with a control character in
//! the `Origin`, a subprotocol, the `User-Agent` or the proxy's credentials
//! is refused with `ErrorKind::Config` before anything is sent, by
//! `connect()`, `reconnecting()` and `session()`; a raw TCP listener
//! records exactly what reached it (nothing). A server answers 400 to a
//! request with two `Host` headers or an empty one (RFC 9112 §3.2).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether::reconnect::{Event, ReconnectPolicy, SessionState};
use tether::{ClientBuilder, ErrorKind, ServerBuilder, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a raw listener received: one entry per TCP connection, with every
/// byte sent on it until the peer closed it (or 2 s of silence).
#[derive(Clone, Default)]
struct Wire(Arc<Mutex<Vec<Vec<u8>>>>);

impl Wire {
    fn connections(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

/// A listener that records every connection and never answers.
async fn raw_listener() -> (SocketAddr, Wire) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let wire = Wire::default();
    let w = wire.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let slot = {
                let mut all = w.0.lock().unwrap();
                all.push(Vec::new());
                all.len() - 1
            };
            let w = w.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    w.0.lock().unwrap()[slot].extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (addr, wire)
}

/// The invalid settings, each with what the error must name.
fn invalid_builders(url: &str) -> Vec<(&'static str, ClientBuilder, &'static str)> {
    let b = || ClientBuilder::new(url).no_proxy();
    vec![
        (
            "origin CRLF",
            b().origin("https://a.example\r\nX-Injected: 1"),
            "Origin",
        ),
        (
            "origin LF",
            b().origin("https://a.example\nX-Injected: 1"),
            "Origin",
        ),
        ("origin NUL", b().origin("https://a\0.example"), "Origin"),
        (
            "subprotocol CRLF",
            b().subprotocol("chat\r\nX-Injected: 1"),
            "subprotocol",
        ),
        (
            "subprotocol space",
            b().subprotocol("chat v1"),
            "subprotocol",
        ),
        ("subprotocol comma", b().subprotocol("a,b"), "subprotocol"),
        (
            "subprotocol twice",
            b().subprotocol("chat").subprotocol("chat"),
            "twice",
        ),
        (
            "user agent CRLF",
            b().user_agent(Some("agent\r\nX-Injected: 1".into())),
            "User-Agent",
        ),
        (
            "URL password CRLF",
            ClientBuilder::new(url.replace("ws://", "ws://u:p%0D%0AX-Injected:%201@")).no_proxy(),
            "control character",
        ),
    ]
}

#[tokio::test]
async fn connect_sends_nothing_for_an_invalid_value() {
    let (addr, wire) = raw_listener().await;
    let url = format!("ws://{addr}/chat");
    for (case, builder, names) in invalid_builders(&url) {
        let e = builder.connect().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{case}: {e}");
        assert!(e.to_string().contains(names), "{case}: {e}");
        assert_ne!(e.kind(), ErrorKind::Connect);
    }
    // An explicit proxy with a line break in its password: refused before
    // the proxy is reached.
    let (proxy_addr, proxy_wire) = raw_listener().await;
    let e = ClientBuilder::new(&url)
        .proxy(format!("http://u:p%0D%0AX-Injected:%201@{proxy_addr}"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.is_proxy());
    assert!(!e.to_string().contains("Injected"), "{e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        wire.connections(),
        Vec::<String>::new(),
        "nothing reached the server"
    );
    assert_eq!(
        proxy_wire.connections(),
        Vec::<String>::new(),
        "nor the proxy"
    );

    // The control: a valid request reaches the listener, once, as it was set.
    let _ = ClientBuilder::new(&url)
        .no_proxy()
        .origin("https://a.example")
        .subprotocol("chat.v1")
        .open_timeout(Some(Duration::from_millis(300)))
        .connect()
        .await;
    let got = wire.connections();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("GET /chat HTTP/1.1\r\n"), "{got:?}");
    assert!(
        got[0].contains("\r\nOrigin: https://a.example\r\n"),
        "{got:?}"
    );
    assert!(
        got[0].contains("\r\nSec-WebSocket-Protocol: chat.v1\r\n"),
        "{got:?}"
    );
    assert!(!got[0].contains("X-Injected"));
}

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<Event>>>);

fn policy(events: &Events) -> ReconnectPolicy {
    let sink = events.clone();
    ReconnectPolicy::default().on_event(move |e| sink.0.lock().unwrap().push(e.clone()))
}

#[tokio::test]
async fn reconnecting_and_session_stop_before_any_attempt() {
    let (addr, wire) = raw_listener().await;
    let url = format!("ws://{addr}/chat");
    for (case, builder, _) in invalid_builders(&url) {
        let events = Events::default();
        let mut c = builder.clone().reconnecting(policy(&events));
        let e = c.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{case}: {e}");
        assert!(c.next().await.is_none(), "{case}");
        assert_eq!(c.attempts(), 0, "{case}");
        let seen = events.0.lock().unwrap().clone();
        assert!(
            matches!(seen.as_slice(), [Event::Stopped { status: None, .. }]),
            "{case}: {seen:?}"
        );

        let events = Events::default();
        let session = builder.session(policy(&events)).start();
        let mut watch = session.watch();
        let state = tokio::time::timeout(
            Duration::from_secs(5),
            watch.wait_for(|s| matches!(s, SessionState::Stopped { .. })),
        )
        .await
        .expect("the session stops")
        .unwrap()
        .clone();
        match state {
            SessionState::Stopped { error: Some(e) } => {
                assert_eq!(e.kind(), ErrorKind::Config, "{case}: {e}")
            }
            other => panic!("{case}: {other:?}"),
        }
        let seen = events.0.lock().unwrap().clone();
        assert!(
            !seen.iter().any(|e| matches!(e, Event::Connecting { .. })),
            "{case}: {seen:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(wire.connections(), Vec::<String>::new());
}

#[test]
fn validate_reports_at_once_and_accepts_tab_and_obs_text() {
    let b = ClientBuilder::new("ws://h/").origin("https://a.example\r\nX-Injected: 1");
    let e = b.validate().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    // The value is shown escaped: no line break reaches a terminal or a log.
    assert!(!e.to_string().contains('\n'), "{e}");
    assert!(e.to_string().contains(r"\r\nX-Injected: 1"), "{e}");
    ClientBuilder::new("ws://h/")
        .origin("https://caf\u{e9}.example")
        .user_agent(Some("agent\t1".into()))
        .subprotocol("v1.chat+json")
        .validate()
        .unwrap();
}

/// Sends `request` to a tether server and returns its answer's status line.
async fn status_for(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn server_answers_400_to_two_hosts_or_an_empty_one() {
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", |_ws: WebSocket| async {})
        .await
        .unwrap();
    let addr = server.local_addr();
    let request = |hosts: &str| {
        format!(
            "GET / HTTP/1.1\r\n{hosts}Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    for hosts in [
        "Host: a.example\r\nHost: b.example\r\n",
        "Host: a.example\r\nHost: a.example\r\n",
        "Host:\r\n",
        "Host:  \r\n",
    ] {
        let status = status_for(addr, &request(hosts)).await;
        assert!(status.starts_with("HTTP/1.1 400 "), "{hosts:?}: {status}");
    }
    // The control: one Host is upgraded.
    let status = status_for(addr, &request("Host: a.example\r\n")).await;
    assert!(status.starts_with("HTTP/1.1 101 "), "{status}");
    server.shutdown().await;
}
