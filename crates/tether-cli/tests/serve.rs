//! `tether serve` that talks (issue #12, item 3), with real processes:
//! `--print`, `--stdin`, `--static`, `--page`, `--health`, `--origin` and
//! `--max-connections`, checked with tether's client and raw HTTP over TCP.
//! The browser side of `--page` is `serve_page.rs`.

mod support;

use futures_util::StreamExt;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::{kill, tether, Live, TempDir, BIN, PATIENCE};
use tether::{ClientBuilder, Message, WebSocket};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A `tether serve --events json ... 127.0.0.1:0` process.
struct Server {
    live: Live,
    /// `ws://127.0.0.1:PORT/`.
    url: String,
    /// `127.0.0.1:PORT`.
    addr: String,
}

impl Server {
    async fn start(args: &[&str], stdin: Stdio) -> Server {
        // A client the test still holds when it stops the server does not
        // answer the server's close: do not wait 10 s for it.
        let mut all = vec!["serve", "--events", "json", "--close-timeout", "1"];
        all.extend_from_slice(args);
        all.push("127.0.0.1:0");
        let mut live = Live::start(&all, stdin);
        let listening = live.wait_for("listening").await;
        let url = listening["url"].as_str().unwrap().to_string();
        let addr = url
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .to_string();
        Server { live, url, addr }
    }

    /// The next event named `name`.
    async fn next(&mut self, name: &str) -> Value {
        self.live.wait_for(name).await
    }

    /// Stops it as Ctrl-C would; returns its standard error.
    async fn stop(mut self) -> String {
        kill(self.live.pid(), "INT");
        let (code, err) = self.live.finish().await;
        assert_eq!(code, 0, "{err}");
        err
    }
}

async fn client(url: &str) -> WebSocket {
    ClientBuilder::new(url).connect().await.unwrap()
}

/// The client's own address: what the server prints as its peer.
fn local(ws: &WebSocket) -> String {
    ws.get_ref().tcp().local_addr().unwrap().to_string()
}

/// The next data message on `ws`, within [`PATIENCE`].
async fn next_data(ws: &mut WebSocket) -> Message {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_data() => return m,
                Some(Ok(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a message in time")
}

/// A plain HTTP answer.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Sends `method target` (as written: no normalisation) with `extra`
/// header lines; reads the answer to its end (the server closes after any
/// answer but a 101).
async fn http(addr: &str, method: &str, target: &str, extra: &str) -> Reply {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut all))
        .await
        .expect("the answer in time")
        .unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {:?}", String::from_utf8_lossy(&all)));
    let head = String::from_utf8(all[..split].to_vec()).unwrap();
    let status = head[9..12].parse().unwrap();
    Reply {
        status,
        head,
        body: all[split + 4..].to_vec(),
    }
}

async fn get(addr: &str, target: &str) -> Reply {
    http(addr, "GET", target, "").await
}

#[tokio::test]
async fn print_shows_each_message_with_its_client_and_the_echo_is_unchanged() {
    let mut server = Server::start(&["--echo", "--print"], Stdio::null()).await;
    let mut one = client(&server.url).await;
    let open = server.next("open").await;
    assert_eq!(open["peer"], local(&one));
    assert_eq!(open["path"], "/");
    let mut two = client(&server.url).await;
    let open = server.next("open").await;
    assert_eq!(
        (&open["peer"], &open["id"]),
        (&local(&two).into(), &1.into())
    );

    one.send(Message::text("from one")).await.unwrap();
    assert_eq!(next_data(&mut one).await, Message::text("from one"));
    let shown = server.next("message").await;
    assert_eq!(shown["peer"], local(&one));
    assert_eq!(
        (&shown["kind"], &shown["data"]),
        (&"text".into(), &"from one".into())
    );

    two.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_data(&mut two).await, Message::binary(vec![1, 2, 3]));
    let shown = server.next("message").await;
    assert_eq!(shown["peer"], local(&two));
    assert_eq!(
        (&shown["kind"], &shown["encoding"], &shown["data"]),
        (&"binary".into(), &"base64".into(), &"AQID".into())
    );

    // A clean close: its code and reason; a dropped connection: 1006.
    let (one_addr, two_addr) = (local(&one), local(&two));
    one.close(4001u16, "bye").await.unwrap();
    let closed = server.next("closed").await;
    assert_eq!(closed["peer"], one_addr);
    assert_eq!(
        (&closed["code"], &closed["reason"]),
        (&4001.into(), &"bye".into())
    );
    drop(two);
    let closed = server.next("closed").await;
    assert_eq!(
        (&closed["peer"], &closed["code"]),
        (&two_addr.into(), &1006.into())
    );
    server.stop().await;
}

