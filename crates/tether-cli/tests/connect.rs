//! `tether connect` end to end, with real pipes, `/dev/null` and signals:
//! what the end of input means, the input and output modes, diagnostics
//! (`-v`...`-vvv`, messages that say each thing once, the URL hint), and
//! shell completions.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::{cat, echo_server, echo_server_at, kill, tether, Live, FAST};
use tokio::io::AsyncWriteExt;

/// A file under the system's temporary directory, unique to this process.
fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-cli-connect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

// ---- The end of input ----

/// Issue #12's "done when": `tether connect --reconnect URL < /dev/null`
/// stays connected, reconnects after the server restarts on the same port,
/// and reports every end, the one SIGTERM starts included.
#[tokio::test]
async fn reconnect_with_stdin_at_dev_null_stays_connected_across_a_server_restart() {
    let server = echo_server(&[]).await;
    let (url, addr) = (server.url.clone(), server.addr.clone());
    let args = cat(&[&["connect", "--events", "json"], FAST, &[&url]]);
    let mut client = Live::start(&args, Stdio::null());
    assert_eq!(client.wait_for("connected").await["attempt"], 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client.running(), "the end of /dev/null closed nothing");
    assert!(client.of("closed").is_empty(), "{:?}", client.seen);

    server.stop().await;
    let closed = client.wait_for("closed").await;
    assert_eq!(
        (&closed["code"], &closed["by"]),
        (&1001.into(), &"server".into())
    );
    assert_eq!(closed["reason"], "server shutting down");
    client.wait_for("retry").await;
    // Down for a while: refused attempts are retried.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let server = echo_server_at(&[], &addr).await;
    let again = client.wait_for("connected").await;
    assert!(again["attempt"].as_u64().unwrap() >= 2, "{again}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client.running());

    kill(client.pid(), "TERM");
    let (code, stderr) = client.finish().await;
    assert_eq!(code, 0, "SIGTERM is a clean stop: {stderr}");
    let closed = client.of("closed");
    assert_eq!(closed.len(), 2, "{:#?}", client.seen);
    assert_eq!(
        (&closed[1]["code"], &closed[1]["by"]),
        (&1001.into(), &"client".into())
    );
    assert!(client.of("fatal").is_empty(), "{:#?}", client.seen);
    // The record of the run (shown with --nocapture).
    for e in &client.seen {
        println!("{e}");
    }
    drop(server);
}

/// Without --reconnect too, /dev/null (or an empty file) is nothing to
/// send, not a reason to close: the connection lasts until a signal.
/// SIGINT closes with 1000 and exits 130, SIGTERM with 1001 and exits 0.
#[tokio::test]
async fn nothing_to_read_keeps_the_connection_until_a_signal() {
    let server = echo_server(&[]).await;
    let empty = temp_file("empty", b"");
    for (stdin, signal, code, status) in [
        (Stdio::null(), "INT", 1000, 130),
        (
            Stdio::from(std::fs::File::open(&empty).unwrap()),
            "TERM",
            1001,
            0,
        ),
    ] {
        let mut client = Live::start(&["connect", "--events", "json", &server.url], stdin);
        client.wait_for("connected").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(client.running());
        kill(client.pid(), signal);
        let (exit, stderr) = client.finish().await;
        assert_eq!(exit, status, "{signal}: {stderr}");
        let closed = client.of("closed");
        assert_eq!(closed.len(), 1, "{:#?}", client.seen);
        assert_eq!(
            (&closed[0]["code"], &closed[0]["by"]),
            (&code.into(), &"client".into())
        );
    }
}

/// With --reconnect, the end of piped input stops sending; the connection
/// stays.
#[tokio::test]
async fn reconnect_keeps_the_connection_after_piped_input_ends() {
    let server = echo_server(&[]).await;
    let args = cat(&[&["connect", "--events", "json"], FAST, &[&server.url]]);
    let mut client = Live::start(&args, Stdio::piped());
    let mut stdin = client.child.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    drop(stdin);
    assert_eq!(client.wait_for("message").await["data"], "hello");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client.running(), "{:#?}", client.seen);
    assert!(client.of("closed").is_empty());
    kill(client.pid(), "INT");
    let (code, _) = client.finish().await;
    assert_eq!(code, 130);
    assert_eq!(client.of("closed")[0]["code"], 1000);
}

