//! End-to-end tests of the `tether` binary: piped input and output,
//! `--events json` against a scripted fault server for each classification
//! row, exit statuses, redaction, and the demo.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod support;

use support::{cat, echo_server, tether, Run, FAST};

/// What the fault server does with one connection.
#[derive(Clone, Debug)]
enum Step {
    Status(u16, &'static str, &'static str),
    /// Accept the upgrade, send a text message, then close with this code.
    AcceptClose(u16),
    /// Read the request and never answer.
    Hang,
    /// Read the request and close the connection.
    Eof,
    /// Answer 101 with a wrong Sec-WebSocket-Accept.
    BadAccept,
    /// Answer this status with `Retry-After: 0` and a body that echoes the
    /// request head, its last line first (so that the headers set by the
    /// user fall within the excerpt an error shows).
    Echo(u16),
}

/// Plays `steps` (the last one repeats) and records the raw requests.
async fn fault_server(steps: Vec<Step>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let requests: Arc<Mutex<Vec<String>>> = Arc::default();
    let reqs = requests.clone();
    tokio::spawn(async move {
        let mut i = 0;
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let step = steps[i.min(steps.len() - 1)].clone();
            i += 1;
            let reqs = reqs.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                reqs.lock().unwrap().push(req.clone());
                match step {
                    Step::Status(code, extra, body) => {
                        let resp = format!(
                            "HTTP/1.1 {code} Scripted\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tcp.write_all(resp.as_bytes()).await;
                    }
                    Step::Echo(code) => {
                        let lines: Vec<&str> = req.trim_end().lines().rev().collect();
                        let body = format!("you sent (last line first):\n{}", lines.join("\n"));
                        let resp = format!(
                            "HTTP/1.1 {code} Echo\r\nRetry-After: 0\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tcp.write_all(resp.as_bytes()).await;
                    }
                    Step::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
                    Step::Eof => drop(tcp),
                    Step::BadAccept => {
                        let resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n";
                        let _ = tcp.write_all(resp.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Step::AcceptClose(_) => {
                        let key = req
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("sec-websocket-key")
                                    .then(|| v.trim().to_string())
                            })
                            .unwrap();
                        let accept = tether::tether_proto::handshake::accept_key(&key);
                        let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
                        tcp.write_all(resp.as_bytes()).await.unwrap();
                        let ws = tether::WebSocket::from_raw(
                            tcp,
                            tether::Role::Server,
                            tether::WebSocketConfig::default(),
                        );
                        serve_ws(ws, step).await;
                    }
                }
            });
        }
    });
    (url, requests)
}

async fn serve_ws(mut ws: tether::WebSocket<tokio::net::TcpStream>, step: Step) {
    if let Step::AcceptClose(code) = step {
        let _ = ws.send(tether::Message::text("welcome")).await;
        let _ = ws.close(code, "scripted").await;
    }
}

/// Runs `tether connect --events json`, the fast reconnect options
/// ([`FAST`]), then `args`, with nothing on standard input (kept open if
/// `keep_open`).
async fn connect_json(args: &[&str], keep_open: bool) -> Run {
    tether(
        &cat(&[&["connect", "--events", "json"], FAST, args]),
        "",
        keep_open,
    )
    .await
}

#[tokio::test]
async fn piped_lines_become_messages_and_answers_are_printed() {
    let server = echo_server(&[]).await;
    let url = &server.url;
    let run = tether(&["connect", url], "hello\nwörld\n", false).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("< hello\n"), "{}", run.stdout);
    assert!(run.stdout.contains("< wörld\n"), "{}", run.stdout);
    assert!(
        run.stdout.contains("> hello\n"),
        "outgoing lines are marked: {}",
        run.stdout
    );
    let json = tether(&["connect", "--events", "json", url], "ping me\n", false).await;
    assert_eq!(json.code, 0);
    let msgs = json.of("message");
    assert_eq!(msgs[0]["kind"], "text");
    assert_eq!(msgs[0]["data"], "ping me");
    assert!(msgs[0]["t"].as_f64().is_some());
    // The close this end started (end of input) is reported too.
    let closed = json.of("closed");
    assert_eq!(
        (closed.len(), &closed[0]["code"], &closed[0]["by"]),
        (1, &1000.into(), &"client".into())
    );
}

#[tokio::test]
async fn row_refused_retries_then_exhausts_with_status_4() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", l.local_addr().unwrap());
    drop(l);
    let run = connect_json(&["--max-attempts", "3", &url], false).await;
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert_eq!(run.of("connecting").len(), 3);
    assert_eq!(run.of("retry").len(), 2);
    let fatal = &run.of("fatal")[0];
    assert_eq!(fatal["exhausted"], true);
    assert!(fatal["reason"]
        .as_str()
        .unwrap()
        .contains("gave up after 3 attempts"));
}