#[tokio::test]
async fn print_for_people_prefixes_the_address_and_broadcast_still_relays() {
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--broadcast", "--print", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = out.next_line().await.unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_string();
    let mut a = client(&url).await;
    let mut b = client(&url).await;
    // Both are in the hub once a broadcast reaches both.
    a.send(Message::text("hello room")).await.unwrap();
    assert_eq!(next_data(&mut a).await, Message::text("hello room"));
    assert_eq!(next_data(&mut b).await, Message::text("hello room"));
    let line = tokio::time::timeout(PATIENCE, out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(line, format!("{} < hello room", local(&a)));
    // A line break cannot forge a line of another client.
    b.send(Message::text("hi\n6.6.6.6:6 < forged\u{1b}[2J"))
        .await
        .unwrap();
    next_data(&mut a).await;
    let line = tokio::time::timeout(PATIENCE, out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        line,
        format!("{} < hi\\n6.6.6.6:6 < forged\\u{{1b}}[2J", local(&b))
    );
    let a_addr = local(&a);
    a.close(1000u16, "").await.unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(child.id().unwrap(), "INT");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    // Numbered in the order their handlers start, which need not be the
    // order of the handshakes.
    let opened = err
        .lines()
        .find(|l| l.ends_with(&format!(" from {a_addr}")))
        .unwrap_or_else(|| panic!("no open line for {a_addr}: {err}"));
    assert!(opened.starts_with("* connection "), "{err}");
    assert!(
        err.contains(&format!("{opened} closed: 1000 (normal closure)\n")),
        "{err}"
    );
}

#[tokio::test]
async fn stdin_lines_reach_every_client_and_its_end_does_not_stop_the_server() {
    let mut server = Server::start(&["--stdin", "--print"], Stdio::piped()).await;
    let mut typed = server.live.child.stdin.take().unwrap();
    let mut a = client(&server.url).await;
    server.next("open").await;
    let mut b = client(&server.url).await;
    server.next("open").await;

    typed.write_all(b"hello everyone\n").await.unwrap();
    assert_eq!(next_data(&mut a).await, Message::text("hello everyone"));
    assert_eq!(next_data(&mut b).await, Message::text("hello everyone"));
    let sent = server.next("sent").await;
    assert_eq!(
        (&sent["kind"], &sent["data"], &sent["clients"]),
        (&"text".into(), &"hello everyone".into(), &2.into())
    );

    // End of input: the server says so and goes on serving.
    drop(typed);
    server.next("stdin_closed").await;
    let mut c = client(&server.url).await;
    server.next("open").await;
    c.send(Message::text("still here")).await.unwrap();
    let shown = server.next("message").await;
    assert_eq!(
        (&shown["peer"], &shown["data"]),
        (&local(&c).into(), &"still here".into())
    );
    // Without --echo or --broadcast, a client's message goes to no one.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_data(&mut a))
            .await
            .is_err(),
        "a client's message was relayed"
    );
    server.stop().await;
}

#[tokio::test]
async fn stdin_hex_lines_are_binary_messages_and_a_bad_line_stops_only_the_input() {
    let mut server = Server::start(&["--stdin", "--hex", "--echo"], Stdio::piped()).await;
    let mut typed = server.live.child.stdin.take().unwrap();
    let mut a = client(&server.url).await;
    server.next("open").await;
    typed.write_all(b"de ad be ef\nzz\n").await.unwrap();
    assert_eq!(
        next_data(&mut a).await,
        Message::binary(vec![0xde, 0xad, 0xbe, 0xef])
    );
    let ended = server.next("stdin_closed").await;
    let error = ended["error"].as_str().unwrap();
    assert!(
        error.contains("line 2") && error.contains("not hex"),
        "{error}"
    );
    // The connection and the echo go on.
    a.send(Message::text("echo?")).await.unwrap();
    assert_eq!(next_data(&mut a).await, Message::text("echo?"));
    server.stop().await;
}

