//! Credentials never appear in logs (at any level), errors, or `Debug`
//! output; credentials in the URL and an explicit Authorization header never
//! produce two Authorization headers. A server that echoes the whole request
//! into its refusal's body leaks none of the secrets sent (issue #9, item 5).

use std::io::Write;
use std::sync::{Arc, Mutex};
use tether::reconnect::ReconnectPolicy;
use tether::ClientBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Answers every request with 401, a Set-Cookie and a body; returns the
/// raw requests it received.
async fn refusing_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let r2 = requests.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = tcp.read(&mut buf).await.unwrap();
            r2.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let body = "token rejected";
            let resp = format!(
                "HTTP/1.1 401 Unauthorized\r\nSet-Cookie: sid=hunter6\r\nWWW-Authenticate: Bearer\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(resp.as_bytes()).await;
        }
    });
    (addr, requests)
}

#[tokio::test(flavor = "current_thread")]
async fn no_credentials_in_logs_errors_or_debug_at_trace_level() {
    let capture = Capture::default();
    let w = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (addr, requests) = refusing_server().await;
    let url = format!("ws://alice:hunter2@{addr}/feed?access_token=hunter3&room=1");
    let builder = ClientBuilder::new(url)
        .header("Cookie", "sid=hunter5")
        .unwrap()
        .header("X-Trace", "visible")
        .unwrap();
    let builder_debug = format!("{builder:?}");
    let mut conns = builder.reconnecting(ReconnectPolicy::default());
    let err = conns.next().await.unwrap().unwrap_err();
    assert_eq!(err.status(), Some(401));
    // The causes too (`Display` shows one level), as the CLI prints them.
    let mut causes = String::new();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        causes += &format!(": {c}");
        cause = c.source();
    }
    let shown = format!(
        "{err}{causes}\n{err:?}\n{builder_debug}\n{:?}",
        err.response()
    );
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("connecting"),
        "the attempt was logged: {logs}"
    );
    assert!(logs.contains("401"), "the refusal was logged: {logs}");
    for secret in [
        "hunter2",
        "hunter3",
        "hunter5",
        "hunter6",
        "YWxpY2U6aHVudGVyMg",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
        assert!(
            !shown.contains(secret),
            "{secret} leaked into an error or Debug:\n{shown}"
        );
    }
    assert!(shown.contains("refused the credentials"), "{shown}");
    // The request really carried the credentials, once.
    let req = requests.lock().unwrap()[0].to_ascii_lowercase();
    assert_eq!(req.matches("authorization:").count(), 1, "{req}");
    assert!(
        req.contains("authorization: basic ywxpy2u6ahvudgvymg=="),
        "{req}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn explicit_authorization_wins_over_url_credentials() {
    let (addr, requests) = refusing_server().await;
    let err = ClientBuilder::new(format!("ws://alice:hunter2@{addr}/"))
        .header("Authorization", "Bearer hunter4")
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter"));
    let req = requests.lock().unwrap()[0].to_ascii_lowercase();
    assert_eq!(req.matches("authorization:").count(), 1, "{req}");
    assert!(req.contains("authorization: bearer hunter4"), "{req}");
}

/// Secrets sent by the echo test, in every form the request carries them.
const SECRETS: [&str; 7] = [
    "k-secret",
    "t-secret",
    "p-secret",
    "pin-secret",
    // "user:p-secret", as the Authorization header carries it.
    "dXNlcjpwLXNlY3JldA",
    "user:p-secret",
    "Basic dXNl",
];

/// Answers each request with `statuses[i]` (the last one repeats), a body
/// that echoes the whole request head (request line and every header), and
/// an `X-Echo` header with the request line.
async fn echoing_server(statuses: &'static [u16]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut i = 0;
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let status = statuses[i.min(statuses.len() - 1)];
            i += 1;
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let first = head.lines().next().unwrap_or("").to_string();
                let body = format!("you sent:\n{head}");
                let resp = format!(
                    "HTTP/1.1 {status} Echo\r\nContent-Type: text/plain\r\nRetry-After: 0\r\n\
                     X-Echo: {first}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn echo_builder(addr: std::net::SocketAddr) -> ClientBuilder {
    ClientBuilder::new(format!(
        "ws://user:p-secret@{addr}/feed?token=t-secret&room=lobby"
    ))
    .no_proxy()
    .header("X-Api-Key", "k-secret")
    .unwrap()
    .header("X-Tenant-Pin", "pin-secret")
    .unwrap()
    .sensitive_header("x-tenant-pin")
    .header("X-Trace", "visible-trace")
    .unwrap()
}

/// `e`, its `Debug`, and every cause in its chain.
fn everything_shown(e: &tether::Error) -> String {
    let mut text = format!("{e}\n{e:?}\n");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text += &format!("{c}\n{c:?}\n");
        cause = c.source();
    }
    text
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{secret} leaked into {what}:\n{text}"
        );
    }
}