/// --close-on-eof: the end of input closes, even with --reconnect and
/// /dev/null.
#[tokio::test]
async fn close_on_eof_closes_at_the_end_of_input() {
    let server = echo_server(&[]).await;
    let args = cat(&[
        &["connect", "--events", "json", "--close-on-eof"],
        FAST,
        &[&server.url],
    ]);
    let mut client = Live::start(&args, Stdio::null());
    let (code, stderr) = client.finish().await;
    assert_eq!(code, 0, "{stderr}");
    let closed = client.of("closed");
    assert_eq!(closed.len(), 1, "{:#?}", client.seen);
    assert_eq!(
        (&closed[0]["code"], &closed[0]["by"]),
        (&1000.into(), &"client".into())
    );
}

/// --no-stdin (and its alias --listen) does not read a pipe at all.
#[tokio::test]
async fn no_stdin_ignores_a_pipe() {
    let server = echo_server(&[]).await;
    for flag in ["--no-stdin", "--listen"] {
        let mut client = Live::start(
            &["connect", "--events", "json", flag, &server.url],
            Stdio::piped(),
        );
        let mut stdin = client.child.stdin.take().unwrap();
        stdin.write_all(b"not sent\n").await.unwrap();
        drop(stdin);
        client.wait_for("connected").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(client.running(), "{flag}");
        kill(client.pid(), "INT");
        let (code, _) = client.finish().await;
        assert_eq!(code, 130);
        assert!(client.of("sent").is_empty(), "{flag}: {:#?}", client.seen);
        assert!(
            client.of("message").is_empty(),
            "{flag}: {:#?}",
            client.seen
        );
    }
}

// ---- Input and output modes ----

#[tokio::test]
async fn invalid_utf8_is_an_error_that_names_the_line() {
    let server = echo_server(&[]).await;
    let input = b"ok\n\xff\xfe bad\nafter\n";
    let run = tether(&["connect", &server.url], input, false).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("tether: standard input, line 2: not valid UTF-8 (at byte 1)"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("< ok\n"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("after"),
        "nothing after the bad line: {}",
        run.stdout
    );
    // With --reconnect too: the lines before go out, the close is reported.
    let args = cat(&[&["connect", "--events", "json"], FAST, &[&server.url]]);
    let run = tether(&args, input, true).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
    assert_eq!(run.of("sent").len(), 1, "{}", run.stdout);
    assert_eq!(run.of("sent")[0]["data"], "ok", "{}", run.stdout);
    let closed = run.of("closed");
    assert_eq!(
        (&closed[0]["code"], &closed[0]["by"]),
        (&1000.into(), &"client".into())
    );
    // With --binary the same bytes are three binary messages.
    let run = tether(
        &["connect", "--events", "json", "--binary", &server.url],
        input,
        false,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let data: Vec<_> = run
        .of("message")
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(data, ["b2s=", "//4gYmFk", "YWZ0ZXI="]);
    assert!(run.of("message").iter().all(|m| m["kind"] == "binary"));
}

#[tokio::test]
async fn binary_lines_or_the_whole_input_as_one_message() {
    let server = echo_server(&[]).await;
    let url = &server.url;
    let run = tether(
        &["connect", "--events", "json", "--binary", url],
        "a\nb\n",
        false,
    )
    .await;
    let sent = run.of("sent");
    assert_eq!(sent.len(), 2, "{}", run.stdout);
    assert_eq!(
        (&sent[0]["kind"], &sent[0]["data"]),
        (&"binary".into(), &"YQ==".into())
    );
    let got: Vec<_> = run
        .of("message")
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(got, ["YQ==", "Yg=="]);

    let run = tether(
        &["connect", "--events", "json", "--binary", "--whole", url],
        "a\nb\n",
        false,
    )
    .await;
    let msgs = run.of("message");
    assert_eq!(msgs.len(), 1, "{}", run.stdout);
    assert_eq!(
        (&msgs[0]["kind"], &msgs[0]["data"]),
        (&"binary".into(), &"YQpiCg==".into())
    );

    let run = tether(
        &["connect", "--events", "json", "--whole", url],
        "one\ntwo\n",
        false,
    )
    .await;
    let msgs = run.of("message");
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (&msgs[0]["kind"], &msgs[0]["data"]),
        (&"text".into(), &"one\ntwo\n".into())
    );
}

#[tokio::test]
async fn base64_and_hex_in_and_out() {
    let server = echo_server(&[]).await;
    let url = &server.url;
    let run = tether(&["connect", "--base64", url], "aGk=\n", false).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("< (binary, 2 bytes, base64) aGk=\n"),
        "{}",
        run.stdout
    );

    let run = tether(&["connect", "--hex", url], "68 69\nFF00\n", false).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("< (binary, 2 bytes, hex) 6869\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("< (binary, 2 bytes, hex) ff00\n"),
        "{}",
        run.stdout
    );

    let run = tether(&["connect", "--hex", url], "6869\nxyz\n6869\n", false).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("standard input, line 2: not hex"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout.matches("< (binary").count(), 1, "{}", run.stdout);

    let run = tether(&["connect", "--base64", url], "aGk=\n%%%\n", false).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("line 2: not base64"), "{}", run.stderr);
}