#[tokio::test]
async fn static_files_are_served_from_the_directory_and_nothing_outside_it() {
    let base = TempDir::new("static");
    let www = base.0.join("www");
    base.write("outside.txt", "secret outside");
    base.write("outside/secret.txt", "secret dir");
    base.write("www/index.html", "<h1>home</h1>");
    base.write("www/sub/index.html", "<h1>sub</h1>");
    base.write("www/.env", "TOKEN=hidden");
    let kinds = [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("data.json", "application/json"),
        ("logo.png", "image/png"),
        ("icon.svg", "image/svg+xml"),
        ("notes.txt", "text/plain; charset=utf-8"),
    ];
    for (name, _) in kinds {
        base.write(&format!("www/{name}"), format!("content of {name}"));
    }
    base.write("www/big.bin", vec![7u8; (8 << 20) + 1]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink(base.0.join("outside.txt"), www.join("link-out.txt")).unwrap();
        symlink(base.0.join("outside"), www.join("dir-out")).unwrap();
        symlink(www.join("notes.txt"), www.join("link-in.txt")).unwrap();
    }
    let dir = www.to_str().unwrap();
    let mut server = Server::start(&["--echo", "--static", dir], Stdio::null()).await;
    let addr = server.addr.clone();

    let home = get(&addr, "/").await;
    assert_eq!(
        (home.status, home.body.as_slice()),
        (200, &b"<h1>home</h1>"[..])
    );
    assert_eq!(
        home.header("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    for (name, kind) in kinds {
        let r = get(&addr, &format!("/{name}")).await;
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type").as_deref(), Some(kind), "{name}");
        assert_eq!(r.body, format!("content of {name}").as_bytes(), "{name}");
    }
    let head = http(&addr, "HEAD", "/app.js", "").await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length").as_deref(), Some("17"));

    let sub = get(&addr, "/sub").await;
    assert_eq!(
        (sub.status, sub.header("location").as_deref()),
        (301, Some("/sub/"))
    );
    assert_eq!(get(&addr, "/sub/").await.body, b"<h1>sub</h1>");
    // `//host` must not turn into a redirect to another site.
    let twice = get(&addr, "//sub").await;
    assert_eq!(twice.header("location").as_deref(), Some("/sub/"));

    for escape in [
        "/../outside.txt",
        "/sub/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/sub/..%2f..%2foutside.txt",
        "/..%5coutside.txt",
        "/.env",
        "/missing.html",
        "/index.html/",
        "/link-out.txt",
        "/dir-out/secret.txt",
    ] {
        let r = get(&addr, escape).await;
        assert_eq!(
            r.status,
            404,
            "{escape}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains("secret"),
            "{escape}"
        );
    }
    assert_eq!(
        get(&addr, "/link-in.txt").await.body,
        b"content of notes.txt"
    );
    let big = get(&addr, "/big.bin").await;
    assert_eq!(big.status, 403);
    assert!(String::from_utf8_lossy(&big.body).contains("larger than 8 MiB"));
    assert_eq!(
        http(&addr, "POST", "/index.html", "Content-Length: 0\r\n")
            .await
            .status,
        405
    );

    // The WebSocket on the same port, and its same-host origin default.
    let mut ws = client(&server.url).await;
    server.next("open").await;
    ws.send(Message::text("ws too")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("ws too"));
    server.stop().await;
}

#[tokio::test]
async fn the_page_is_served_at_the_root_only_with_page() {
    let server = Server::start(&["--echo"], Stdio::null()).await;
    // A WebSocket endpoint: a plain GET is told to upgrade.
    let plain = get(&server.addr, "/").await;
    assert_eq!(plain.status, 426);
    server.stop().await;

    let mut server = Server::start(&["--echo", "--page"], Stdio::null()).await;
    let page = get(&server.addr, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("new WebSocket(url)"), "{html}");
    assert!(!html.contains("src=") && !html.contains("http://"));
    assert_eq!(get(&server.addr, "/?x=1").await.status, 200);
    // Only `/`: other paths are the WebSocket's.
    assert_eq!(get(&server.addr, "/other").await.status, 426);
    let head = http(&server.addr, "HEAD", "/", "").await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    let mut ws = client(&server.url).await;
    server.next("open").await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("hi"));
    server.stop().await;
}