/// Every level, from TRACE to ERROR: a 503 (retried, so a `Retry` event and
/// a WARN log carry the echoed body) then a 401, through `reconnecting()`,
/// `session()` and `connect()`.
#[tokio::test(flavor = "current_thread")]
async fn an_echoed_request_leaks_no_secret_at_any_level() {
    use tether::reconnect::{Backoff, Event, SessionState};
    use tracing::Level;
    for level in [
        Level::TRACE,
        Level::DEBUG,
        Level::INFO,
        Level::WARN,
        Level::ERROR,
    ] {
        let capture = Capture::default();
        let w = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let sink = events.clone();
        let policy = ReconnectPolicy::default()
            .backoff(Backoff {
                initial_max: std::time::Duration::from_millis(5),
                min: std::time::Duration::from_millis(5),
                max: std::time::Duration::from_millis(10),
                ..Backoff::default()
            })
            .on_event(move |e| sink.lock().unwrap().push(e.clone()));

        let addr = echoing_server(&[503, 401]).await;
        let mut conns = echo_builder(addr).reconnecting(policy.clone());
        let err = conns.next().await.unwrap().unwrap_err();
        assert_eq!(err.status(), Some(401), "{err}");
        let mut shown = everything_shown(&err);

        // The kept response, whole: body (all 4 KiB kept), reason, headers.
        let r = err.response().unwrap();
        let body = String::from_utf8_lossy(&r.body).into_owned();
        shown += &format!("{body}\n{}\n{r:?}\n", r.reason);
        for (name, value) in &r.headers {
            shown += &format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes()));
        }
        // The non-secret parts of the echo stay visible.
        for visible in [
            "GET /feed?token=<redacted>&room=lobby HTTP/1.1",
            "x-trace: visible-trace",
            "x-api-key: <redacted>",
            "x-tenant-pin: <redacted>",
            "authorization: <redacted>",
        ] {
            assert!(
                body.to_ascii_lowercase()
                    .contains(&visible.to_ascii_lowercase()),
                "{visible} is shown: {body}"
            );
        }
        assert!(err.to_string().contains("room=lobby"), "{err}");
        assert!(
            r.header_str("x-echo").unwrap().contains("room=lobby"),
            "{r:?}"
        );

        let addr = echoing_server(&[503, 401]).await;
        let session = echo_builder(addr).session(policy.clone()).start();
        let mut watch = session.watch();
        let state = watch
            .wait_for(|s| matches!(s, SessionState::Stopped { .. }))
            .await
            .unwrap()
            .clone();
        let SessionState::Stopped { error: Some(e) } = state else {
            panic!("{state:?}")
        };
        assert_eq!(e.status(), Some(401), "{e}");
        shown += &everything_shown(&e);

        let addr = echoing_server(&[401]).await;
        let e = echo_builder(addr).connect().await.unwrap_err();
        assert_eq!(e.status(), Some(401), "{e}");
        shown += &everything_shown(&e);
        assert_no_secret("an error", &shown);

        let events = events.lock().unwrap().clone();
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Retry {
                    status: Some(503),
                    ..
                }
            )),
            "{events:?}"
        );
        let events = format!("{events:?}");
        assert!(events.contains("room=lobby"), "{events}");
        assert_no_secret("the reconnect events", &events);

        let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        // ERROR "not reconnecting" (and WARN "retrying") carry the body.
        assert!(logs.contains("you sent"), "{level}: {logs}");
        assert_no_secret(&format!("the logs at {level}"), &logs);
    }
}

/// A proxy that echoes the CONNECT into its refusal shows neither the
/// proxy's password nor its Basic token.
#[tokio::test]
async fn a_proxy_echoing_the_connect_leaks_no_credential() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        let body = String::from_utf8_lossy(&buf[..n]).into_owned();
        let resp = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(resp.as_bytes()).await;
    });
    let e = ClientBuilder::new("ws://example.invalid/")
        .proxy(format!("http://puser:proxy-secret@{addr}"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    let shown = format!("{}{:?}", everything_shown(&e), e.response());
    assert!(shown.contains("CONNECT example.invalid:80"), "{shown}");
    for secret in ["proxy-secret", "cHVzZXI6cHJveHktc2VjcmV0"] {
        assert!(!shown.contains(secret), "{secret}: {shown}");
    }
}
