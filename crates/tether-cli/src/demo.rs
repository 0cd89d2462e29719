//! `tether demo`: a scripted server that misbehaves, and a client that
//! lives through it, narrated step by step. Loopback only, no setup.
//!
//! The server's script, by request number:
//! - before it listens: connection refused (it "starts" after 1.5 s);
//! - request 1: 503 with `Retry-After: 1`;
//! - connection A: echoes, then restarts (close 1012);
//! - connection B: stops answering anything (a dead peer; keepalive catches it);
//! - connection C: acknowledges the messages queued while disconnected, then
//!   rotates credentials (close 1012);
//! - next request: 401, the token expired; after one refresh, 401 again:
//!   the token was revoked. The client stops, and says why.
//!
//! Then a second server, a feed of ticks on a topic (`tether.resume.v1`),
//! restarts in the middle of the stream: the ticks published while it is
//! down reach the client after it reconnects, each once, in order.

use crate::output::chain;
use clap::Args;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether::hub::Hub;
use tether::reconnect::{Backoff, DelaySource, Event, ReconnectPolicy, SessionState};
use tether::resume::{self, Received};
use tether::{
    ClientBuilder, CloseCode, CredentialsRequest, Message, Response, ServerBuilder, WebSocket,
};

/// Options of `tether demo` (none yet; `-v` shows the library's events).
#[derive(Args)]
pub(crate) struct DemoArgs {}

/// What happened, for the final check.
#[derive(Default)]
struct Seen {
    refused_retries: usize,
    retry_after_wait: Option<Duration>,
    echoed: bool,
    closed_1012: usize,
    reconnected_after_1012: bool,
    keepalive_1011: bool,
    reconnected_after_keepalive: bool,
    queued_delivered: Vec<String>,
    refreshed: bool,
    stopped_on_401: Option<String>,
    connects: usize,
    /// The last event was the end of a connection.
    just_closed: bool,
}

struct Narrator {
    start: Instant,
    step: Mutex<usize>,
}

impl Narrator {
    fn say(&self, text: &str) {
        println!("[{:5.1}s] {text}", self.start.elapsed().as_secs_f64());
    }

    fn step(&self, n: usize, title: &str) {
        let mut s = self.step.lock().unwrap_or_else(|p| p.into_inner());
        if *s < n {
            *s = n;
            println!();
            println!("== Step {n}: {title}");
        }
    }
}