#[tokio::test]
async fn health_and_max_connections() {
    let mut server = Server::start(
        &["--echo", "--health", "/healthz", "--max-connections", "1"],
        Stdio::null(),
    )
    .await;
    let health = get(&server.addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok\n"[..]));
    let mut first = client(&server.url).await;
    server.next("open").await;

    // At capacity: 503 with Retry-After, and the health check still answers.
    let refused = ClientBuilder::new(server.url.as_str())
        .connect()
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(503), "{refused}");
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(get(&server.addr, "/healthz").await.status, 200);
    let post = http(&server.addr, "POST", "/healthz", "Content-Length: 0\r\n").await;
    assert_eq!(
        (post.status, post.header("allow").as_deref()),
        (405, Some("GET, HEAD"))
    );

    // A slot frees when a connection ends.
    first.close(1000u16, "").await.unwrap();
    server.next("closed").await;
    let mut again = client(&server.url).await;
    again.send(Message::text("room again")).await.unwrap();
    assert_eq!(next_data(&mut again).await, Message::text("room again"));
    server.stop().await;
}

/// Connects with `Origin: origin` (none when empty); the HTTP status of a
/// refusal, or 101.
async fn status_with_origin(url: &str, origin: &str) -> u16 {
    let mut b = ClientBuilder::new(url);
    if !origin.is_empty() {
        b = b.origin(origin);
    }
    match b.connect().await {
        Ok(mut ws) => {
            let _ = ws.close(1000u16, "").await;
            101
        }
        Err(e) => e.status().unwrap_or_else(|| panic!("{e}")),
    }
}

#[tokio::test]
async fn origin_allow_list_and_its_defaults() {
    let mut server = Server::start(
        &[
            "--echo",
            "--origin",
            "https://app.example",
            "--origin",
            "http://localhost:3000",
        ],
        Stdio::null(),
    )
    .await;
    let url = server.url.clone();
    for (origin, want) in [
        ("https://app.example", 101),
        ("HTTPS://App.Example:443", 101),
        ("http://localhost:3000", 101),
        ("", 101), // not a browser
        ("https://evil.example", 403),
        ("http://localhost:3001", 403),
        ("null", 403),
    ] {
        assert_eq!(status_with_origin(&url, origin).await, want, "{origin:?}");
    }
    let refused = server.next("refused").await;
    assert!(refused["reason"]
        .as_str()
        .unwrap()
        .contains("https://evil.example"));
    server.stop().await;

    // With a page: this server's own pages only.
    let server = Server::start(&["--echo", "--page"], Stdio::null()).await;
    let own = format!("http://{}", server.addr);
    assert_eq!(status_with_origin(&server.url, &own).await, 101);
    assert_eq!(
        status_with_origin(&server.url, "http://evil.example").await,
        403
    );
    assert_eq!(status_with_origin(&server.url, "").await, 101);
    server.stop().await;

    // With a page and --origin '*': any.
    let server = Server::start(&["--echo", "--page", "--origin", "*"], Stdio::null()).await;
    assert_eq!(
        status_with_origin(&server.url, "http://evil.example").await,
        101
    );
    server.stop().await;

    // Without a page or --origin: any (the documented risk).
    let server = Server::start(&["--echo"], Stdio::null()).await;
    assert_eq!(
        status_with_origin(&server.url, "http://evil.example").await,
        101
    );
    server.stop().await;
}

#[tokio::test]
async fn serve_usage_errors_exit_2() {
    let missing = Path::new("/nonexistent/tether-static");
    for args in [
        vec!["serve", "127.0.0.1:0"],
        vec!["serve", "--echo", "--health", "healthz", "127.0.0.1:0"],
        vec!["serve", "--echo", "--origin", "example.com", "127.0.0.1:0"],
        vec![
            "serve",
            "--echo",
            "--origin",
            "https://a.example/path",
            "127.0.0.1:0",
        ],
        vec![
            "serve",
            "--echo",
            "--static",
            missing.to_str().unwrap(),
            "127.0.0.1:0",
        ],
        vec!["serve", "--echo", "--max-connections", "0", "127.0.0.1:0"],
        vec!["serve", "--echo", "--raw", "127.0.0.1:0"],
        vec!["serve", "--echo", "--max-queue-bytes", "10", "127.0.0.1:0"],
    ] {
        let run = tether(&args, "", false).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}
