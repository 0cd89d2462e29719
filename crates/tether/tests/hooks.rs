//! The server's hooks: `process_request` sees every HTTP request (a health
//! check on the WebSocket port, an async authentication), a plain request
//! without a hook gets 426, `select_subprotocol` chooses among the offers,
//! `process_response` amends or replaces the 101, and the hooks run in the
//! documented order. Exact HTTP is checked over raw TCP.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{header_value, raw_client_of, upgrade_request, within, RawPeer, KEY};
use tether::http::HeaderValue;
use tether::{ClientBuilder, ErrorKind, Message, Response, Server, ServerBuilder, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn echo(mut ws: WebSocket) {
    while let Some(Ok(msg)) = ws.recv().await {
        if msg.is_data() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

async fn serve(builder: ServerBuilder) -> Server {
    builder.serve("127.0.0.1:0", echo).await.unwrap()
}

fn url(s: &Server, path: &str) -> String {
    format!("ws://{}{path}", s.local_addr())
}

/// An HTTP response read off the wire until the server closed.
#[derive(Debug)]
struct Raw {
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {:?}", self.head))
    }

    fn header(&self, name: &str) -> Option<String> {
        header_value(&self.head, name)
    }

    fn body(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` as it is and reads the answer until the server closes.
async fn http(addr: SocketAddr, request: &str) -> Raw {
    let mut peer = RawPeer::connect(addr).await;
    peer.label = format!("{:?}", request.lines().next().unwrap_or_default());
    peer.write(request.as_bytes()).await;
    let all = peer.read_to_end().await;
    split(&all)
}

fn split(all: &[u8]) -> Raw {
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(all)));
    Raw {
        head: String::from_utf8_lossy(&all[..at + 4]).into_owned(),
        body: all[at + 4..].to_vec(),
    }
}

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

fn health_check() -> ServerBuilder {
    ServerBuilder::new().process_request(|req| match req.path() {
        "/health" => Some(Response::with_body(200, "ok\n")),
        _ => None,
    })
}

fn assert_healthy(r: &Raw) {
    assert_eq!(r.status(), 200, "{r:?}");
    assert!(r.head.starts_with("HTTP/1.1 200 OK\r\n"), "{r:?}");
    assert_eq!(r.header("content-length").as_deref(), Some("3"), "{r:?}");
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{r:?}");
    assert_eq!(r.body(), "ok\n");
}

#[tokio::test]
async fn health_check_answers_200_on_the_websocket_port() {
    let server = serve(health_check()).await;
    let addr = server.local_addr();
    // No WebSocket connected yet.
    assert_healthy(&http(addr, HEALTH).await);
    // With one connected, and the WebSocket works on the same port.
    let mut ws = within("connect", tether::connect(&url(&server, "/")))
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(
        within("echo", ws.recv()).await.unwrap().unwrap(),
        Message::text("hi")
    );
    assert_healthy(&http(addr, HEALTH).await);
    // A HEAD request gets the head alone, with the length of the body.
    let head = http(addr, &HEALTH.replacen("GET", "HEAD", 1)).await;
    assert_eq!(head.status(), 200, "{head:?}");
    assert_eq!(head.header("content-length").as_deref(), Some("3"));
    assert!(head.body.is_empty(), "{head:?}");
    // The connection is still fine.
    ws.send(Message::text("again")).await.unwrap();
    assert_eq!(
        within("echo", ws.recv()).await.unwrap().unwrap(),
        Message::text("again")
    );
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn health_check_answers_at_max_connections() {
    let server = serve(health_check().max_connections(Some(1))).await;
    let ws = within("connect", tether::connect(&url(&server, "/")))
        .await
        .unwrap();
    // The server is full: a WebSocket is refused with 503...
    let e = within("connect", tether::connect(&url(&server, "/")))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    // ...and the health check still answers.
    assert_healthy(&http(server.local_addr(), HEALTH).await);
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn async_hook_awaits_then_refuses_with_401_and_a_body() {
    // The hook waits on a gate the test opens, then looks the token up.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let tokens = Arc::new(tokio::sync::Mutex::new(vec!["Bearer good".to_string()]));
    let (g, t) = (gate.clone(), tokens.clone());
    let server = serve(ServerBuilder::new().process_request_async(move |req| {
        let token = req.header("authorization").map(str::to_owned);
        let (gate, tokens) = (g.clone(), t.clone());
        async move {
            gate.acquire().await.expect("open").forget();
            let known = tokens
                .lock()
                .await
                .iter()
                .any(|t| Some(t) == token.as_ref());
            (!known).then(|| {
                Response::with_body(401, "unknown token\n").header("www-authenticate", "Bearer")
            })
        }
    }))
    .await;
    let mut refused = tokio::spawn(ClientBuilder::new(url(&server, "/")).connect());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !refused.is_finished(),
        "the handshake waits for the hook's future"
    );
    gate.add_permits(1);
    let e = within("refused", &mut refused).await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HttpStatus, "{e}");
    assert_eq!(e.status(), Some(401));
    let resp = e.response().unwrap();
    assert_eq!(resp.header_str("www-authenticate"), Some("Bearer"));
    assert_eq!(&resp.body[..], b"unknown token\n");

    gate.add_permits(1);
    let ok = ClientBuilder::new(url(&server, "/"))
        .header("authorization", "Bearer good")
        .unwrap();
    let ws = within("accepted", ok.connect())
        .await
        .expect("a known token");
    drop(ws);
    server.shutdown().await;
}

#[tokio::test]
async fn a_hook_that_never_answers_is_cut_by_the_open_timeout() {
    let (mut peer, task) = raw_client_of(|tcp| async move {
        ServerBuilder::new()
            .open_timeout(Some(Duration::from_millis(300)))
            .process_request_async(|_| std::future::pending())
            .accept(tcp)
            .await
            .map(|_| ())
    })
    .await;
    peer.write(upgrade_request("").as_bytes()).await;
    let e = support::join("hook timeout", task).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(peer.read_to_end().await.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn plain_get_is_426_with_or_without_a_hook() {
    let bare = serve(ServerBuilder::new()).await;
    let hooked = serve(health_check()).await;
    for server in [&bare, &hooked] {
        for request in [
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        ] {
            let r = http(server.local_addr(), request).await;
            assert!(
                r.head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
                "{r:?}"
            );
            assert_eq!(r.header("upgrade").as_deref(), Some("websocket"), "{r:?}");
            assert_eq!(
                r.header("sec-websocket-version").as_deref(),
                Some("13"),
                "{r:?}"
            );
            assert_eq!(r.header("connection").as_deref(), Some("close"));
            assert!(r.body().contains("This is a WebSocket endpoint"), "{r:?}");
            assert_eq!(
                r.header("content-length"),
                Some(r.body.len().to_string()),
                "{r:?}"
            );
        }
    }
    // A broken upgrade keeps its 400: a key that is not 16 bytes.
    let r = http(
        bare.local_addr(),
        &upgrade_request("").replacen(KEY, "c2hvcnQ=", 1),
    )
    .await;
    assert_eq!(r.status(), 400, "{r:?}");
    // And accept() says which it was.
    let (mut peer, task) =
        raw_client_of(|tcp| async move { ServerBuilder::new().accept(tcp).await.map(|_| ()) })
            .await;
    peer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let e = support::join("426", task).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Handshake, "{e}");
    bare.shutdown().await;
    hooked.shutdown().await;
}

#[tokio::test]
async fn process_response_adds_a_set_cookie_to_the_101() {
    let server = serve(ServerBuilder::new().process_response(|req, resp| {
        let visitor = req.header("x-visitor").unwrap_or("new").to_string();
        resp.headers.append(
            "set-cookie",
            HeaderValue::from_str(&format!("visitor={visitor}; HttpOnly")).unwrap(),
        );
    }))
    .await;
    // On the wire: the 101 carries it, and the upgrade completes.
    let mut peer = RawPeer::connect(server.local_addr()).await;
    peer.write(upgrade_request("X-Visitor: 7\r\n").as_bytes())
        .await;
    let head = peer.read_head().await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        header_value(&head, "set-cookie").as_deref(),
        Some("visitor=7; HttpOnly"),
        "{head}"
    );
    assert_eq!(
        header_value(&head, "sec-websocket-accept"),
        Some(tether::tether_proto::handshake::accept_key(KEY))
    );
    // A tether client accepts such a 101, and sees the cookie.
    let (mut ws, resp) = within(
        "connect",
        ClientBuilder::new(url(&server, "/")).connect_with_response(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header_str("set-cookie"), Some("visitor=new; HttpOnly"));
    ws.send(Message::text("cookie")).await.unwrap();
    assert_eq!(
        within("echo", ws.recv()).await.unwrap().unwrap(),
        Message::text("cookie")
    );
    drop((ws, peer));
    server.shutdown().await;
}

#[tokio::test]
async fn process_response_can_refuse_with_403() {
    let (peer_task, server_task) = {
        let (mut peer, task) = raw_client_of(|tcp| async move {
            ServerBuilder::new()
                .process_response(|req, resp| {
                    if req.path() == "/admin" {
                        *resp = Response::with_body(403, "not for you\n");
                    }
                })
                .accept(tcp)
                .await
                .map(|_| ())
        })
        .await;
        peer.write(
            upgrade_request("")
                .replacen("GET / ", "GET /admin ", 1)
                .as_bytes(),
        )
        .await;
        (split(&peer.read_to_end().await), task)
    };
    let r = peer_task;
    assert!(r.head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{r:?}");
    assert_eq!(r.body(), "not for you\n");
    assert_eq!(r.header("content-length").as_deref(), Some("12"));
    let e = support::join("403", server_task).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HttpStatus, "{e}");
    assert_eq!(e.status(), Some(403));

    // A tether client sees the 403 with its body.
    let server = serve(ServerBuilder::new().process_response(|_, resp| {
        resp.status = 403;
        resp.reason = "Forbidden".into();
        resp.body = "closed today\n".into();
    }))
    .await;
    let e = within("connect", tether::connect(&url(&server, "/")))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert_eq!(&e.response().unwrap().body[..], b"closed today\n");
    server.shutdown().await;
}

#[tokio::test]
async fn hooks_that_break_the_handshake_get_500() {
    let cases: Vec<(&str, ServerBuilder)> = vec![
        (
            "process_response removes the accept",
            ServerBuilder::new().process_response(|_, resp| {
                resp.headers.remove("sec-websocket-accept");
            }),
        ),
        (
            "process_response gives the 101 a body",
            ServerBuilder::new().process_response(|_, resp| resp.body = "x".into()),
        ),
        (
            "select_subprotocol chooses one not offered",
            ServerBuilder::new().select_subprotocol(|_, _| Some("v9".into())),
        ),
        (
            "process_request answers 101",
            ServerBuilder::new().process_request(|_| Some(Response::new(101))),
        ),
    ];
    for (what, builder) in cases {
        let server = serve(builder).await;
        let client = ClientBuilder::new(url(&server, "/")).subprotocol("v1");
        let e = within(what, client.connect()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HttpStatus, "{what}: {e}");
        assert_eq!(e.status(), Some(500), "{what}: {e}");
        server.shutdown().await;
    }
}

#[tokio::test]
async fn select_subprotocol_chooses_the_last_offer() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let server = ServerBuilder::new()
        // Ignored once select_subprotocol is set.
        .subprotocols(["v1"])
        .select_subprotocol(move |_req, offers| {
            s.lock().unwrap().push(offers.to_vec());
            offers.last().cloned()
        })
        .serve("127.0.0.1:0", |mut ws: WebSocket| async move {
            let chosen = ws.subprotocol().unwrap_or("none").to_string();
            let _ = ws.send(Message::text(chosen)).await;
            echo(ws).await;
        })
        .await
        .unwrap();
    let mut ws = within(
        "connect",
        ClientBuilder::new(url(&server, "/"))
            .subprotocol("v1")
            .subprotocol("v2")
            .subprotocol("v3")
            .connect(),
    )
    .await
    .unwrap();
    assert_eq!(ws.subprotocol(), Some("v3"));
    assert_eq!(
        within("server's view", ws.recv()).await.unwrap().unwrap(),
        Message::text("v3")
    );
    // No offer: the hook is not asked, and nothing is chosen.
    let mut plain = within("connect", tether::connect(&url(&server, "/")))
        .await
        .unwrap();
    assert_eq!(plain.subprotocol(), None);
    assert_eq!(
        within("server's view", plain.recv())
            .await
            .unwrap()
            .unwrap(),
        Message::text("none")
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec!["v1".to_string(), "v2".into(), "v3".into()]]
    );
    drop((ws, plain));
    server.shutdown().await;
}

/// Records which hook ran, in order.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, what: impl Into<String>) {
        self.0.lock().unwrap().push(what.into());
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test]
async fn hooks_run_in_the_documented_order() {
    let log = Log::default();
    let (a, b, c, d) = (log.clone(), log.clone(), log.clone(), log.clone());
    let server = ServerBuilder::new()
        .max_connections(Some(1))
        .process_request(move |req| {
            a.push(format!("process_request {}", req.path()));
            None
        })
        .select_subprotocol(move |_, offers| {
            b.push("select_subprotocol");
            offers.first().cloned()
        })
        .process_response(move |_, resp| {
            c.push(format!("process_response {}", resp.status));
        })
        .serve("127.0.0.1:0", move |ws: WebSocket| {
            d.push("handler");
            echo(ws)
        })
        .await
        .unwrap();
    let client = || ClientBuilder::new(url(&server, "/ws")).subprotocol("v1");

    let ws = within("connect", client().connect()).await.unwrap();
    // The handler runs on its own task: wait for it.
    within("handler", async {
        while !log.0.lock().unwrap().iter().any(|e| e == "handler") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        log.take(),
        [
            "process_request /ws",
            "select_subprotocol",
            "process_response 101",
            "handler"
        ]
    );

    // Beyond max_connections: the request hook ran, nothing after it.
    let e = within("full", client().connect()).await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    assert_eq!(log.take(), ["process_request /ws"]);

    // Not an upgrade: the request hook, then 426.
    let r = http(server.local_addr(), HEALTH).await;
    assert_eq!(r.status(), 426, "{r:?}");
    assert_eq!(log.take(), ["process_request /health"]);

    // A request that cannot be read reaches no hook: 505 for HTTP/1.0.
    let r = http(
        server.local_addr(),
        "GET /old HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert_eq!(r.status(), 505, "{r:?}");
    assert!(log.take().is_empty());
    drop(ws);
    server.shutdown().await;
}

/// A client that sends a body the hook does not read gets the response, and
/// no reset: the server reads the rest away before closing (a reset can
/// destroy the response on the client's side before it is read, RFC 9112
/// §9.6). On Linux the visible sign is that the client's later writes
/// succeed instead of failing with "broken pipe" or "connection reset".
#[tokio::test]
async fn a_refused_request_with_a_body_is_read_away_before_closing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    let server = serve(ServerBuilder::new().process_request(move |_| {
        n.fetch_add(1, Ordering::SeqCst);
        Some(Response::with_body(413, "too much\n"))
    }))
    .await;
    let chunk = vec![b'x'; 16 * 1024];
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
        3 * chunk.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The server answers before the body arrives; the body comes after,
    // in pieces, as from a slow uploader.
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tcp.write_all(&chunk)
            .await
            .unwrap_or_else(|e| panic!("body piece {i}: {e}"));
    }
    tcp.shutdown().await.unwrap();
    let mut all = Vec::new();
    within("read", tcp.read_to_end(&mut all))
        .await
        .expect("no reset: the response arrives whole");
    let r = split(&all);
    assert_eq!(r.status(), 413, "{r:?}");
    assert_eq!(r.body(), "too much\n");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}
