//! Credentials never appear in logs (at any level), errors, or `Debug`
//! output; credentials in the URL and an explicit Authorization header never
//! produce two Authorization headers.

use futures_util::StreamExt;
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