pub(crate) async fn run(_args: DemoArgs) -> ExitCode {
    let narrator = Arc::new(Narrator {
        start: Instant::now(),
        step: Mutex::new(0),
    });
    let seen: Arc<Mutex<Seen>> = Arc::default();
    println!(
        "tether demo: a server that misbehaves on purpose, and a client that lives through it."
    );
    println!(
        "Delays are shortened so the story fits in a few seconds: backoff 0.3 s growing to 1 s,"
    );
    println!("keepalive ping every 0.5 s with a 0.5 s timeout. Everything runs on 127.0.0.1.");

    // A free port, bound later: until then connections are refused.
    let addr = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tether demo: no free loopback port: {e}");
            return ExitCode::from(crate::EXIT_ERROR);
        }
    };
    let server = tokio::spawn(run_server(addr, narrator.clone(), seen.clone()));

    let policy = {
        let n = narrator.clone();
        let seen = seen.clone();
        ReconnectPolicy::default()
            .backoff(Backoff {
                initial_max: Duration::from_millis(300),
                min: Duration::from_millis(300),
                factor: 1.6,
                // Below the 503's Retry-After of 1 s, so the server's delay
                // is the longer one and is the one honoured.
                max: Duration::from_secs(1),
                jitter: 0.5,
            })
            .reset_after(Duration::from_millis(500))
            .on_event(move |ev| narrate(ev, &n, &seen))
    };
    let provider_calls = Arc::new(AtomicUsize::new(0));
    let calls = provider_calls.clone();
    let n2 = narrator.clone();
    let builder = ClientBuilder::new(format!("ws://{addr}/demo"))
        .ping_interval(Some(Duration::from_millis(500)))
        .ping_timeout(Some(Duration::from_millis(500)))
        .close_timeout(Some(Duration::from_secs(2)))
        .open_timeout(Some(Duration::from_secs(3)))
        .headers_provider(move |req: CredentialsRequest| {
            let calls = calls.clone();
            let n = n2.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let token = if req.refresh {
                    n.say(
                        "client: the token was refused; asking the token provider for a fresh one",
                    );
                    "token-2"
                } else {
                    "token-1"
                };
                let mut h = http::HeaderMap::new();
                h.insert("authorization", format!("Bearer {token}").parse()?);
                Ok(h)
            }
        });
    let mut session = builder.session(policy).queue_capacity(16).start();
    narrator.step(1, "the server is still starting");
    let mut states = session.watch();
    let mut sent_hello = false;
    let mut queued_sent = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(50);
    loop {
        tokio::select! {
            m = session.recv() => match m {
                Some(Message::Text(t)) => {
                    narrator.say(&format!("client: received {:?}", t.as_str()));
                    if t.as_str() == "hello, server" {
                        seen.lock().unwrap_or_else(|p| p.into_inner()).echoed = true;
                    }
                }
                Some(_) => {}
                None => break,
            },
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = states.borrow_and_update().clone();
                match state {
                    SessionState::Open { .. } if !sent_hello => {
                        sent_hello = true;
                        narrator.say("client: sending \"hello, server\"");
                        let _ = session.send(Message::text("hello, server")).await;
                    }
                    SessionState::Waiting { .. } if !queued_sent && seen.lock().unwrap_or_else(|p| p.into_inner()).keepalive_1011 => {
                        queued_sent = true;
                        narrator.step(5, "messages sent while disconnected");
                        for i in 1..=3 {
                            let text = format!("queued message {i}");
                            narrator.say(&format!("client: send({text:?}) while disconnected: queued"));
                            let _ = session.send(Message::text(text)).await;
                        }
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                narrator.say("the demo took too long; stopping");
                break;
            }
        }
    }
    let final_state = session.state();
    if let SessionState::Stopped { error: Some(e) } = &final_state {
        if e.is_auth_refused() {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .stopped_on_401 = Some(chain(&**e));
        }
        narrator.say(&format!("client: stopped for good: {}", chain(&**e)));
        narrator.say(
            "client: a retry cannot fix refused credentials, so tether stops at once and says so.",
        );
    }
    server.abort();
    let feed = resume_story(narrator.clone()).await;
    let elapsed = narrator.start.elapsed();
    let s = seen.lock().unwrap_or_else(|p| p.into_inner());
    let checks = [
        (
            "connection refused while the server started, retried with backoff",
            s.refused_retries >= 1,
        ),
        (
            "503 with Retry-After: 1 honoured",
            s.retry_after_wait
                .is_some_and(|d| d >= Duration::from_secs(1) && d < Duration::from_millis(1500)),
        ),
        ("a good connection exchanged messages", s.echoed),
        (
            "server restart (1012) survived: reconnected",
            s.reconnected_after_1012,
        ),
        (
            "dead peer caught by keepalive (1011), reconnected",
            s.keepalive_1011 && s.reconnected_after_keepalive,
        ),
        (
            "messages queued while disconnected delivered in order",
            s.queued_delivered == ["queued message 1", "queued message 2", "queued message 3"],
        ),
        (
            "expired token: 401, refreshed once",
            s.refreshed && provider_calls.load(Ordering::SeqCst) >= 2,
        ),
        (
            "revoked token: 401 again, clean and clear stop",
            s.stopped_on_401.is_some(),
        ),
        (
            "a feed across a server restart: every tick once, in order, none lost",
            feed.is_ok_and(|got| got == (1..=TICKS).collect::<Vec<_>>()),
        ),
        (
            "finished in under a minute",
            elapsed < Duration::from_secs(60),
        ),
    ];
    println!();
    println!(
        "== Summary ({:.1} s, {} connections)",
        elapsed.as_secs_f64(),
        s.connects
    );
    let mut ok = true;
    for (what, passed) in checks {
        println!("  [{}] {what}", if passed { "ok" } else { "FAILED" });
        ok &= passed;
    }
    if ok {
        println!("Every step behaved as expected.");
        ExitCode::SUCCESS
    } else {
        println!("Some steps did not behave as expected.");
        ExitCode::from(crate::EXIT_ERROR)
    }
}