#[tokio::test]
async fn a_file_is_one_message_binary_unless_text() {
    let server = echo_server(&[]).await;
    let url = &server.url;
    let bytes = [0u8, 1, 2, 0xff, b'\n', b'x'];
    let bin = temp_file("payload.bin", &bytes);
    let bin = bin.to_str().unwrap();
    let run = tether(
        &["connect", "-1", "--raw", "--raw-bytes", "--file", bin, url],
        "",
        false,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout_bytes, bytes, "the bytes came back unchanged");

    let txt = temp_file("note.txt", "hello\nfile".as_bytes());
    let run = tether(
        &[
            "connect",
            "--events",
            "json",
            "--file",
            txt.to_str().unwrap(),
            "--text",
            url,
        ],
        "ignored\n",
        false,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let msgs = run.of("message");
    assert_eq!(msgs.len(), 1, "standard input is not read: {}", run.stdout);
    assert_eq!(
        (&msgs[0]["kind"], &msgs[0]["data"]),
        (&"text".into(), &"hello\nfile".into())
    );

    // Refused before connecting.
    let run = tether(&["connect", "--file", bin, "--text", url], "", false).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not valid UTF-8"), "{}", run.stderr);
    assert!(run.stderr.contains("drop --text"), "{}", run.stderr);
    assert!(!run.stderr.contains("connecting"), "{}", run.stderr);
    let run = tether(&["connect", "--file", "/nonexistent/file", url], "", false).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot read /nonexistent/file"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn one_prints_one_message_and_exits() {
    let server = echo_server(&[]).await;
    let run = tether(
        &["connect", "-1", "--raw", &server.url],
        "first\nsecond\n",
        false,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "first\n");
    // Input kept open: the message is the end, not the input's.
    let run = tether(&["connect", "--one", "--raw", &server.url], "only\n", true).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "only\n"),
        "{}",
        run.stderr
    );

    // The connection ends first: exit 1, and why.
    let mut client = Live::start(
        &["connect", "-1", "--events", "json", &server.url],
        Stdio::null(),
    );
    client.wait_for("connected").await;
    server.stop().await;
    let (code, _) = client.finish().await;
    assert_eq!(code, 1);
    assert_eq!(client.of("closed")[0]["code"], 1001);
    let fatal = client.of("fatal");
    assert!(
        fatal[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ended before a message arrived"),
        "{fatal:?}"
    );
}