#[tokio::test]
async fn row_503_with_retry_after_is_honoured_then_connects() {
    let (url, _) = fault_server(vec![
        Step::Status(503, "Retry-After: 1\r\n", "busy"),
        Step::AcceptClose(1000),
        Step::Status(403, "", "done"),
    ])
    .await;
    let run = connect_json(&["--max-attempts", "2", &url], true).await;
    let retry = &run.of("retry")[0];
    assert_eq!(retry["status"], 503);
    assert_eq!(retry["delay_s"], 1.0);
    assert_eq!(retry["source"], "Retry-After");
    let connected = &run.of("connected")[0];
    assert_eq!(connected["attempt"], 2);
    assert!(connected["t"].as_f64().unwrap() >= 1.0);
    assert_eq!(run.of("message")[0]["data"], "welcome");
}

#[tokio::test]
async fn row_401_is_fatal_at_once_with_status_3_and_redacted_credentials() {
    let (url, requests) = fault_server(vec![Step::Status(
        401,
        "WWW-Authenticate: Bearer\r\n",
        "token expired",
    )])
    .await;
    let url = url.replace("ws://", "ws://alice:hunter2@");
    for format in ["json", "human"] {
        let run = tether(
            &cat(&[
                &["connect", "-vv", "--events", format],
                FAST,
                &[
                    "-H",
                    "Authorization: Bearer hunter3",
                    "-H",
                    "Cookie: sid=hunter4",
                    &url,
                ],
            ]),
            "",
            true,
        )
        .await;
        assert_eq!(run.code, 3, "{format}: {}{}", run.stdout, run.stderr);
        let all = format!("{}{}", run.stdout, run.stderr);
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!all.contains(secret), "{secret} leaked ({format}):\n{all}");
        }
        assert!(all.contains("refused the credentials"), "{all}");
        assert!(
            all.contains("Authorization: <redacted>"),
            "names the header sent: {all}"
        );
        assert!(
            all.contains("token expired"),
            "shows the body excerpt: {all}"
        );
        if format == "json" {
            assert_eq!(run.of("connecting").len(), 1, "no retry");
            assert_eq!(run.of("fatal")[0]["status"], 401);
        }
    }
    // The explicit header won over the URL's credentials: one Authorization.
    let req = requests.lock().unwrap()[0].to_ascii_lowercase();
    assert_eq!(req.matches("authorization:").count(), 1);
}

#[tokio::test]
async fn row_other_4xx_is_fatal_and_fatal_status_overrides() {
    let (url, _) = fault_server(vec![Step::Status(404, "", "no such feed")]).await;
    let run = connect_json(&[&url], true).await;
    assert_eq!(run.code, 3);
    assert_eq!(run.of("fatal")[0]["status"], 404);
    // --fatal-status makes a retryable status fatal; --retry-status the reverse.
    let (url, _) = fault_server(vec![Step::Status(503, "", "down")]).await;
    let run = connect_json(&["--fatal-status", "503", &url], true).await;
    assert_eq!((run.code, run.of("connecting").len()), (3, 1));
    let (url, _) = fault_server(vec![
        Step::Status(404, "", "not yet"),
        Step::AcceptClose(1000),
        Step::Status(403, "", "done"),
    ])
    .await;
    let run = connect_json(
        &["--retry-status", "404", "--max-attempts", "3", &url],
        true,
    )
    .await;
    assert_eq!(run.of("connected").len(), 1, "{}", run.stdout);
}

#[tokio::test]
async fn row_open_timeout_is_retried() {
    let (url, _) = fault_server(vec![
        Step::Hang,
        Step::AcceptClose(1000),
        Step::Status(403, "", "done"),
    ])
    .await;
    let run = tether(
        &cat(&[
            &["connect", "--events", "json", "--open-timeout", "0.3"],
            FAST,
            &["--max-attempts", "3", &url],
        ]),
        "",
        true,
    )
    .await;
    let retry = &run.of("retry")[0];
    assert!(
        retry["reason"].as_str().unwrap().contains("timed out"),
        "{retry}"
    );
    assert_eq!(run.of("connected").len(), 1);
}

#[tokio::test]
async fn close_1012_reconnects_and_1008_stops() {
    let (url, _) = fault_server(vec![Step::AcceptClose(1012), Step::AcceptClose(1008)]).await;
    let run = connect_json(&[&url], true).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    let closed = run.of("closed");
    assert_eq!(closed[0]["code"], 1012);
    assert_eq!(closed[1]["code"], 1008);
    assert_eq!(run.of("connected").len(), 2);
    assert!(run.of("fatal")[0]["reason"]
        .as_str()
        .unwrap()
        .contains("1008"));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let run = tether(&["connect"], "", false).await;
    assert_eq!(run.code, 2);
    let run = tether(&["connect", "http://example.com/"], "", false).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = tether(
        &["connect", "-H", "no colon", "ws://127.0.0.1:1/"],
        "",
        false,
    )
    .await;
    assert_eq!(run.code, 2);
    let run = tether(
        &["connect", "--max-attempts", "3", "ws://127.0.0.1:1/"],
        "",
        false,
    )
    .await;
    assert_eq!(run.code, 2, "--max-attempts needs --reconnect");
}