fn narrate(ev: &Event, n: &Narrator, seen: &Mutex<Seen>) {
    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
    match ev {
        Event::Connecting { attempt, .. } => {
            n.say(&format!("client: connecting (attempt {attempt})"))
        }
        Event::Connected { attempt } => {
            s.connects += 1;
            n.say(&format!("client: connected (attempt {attempt})"));
            if s.closed_1012 == 1 && s.connects >= 2 {
                s.reconnected_after_1012 = true;
            }
            if s.keepalive_1011 {
                s.reconnected_after_keepalive = true;
            }
        }
        Event::Closed {
            code,
            reason,
            open_for,
            ..
        } => {
            let how = crate::output::close_text(code.map(|c| c.0), reason);
            n.say(&format!(
                "client: the connection ended after {:.1} s: {how}",
                open_for.as_secs_f64()
            ));
            let code = code.map_or(0, |c| c.0);
            s.just_closed = true;
            if code == 1012 {
                s.closed_1012 += 1;
            }
            if code == 1011 {
                s.keepalive_1011 = true;
                n.say("client: no pong in time: the peer is dead; tether gives up on it at once (no close timeout)");
            }
        }
        Event::Retry {
            delay,
            source,
            reason,
            status,
            ..
        } => {
            match (source, status) {
                (DelaySource::Refresh, _) => s.refreshed = true,
                (DelaySource::RetryAfter, _) => s.retry_after_wait = Some(*delay),
                _ => {}
            }
            if reason.contains("refused") && status.is_none() {
                s.refused_retries += 1;
            }
            let why = match source {
                DelaySource::RetryAfter => "as the server's Retry-After asks",
                DelaySource::Refresh => "at once, with a refreshed token",
                _ => "backoff with jitter",
            };
            // After a close, the line above already said why.
            if !std::mem::take(&mut s.just_closed) {
                n.say(&format!("client: {reason}"));
            }
            n.say(&format!(
                "client: waiting {:.2} s ({why})",
                delay.as_secs_f64()
            ));
        }
        Event::Stopped { .. } => {}
        _ => {}
    }
}

async fn run_server(addr: std::net::SocketAddr, n: Arc<Narrator>, seen: Arc<Mutex<Seen>>) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let requests = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let nr = n.clone();
    let reqs = requests.clone();
    let builder = ServerBuilder::new()
        .ping_interval(None)
        .process_request(move |_req| {
            let i = reqs.fetch_add(1, Ordering::SeqCst);
            match i {
                0 => {
                    nr.step(2, "the server is up but overloaded");
                    nr.say("server: 503 Service Unavailable, Retry-After: 1");
                    Some(Response::with_body(503, "warming up\n").header("retry-after", "1"))
                }
                1..=3 => None,
                4 => {
                    nr.step(6, "an expired token, then a revoked one");
                    nr.say("server: 401 Unauthorized: the token expired");
                    Some(
                        Response::with_body(401, "token expired\n")
                            .header("www-authenticate", "Bearer"),
                    )
                }
                _ => {
                    nr.say("server: 401 Unauthorized again: this token was revoked");
                    Some(
                        Response::with_body(401, "token revoked\n")
                            .header("www-authenticate", "Bearer"),
                    )
                }
            }
        });
    n.say("server: listening now");
    let nh = n.clone();
    let served = builder
        .serve(addr, move |ws: WebSocket| {
            let k = accepted.fetch_add(1, Ordering::SeqCst);
            let n = nh.clone();
            let seen = seen.clone();
            async move {
                match k {
                    0 => connection_a(ws, &n).await,
                    1 => connection_b(ws, &n).await,
                    _ => connection_c(ws, &n, &seen).await,
                }
            }
        })
        .await;
    match served {
        Ok(mut s) => s.wait().await,
        Err(e) => n.say(&format!("server: could not listen: {}", chain(&e))),
    }
}