#[tokio::test]
async fn human_output_escapes_a_peers_control_characters_and_raw_keeps_them() {
    let server = echo_server(&[]).await;
    let url = &server.url;
    // An escape sequence (red text) and a line break from the peer.
    let txt = temp_file("controls.txt", "a\u{1b}[31mb\nc".as_bytes());
    let txt = txt.to_str().unwrap();
    let run = tether(&["connect", "-1", "--file", txt, "--text", url], "", false).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("< a\\u{1b}[31mb\\nc\n"),
        "one line, escaped: {:?}",
        run.stdout
    );
    assert!(!run.stdout.contains('\u{1b}'), "{:?}", run.stdout);
    let run = tether(
        &["connect", "-1", "--raw", "--file", txt, "--text", url],
        "",
        false,
    )
    .await;
    assert_eq!(
        run.stdout, "a\u{1b}[31mb\nc\n",
        "--raw writes the data as it is"
    );
}

#[tokio::test]
async fn raw_output_is_the_data_alone() {
    let server = echo_server(&[]).await;
    let url = &server.url;
    let run = tether(&["connect", "--raw", url], "hello\n{\"a\": 1}\n", false).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "hello\n{\"a\": 1}\n");
    assert!(
        run.stderr.contains("* connected"),
        "notes go to standard error"
    );

    let run = tether(&["connect", "--raw", "--binary", url], "hi\n", false).await;
    assert_eq!(run.stdout, "aGk=\n");
    let run = tether(&["connect", "--raw", "--hex", url], "6869\n", false).await;
    assert_eq!(run.stdout, "6869\n");
    let run = tether(
        &["connect", "--raw", "--raw-bytes", "--binary", url],
        "hi\nyo\n",
        false,
    )
    .await;
    assert_eq!(run.stdout_bytes, b"hiyo");

    let run = tether(&["connect", "--raw", "--jsonl", url], "", false).await;
    assert_eq!(run.code, 2, "conflicting formats: {}", run.stderr);
}

#[tokio::test]
async fn jsonl_writes_one_json_value_per_message() {
    let server = echo_server(&[]).await;
    let url = &server.url;
    // --whole keeps the line break inside the first message.
    let first = "{\"a\": [1,\n 2]}";
    let run = tether(&["connect", "--jsonl", "--whole", url], first, false).await;
    assert_eq!(run.stdout, "{\"a\":[1,2]}\n", "{}", run.stderr);
    let run = tether(
        &["connect", "--jsonl", url],
        "{\"b\": true}\nplain\n",
        false,
    )
    .await;
    assert_eq!(run.stdout, "{\"b\":true}\n\"plain\"\n");
    let run = tether(
        &["connect", "--jsonl", "--pretty", "--whole", url],
        first,
        false,
    )
    .await;
    assert_eq!(run.stdout, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
    let run = tether(&["connect", "--jsonl", "--binary", url], "hi\n", false).await;
    assert_eq!(run.stdout, "\"aGk=\"\n");
}

// ---- Diagnostics ----

#[tokio::test]
async fn verbosity_adds_handshake_then_frames_then_payloads() {
    let server = echo_server(&[]).await;
    let url = format!("{}feed?token=t-secret", server.url);
    let args = |v: &'static str| {
        vec![
            v,
            "connect",
            "-H",
            "Authorization: Bearer a-secret",
            "--no-compression",
            url.as_str(),
        ]
    };
    let run = tether(&args("-v"), "payload-secret\n", false).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let log = &run.stderr;
    assert!(log.contains("upgrade request"), "{log}");
    assert!(
        log.contains("upgrade response") && log.contains("status=101"),
        "{log}"
    );
    assert!(log.contains("<redacted>"), "{log}");
    assert!(!log.contains("tether::frame"), "frames need -vv: {log}");

    let run = tether(&args("-vv"), "payload-secret\n", false).await;
    let log = &run.stderr;
    for want in [
        "tether::frame",
        "dir=\"send\"",
        "dir=\"recv\"",
        "opcode=Text",
        "len=14",
        "fin=true",
        "rsv=000",
        "masked=true",
        "masked=false",
        "opcode=Close",
    ] {
        assert!(log.contains(want), "{want}: {log}");
    }
    assert!(!log.contains("payload-secret"), "no payload at -vv: {log}");

    let run = tether(&args("-vvv"), "payload-secret\n", false).await;
    assert!(run.stderr.contains("tether::payload"), "{}", run.stderr);
    assert!(run.stderr.contains("\"payload-secret\""), "{}", run.stderr);
    // Credentials stay hidden, even at -vvv.
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !all.contains("a-secret") && !all.contains("t-secret"),
        "{all}"
    );
}