/// TLS: `serve --tls-cert --tls-key`, and `connect --ca`; without the CA a
/// fatal TLS error (also with --reconnect: exit 1 at once, not 4);
/// `--insecure` connects, with a warning.
#[tokio::test]
async fn tls_serve_and_connect() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tether-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let ca_file = write("ca.pem", &ca.pem());
    let cert_file = write("cert.pem", &cert.pem());
    let key_file = write("key.pem", &key.serialize_pem());

    let server = echo_server(&["--tls-cert", &cert_file, "--tls-key", &key_file]).await;
    let url = server.url.clone();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");

    let run = tether(
        &["connect", "--ca", &ca_file, &url],
        "secure hello\n",
        false,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("< secure hello\n"), "{}", run.stdout);

    let run = tether(&["connect", &url], "x\n", false).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("UnknownIssuer"), "{}", run.stderr);

    let run = connect_json(&[&url], false).await;
    assert_eq!(run.code, 1, "fatal at once: {}", run.stdout);
    assert_eq!(run.of("connecting").len(), 1, "{}", run.stdout);
    assert!(run.of("retry").is_empty(), "{}", run.stdout);
    assert!(run.of("fatal")[0]["reason"]
        .as_str()
        .unwrap()
        .contains("certificate not trusted"));

    let run = tether(&["connect", "--insecure", &url], "anyway\n", false).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("< anyway\n"), "{}", run.stdout);
    assert!(run.stderr.contains("WARNING: --insecure"), "{}", run.stderr);

    let run = tether(&["connect", "--ca", "/nonexistent/ca.pem", &url], "", false).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_demo_tells_the_whole_story_and_passes() {
    let run = tether(&["demo"], "", false).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for step in [
        "Step 1",
        "Step 2",
        "Step 3",
        "Step 4",
        "Step 5",
        "Step 6",
        "Step 7",
        "replayed after reconnecting",
        "Every step behaved as expected",
    ] {
        assert!(
            run.stdout.contains(step),
            "missing {step:?}:\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("FAILED"));
    assert!(
        !run.stdout.contains("token-1") && !run.stdout.contains("token-2"),
        "tokens are never shown"
    );
}

#[tokio::test]
async fn no_compression_is_not_offered() {
    let (url, requests) = fault_server(vec![Step::Status(404, "", "")]).await;
    let run = tether(&["connect", "--no-compression", &url], "", false).await;
    assert_eq!(run.code, 3);
    let run2 = tether(&["connect", &url], "", false).await;
    assert_eq!(run2.code, 3);
    let reqs = requests.lock().unwrap().clone();
    assert!(
        !reqs[0]
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{}",
        reqs[0]
    );
    assert!(
        reqs[1].contains("permessage-deflate"),
        "offered by default: {}",
        reqs[1]
    );
}

#[tokio::test]
async fn row_dns_failure_is_retried() {
    let run = connect_json(&["--max-attempts", "2", "ws://no-such-host.invalid/"], true).await;
    assert_eq!(run.code, 4, "{}", run.stdout);
    assert_eq!(run.of("connecting").len(), 2);
    assert!(
        run.of("retry")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("resolve"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn row_eof_during_handshake_is_retried() {
    let (url, _) = fault_server(vec![
        Step::Eof,
        Step::AcceptClose(1000),
        Step::Status(403, "", "done"),
    ])
    .await;
    let run = connect_json(&[&url], true).await;
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(
        run.of("retry")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("closed"),
        "{}",
        run.stdout
    );
    assert_eq!(run.of("connected").len(), 1);
}

#[tokio::test]
async fn row_429_with_retry_after_is_honoured() {
    let (url, _) = fault_server(vec![
        Step::Status(429, "Retry-After: 1\r\n", "slow down"),
        Step::AcceptClose(1000),
        Step::Status(403, "", "done"),
    ])
    .await;
    let run = connect_json(&[&url], true).await;
    let retry = &run.of("retry")[0];
    assert_eq!(
        (retry["status"].clone(), retry["delay_s"].clone()),
        (429.into(), 1.0.into()),
        "{retry}"
    );
    assert_eq!(run.of("connected").len(), 1);
}

#[tokio::test]
async fn row_redirect_is_followed_without_credentials_across_origins() {
    let (target, target_reqs) = fault_server(vec![Step::AcceptClose(1008)]).await;
    let location: &'static str = Box::leak(format!("Location: {target}\r\n").into_boxed_str());
    let (url, _) = fault_server(vec![Step::Status(302, location, "")]).await;
    let run = connect_json(&["-H", "Authorization: Bearer s3cret", &url], true).await;
    assert_eq!(run.code, 1, "stopped by the 1008: {}", run.stdout);
    assert_eq!(run.of("connected").len(), 1);
    assert_eq!(run.of("closed")[0]["code"], 1008);
    let req = target_reqs.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        !req.contains("authorization"),
        "credentials dropped on the cross-origin hop: {req}"
    );
}

#[tokio::test]
async fn row_invalid_handshake_is_fatal() {
    let (url, _) = fault_server(vec![Step::BadAccept]).await;
    let run = connect_json(&[&url], true).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.of("connecting").len(), 1);
    assert!(
        run.of("fatal")[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Accept"),
        "{}",
        run.stdout
    );
}

/// Issue #9, item 4: a line break in `--origin` or `--subprotocol` is a
/// usage error (exit 2) with a clear message, and nothing is sent: the
/// listener sees no connection at all.
#[tokio::test]
async fn origin_or_subprotocol_with_a_line_break_exits_2_and_sends_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            *count.lock().unwrap() += 1;
        }
    });
    let injected = "a\r\nX-Injected: 1";
    for (option, names) in [
        ("--origin", "invalid Origin value"),
        ("--subprotocol", "invalid subprotocol"),
    ] {
        for extra in [&[][..], &["--events", "json"], &["--reconnect"]] {
            let run = tether(
                &cat(&[&["connect", option, injected], extra, &[&url]]),
                "",
                false,
            )
            .await;
            assert_eq!(
                run.code, 2,
                "{option} {extra:?}: {}{}",
                run.stdout, run.stderr
            );
            assert!(
                run.stderr
                    .starts_with(&format!("tether: {names} \"a\\r\\nX-Injected: 1\"")),
                "{option} {extra:?}: {}",
                run.stderr
            );
            assert!(run.stderr.contains("RFC"), "{}", run.stderr);
            assert_eq!(run.stdout, "", "{option} {extra:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(*accepted.lock().unwrap(), 0, "nothing was sent");
}

/// Issue #9, item 5: a server that echoes the whole request into its 503
/// (retried) and 401 bodies; no secret of the request appears on standard
/// output or standard error, in either format, at `-vv`, with and without
/// `--reconnect`; the non-secret parts stay visible.
#[tokio::test]
async fn an_echoed_request_leaks_no_secret_in_either_format() {
    for reconnect in [false, true] {
        for format in ["human", "json"] {
            let (url, requests) = fault_server(vec![Step::Echo(503), Step::Echo(401)]).await;
            let url =
                url.replace("ws://", "ws://user:p-secret@") + "feed?token=t-secret&room=lobby";
            let mut args = vec!["connect", "-vv", "--events", format];
            if reconnect {
                args.extend_from_slice(FAST);
            }
            args.extend_from_slice(&[
                "-H",
                "X-Api-Key: k-secret",
                "-H",
                "X-Tenant-Pin: pin-secret",
                "--sensitive-header",
                "X-Tenant-Pin",
                "-H",
                "X-Trace: visible-trace",
                &url,
            ]);
            let run = tether(&args, "", true).await;
            let all = format!("{}{}", run.stdout, run.stderr);
            // 503 without --reconnect; 401 after one retry with it.
            assert_eq!(run.code, 3, "{format} {reconnect}: {all}");
            let shown = if reconnect { "HTTP 401" } else { "HTTP 503" };
            assert!(all.contains(shown), "{all}");
            for secret in [
                "k-secret",
                "t-secret",
                "p-secret",
                "pin-secret",
                "dXNlcjpwLXNlY3JldA",
                "user:p-secret",
            ] {
                assert!(
                    !all.contains(secret),
                    "{secret} leaked ({format}, --reconnect {reconnect}):\n{all}"
                );
            }
            for visible in [
                "visible-trace",
                "x-api-key: <redacted>",
                "x-tenant-pin: <redacted>",
                "room=lobby",
                "token=<redacted>",
                "user:<redacted>@",
            ] {
                assert!(
                    all.to_ascii_lowercase().contains(visible),
                    "{visible} is shown ({format}, --reconnect {reconnect}):\n{all}"
                );
            }
            if format == "json" && reconnect {
                assert_eq!(run.of("retry")[0]["status"], 503, "{all}");
                assert_eq!(run.of("fatal")[0]["status"], 401, "{all}");
            }
            // The secrets were really sent.
            let req = requests.lock().unwrap()[0].to_ascii_lowercase();
            assert!(req.contains("x-api-key: k-secret"), "{req}");
            assert!(req.contains("token=t-secret"), "{req}");
        }
    }
}