/// Echoes for a moment, then restarts.
async fn connection_a(mut ws: WebSocket, n: &Narrator) {
    n.step(3, "a good connection");
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    loop {
        tokio::select! {
            m = ws.recv() => match m {
                Some(Ok(m)) if m.is_data() => {
                    n.say(&format!("server: echoing {:?}", m.as_text().unwrap_or("<binary>")));
                    let _ = ws.send(m).await;
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    n.step(4, "the server restarts");
    n.say("server: restarting: close 1012 (service restart)");
    let _ = ws.close(CloseCode::SERVICE_RESTART, "restarting").await;
}

/// Goes silent: no reads, no pongs, no close. Only keepalive can tell.
async fn connection_b(ws: WebSocket, n: &Narrator) {
    n.step(5, "a dead peer");
    n.say("server: this connection now hangs: no pong, no data, no close (like a dead NAT entry)");
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(ws);
}

/// Acknowledges the queued messages, then rotates credentials.
async fn connection_c(mut ws: WebSocket, n: &Narrator, seen: &Mutex<Seen>) {
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    while got.len() < 3 {
        tokio::select! {
            m = ws.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    n.say(&format!("server: received {:?}", t.as_str()));
                    got.push(t.to_string());
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = tokio::time::sleep_until(until) => break,
        }
    }
    let _ = ws
        .send(Message::text(format!("got {} queued messages", got.len())))
        .await;
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .queued_delivered = got;
    tokio::time::sleep(Duration::from_millis(300)).await;
    n.say("server: rotating credentials: close 1012, the old token will expire");
    let _ = ws
        .close(CloseCode::SERVICE_RESTART, "rotating credentials")
        .await;
}

/// Ticks of the feed in step 7.
const TICKS: u32 = 12;

/// Step 7: a feed on a topic whose server restarts mid-stream. The hub
/// (the topic's history) outlives the listener, as Redis would in
/// production (`tether serve --redis`). Returns the ticks the client got,
/// in the order it got them.
async fn resume_story(n: Arc<Narrator>) -> Result<Vec<u32>, String> {
    n.step(7, "a feed that survives a server restart");
    let hub = Hub::new();
    let listen = |addr: std::net::SocketAddr, hub: Hub| async move {
        ServerBuilder::new()
            .subprotocols([resume::SUBPROTOCOL])
            .serve(addr, move |ws: WebSocket| {
                let topic = hub.topic("ticks");
                async move {
                    let Ok(topic) = topic else { return };
                    let mut member = topic.join(ws).await;
                    while let Some(Ok(_)) = member.recv().await {}
                }
            })
            .await
            .map_err(|e| chain(&e))
    };
    let server = listen("127.0.0.1:0".parse().expect("an address"), hub.clone()).await?;
    let addr = server.local_addr();
    let topic = hub.topic("ticks").map_err(|e| chain(&e))?;
    n.say("server: publishing a tick every 0.1 s on /ticks; each carries an id");
    let last_seen: Arc<Mutex<Option<String>>> = Arc::default();
    let (nr, seen) = (n.clone(), last_seen.clone());
    let policy = ReconnectPolicy::default()
        .backoff(Backoff {
            initial_max: Duration::from_millis(100),
            min: Duration::from_millis(200),
            factor: 1.6,
            max: Duration::from_millis(400),
            jitter: 0.5,
        })
        .on_event(move |ev| match ev {
            // The end of the story closes with 1000: nothing to tell.
            Event::Closed { code, reason, .. } if code.is_some_and(|c| c.0 != 1000) => nr.say(&format!(
                "client: the connection ended: {}; reconnecting with backoff",
                crate::output::close_text(code.map(|c| c.0), reason)
            )),
            Event::Connected { attempt } if *attempt > 1 => {
                let id = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
                nr.say(&format!(
                    "client: reconnected, asking for what came after the last id it saw (?last_id={})",
                    id.unwrap_or_default()
                ));
            }
            _ => {}
        });
    let mut session = ClientBuilder::new(format!("ws://{addr}/ticks"))
        .session(policy)
        .resume(true)
        .start();
    let mut states = session.watch();
    let opened = states.wait_for(|s| matches!(s, SessionState::Open { .. }));
    if tokio::time::timeout(Duration::from_secs(5), opened)
        .await
        .is_err()
    {
        return Err("the client did not connect".into());
    }
    drop(states);
    let (down_tx, mut down_rx) = tokio::sync::watch::channel(Vec::<u32>::new());
    // The restart waits until the client has shown tick 4, so that the
    // story reads in order.
    let shown_4 = Arc::new(tokio::sync::Notify::new());
    let shown = shown_4.clone();
    let np = n.clone();
    let publisher = tokio::spawn(async move {
        let mut server = Some(server);
        let mut missed = Vec::new();
        for i in 1..=TICKS {
            let _ = topic.publish(Message::text(format!("tick {i}"))).await;
            if server.is_none() {
                missed.push(i);
            }
            if i == 4 {
                let _ = tokio::time::timeout(Duration::from_secs(2), shown.notified()).await;
                np.say(
                    "server: restarting (close 1001); ticks 5 to 7 are published while it is down",
                );
                if let Some(s) = server.take() {
                    s.shutdown().await;
                }
            }
            if i == 7 {
                server = listen(addr, hub.clone()).await.ok();
                let _ = down_tx.send(missed.clone());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(s) = server {
            s.shutdown().await;
        }
    });
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < TICKS as usize {
        let item = tokio::select! {
            r = session.recv_or_gap() => r,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        match item {
            Some(Received::Message(m)) => {
                let text = m.as_text().unwrap_or("").to_string();
                let Some(i) = text.strip_prefix("tick ").and_then(|t| t.parse().ok()) else {
                    return Err(format!("unexpected message {text:?}"));
                };
                let missed = down_rx.borrow_and_update().clone();
                if missed.contains(&i) {
                    n.say(&format!(
                        "client: received {text:?} (published while the server was down: replayed after reconnecting)"
                    ));
                } else {
                    n.say(&format!("client: received {text:?}"));
                }
                got.push(i);
                *last_seen.lock().unwrap_or_else(|p| p.into_inner()) =
                    session.last_id().map(|id| id.to_string());
                if i == 4 {
                    shown_4.notify_one();
                }
            }
            Some(Received::Gap(g)) => return Err(format!("a gap: {g}")),
            None => break,
        }
    }
    n.say(&format!(
        "client: {} ticks, in order, each once: nothing lost across the restart",
        got.len()
    ));
    session.close(CloseCode::NORMAL, "").await;
    let _ = publisher.await;
    Ok(got)
}