#[tokio::test]
async fn keepalive_pings_and_their_latency_at_v() {
    let server = echo_server(&[]).await;
    let mut client = Live::start(
        &[
            "-v",
            "connect",
            "--events",
            "json",
            "--ping-interval",
            "0.2",
            &server.url,
        ],
        Stdio::null(),
    );
    client.wait_for("connected").await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    kill(client.pid(), "INT");
    let (_, log) = client.finish().await;
    assert!(log.contains("keepalive ping"), "{log}");
    assert!(
        log.contains("keepalive pong") && log.contains("latency="),
        "{log}"
    );
}

/// "closed: 1001 (going away): closed with 1001 ..." said it twice: the
/// close line gives the code and reason once, and the retry after it does
/// not repeat them.
#[tokio::test]
async fn the_closing_text_says_each_thing_once() {
    let server = echo_server(&[]).await;
    let url = server.url.clone();
    let args = cat(&[&["connect"], FAST, &["--max-attempts", "1", &url]]);
    let stop = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.stop().await;
    };
    let (run, ()) = tokio::join!(tether(&args, "", true), stop);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "* connection closed by the server: 1001 (going away): server shutting down\n"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("1001").count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("* waiting "), "{}", run.stderr);
}

#[tokio::test]
async fn a_url_without_a_scheme_gets_a_hint() {
    for (url, hint, extra) in [
        ("127.0.0.1:9", "did you mean ws://127.0.0.1:9/?", &[][..]),
        (
            "localhost:9/feed",
            "did you mean ws://localhost:9/feed?",
            &["--reconnect"][..],
        ),
        (
            "http://127.0.0.1:9/x",
            "did you mean ws://127.0.0.1:9/x?",
            &[][..],
        ),
    ] {
        let run = tether(&cat(&[&["connect"], extra, &[url]]), "", false).await;
        assert_eq!(run.code, 2, "{url}: {}", run.stderr);
        assert!(run.stderr.contains(hint), "{url}: {}", run.stderr);
    }
}

// ---- Shell comfort ----

#[tokio::test]
async fn completions_for_bash_zsh_and_fish() {
    for (shell, mark) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef tether"),
        ("fish", "complete -c tether"),
    ] {
        let run = tether(&["completions", shell], "", false).await;
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains(mark), "{shell}: {}", run.stdout);
        assert!(
            run.stdout.contains("no-stdin"),
            "{shell}: the options are there"
        );
    }
    let run = tether(&["completions", "tcsh"], "", false).await;
    assert_eq!(run.code, 2);
}

#[tokio::test]
async fn help_shows_examples_for_each_mode() {
    let run = tether(&["connect", "--help"], "", false).await;
    assert_eq!(run.code, 0);
    for want in [
        "Examples:",
        "--raw",
        "--jsonl",
        "--file",
        "-1",
        "--no-stdin",
        "--listen",
        "< /dev/null",
        "jq",
    ] {
        assert!(run.stdout.contains(want), "{want}: {}", run.stdout);
    }
}
