//! Fan-out across server processes over Redis, and resuming with no message
//! lost: a real `redis-server` (started here on a free loopback port, no
//! persistence), real `tether serve --broadcast --redis` processes, and
//! tether `Session`s with `resume(true)` as clients.
//!
//! Needs `redis-server` (`interop/install-redis.sh`, run by
//! `scripts/test.sh`).

use std::process::Stdio;
use std::time::Duration;
use tether::reconnect::{Backoff, ReconnectPolicy, Session};
use tether::resume::{Gap, MessageId, Received};
use tether::{ClientBuilder, Message};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tether");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server on `port`, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (install it with interop/install-redis.sh)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            sleep(Duration::from_millis(20)).await;
        }
        Redis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A `tether serve --broadcast --redis` process.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    async fn start(redis: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--broadcast", "--redis", redis, "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let url = line
            .strip_prefix("listening on ")
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, url }
    }

    fn topic(&self, t: &str) -> String {
        format!("{}/{t}", self.url)
    }
}

fn policy() -> ReconnectPolicy {
    ReconnectPolicy::default().backoff(Backoff {
        initial_max: Duration::from_millis(50),
        min: Duration::from_millis(100),
        factor: 1.5,
        max: Duration::from_millis(500),
        jitter: 0.5,
    })
}

fn resuming(url: &str, fallbacks: &[String]) -> Session {
    ClientBuilder::new(url)
        .session(policy())
        .resume(true)
        .fallback_urls(fallbacks.iter().cloned())
        .queue_capacity(1 << 16)
        .queue_bytes(16 << 20)
        .start()
}

/// Waits until the session is open.
async fn opened(s: &Session) {
    let mut w = s.watch();
    timeout(
        Duration::from_secs(10),
        w.wait_for(|st| matches!(st, tether::reconnect::SessionState::Open { .. })),
    )
    .await
    .unwrap()
    .unwrap();
}

/// A plain client that publishes what it sends to its server's topic.
async fn publisher(url: &str) -> tether::WebSocket {
    tether::connect(url).await.unwrap()
}

fn number(m: &Message) -> u64 {
    m.as_text().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_process_reaches_members_of_every_process() {
    let redis = Redis::start(free_port()).await;
    let servers = [
        Server::start(&redis.url(), &[]).await,
        Server::start(&redis.url(), &[]).await,
        Server::start(&redis.url(), &[]).await,
    ];
    let mut clients = Vec::new();
    for s in &servers {
        // One resuming client and one plain one on each process.
        let r = resuming(&s.topic("news"), &[]);
        opened(&r).await;
        clients.push((r, tether::connect(s.topic("news")).await.unwrap()));
    }
    let mut p = publisher(&servers[1].topic("news")).await;
    for i in 0..50 {
        p.send(Message::text(i.to_string())).await.unwrap();
    }
    for (r, plain) in &mut clients {
        for i in 0..50 {
            let m = timeout(Duration::from_secs(10), r.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(m, Message::text(i.to_string()), "framing removed, in order");
            // A plain client gets the bare payload.
            let m = timeout(Duration::from_secs(10), plain.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(m, Message::text(i.to_string()));
        }
        assert!(r.last_id().is_some());
    }
    // The publisher is a member too: it got its own messages back.
    let m = timeout(Duration::from_secs(10), p.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m, Message::text("0"));
    // Another topic is separate.
    let mut other = tether::connect(servers[0].topic("other")).await.unwrap();
    assert!(timeout(Duration::from_millis(300), other.recv())
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_server_killed_mid_stream_clients_resume_elsewhere_without_gap_or_duplicate() {
    const N: u64 = 100_000;
    let redis = Redis::start(free_port()).await;
    let history = ["--history", "300000"];
    let mut servers = vec![
        Server::start(&redis.url(), &history).await,
        Server::start(&redis.url(), &history).await,
        Server::start(&redis.url(), &history).await,
    ];
    // Three clients on the process that will be killed, which then go to
    // the next one; one on each other process.
    let fallback = vec![servers[1].topic("feed")];
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(resuming(&servers[0].topic("feed"), &fallback));
    }
    subs.push(resuming(&servers[1].topic("feed"), &[]));
    subs.push(resuming(&servers[2].topic("feed"), &[]));
    for s in &subs {
        opened(s).await;
    }
    let mut readers = Vec::new();
    for (k, mut s) in subs.into_iter().enumerate() {
        readers.push(tokio::spawn(async move {
            let mut next = 0u64;
            while next < N {
                match timeout(Duration::from_secs(60), s.recv_or_gap()).await {
                    Ok(Some(Received::Message(m))) => {
                        let n = number(&m);
                        assert_eq!(n, next, "client {k}: a gap or a duplicate at {next}");
                        next += 1;
                    }
                    Ok(Some(Received::Gap(g))) => panic!("client {k}: gap {g}"),
                    other => panic!("client {k}: stopped at {next}: {other:?}"),
                }
            }
            next
        }));
    }
    // The publisher sits on the process that stays; it sends in batches,
    // reading its own copies so that it never floods the others.
    let p = tether::connect(servers[2].topic("feed")).await.unwrap();
    let (mut rd, wr) = p.split();
    let echoed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = echoed.clone();
    let echo = tokio::spawn(async move {
        let mut n = 0u64;
        while n < N {
            match rd.recv().await {
                Some(Ok(m)) if m.is_data() => {
                    n += 1;
                    counter.store(n, std::sync::atomic::Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                other => panic!("publisher: {other:?}"),
            }
        }
    });
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut victim = servers.remove(0);
    for i in 0..N {
        // At most 2000 in flight: the server publishes one at a time.
        while i - echoed.load(std::sync::atomic::Ordering::Relaxed) > 2000 {
            sleep(Duration::from_millis(1)).await;
        }
        wr.send(Message::text(i.to_string())).await.unwrap();
        if i == N / 3 {
            // Mid-stream: the process dies without a close frame.
            victim.child.kill().await.unwrap();
            killed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    timeout(Duration::from_secs(120), echo)
        .await
        .unwrap()
        .unwrap();
    for r in readers {
        let got = timeout(Duration::from_secs(120), r).await.unwrap().unwrap();
        assert_eq!(got, N);
    }
    assert!(killed.load(std::sync::atomic::Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_redis_restarted_during_traffic_local_delivery_continues_and_the_gap_is_reported() {
    let port = free_port();
    let redis = Redis::start(port).await;
    let url = redis.url();
    let s0 = Server::start(&url, &[]).await;
    let s1 = Server::start(&url, &[]).await;
    let mut local = resuming(&s0.topic("c"), &[]);
    let mut remote = resuming(&s1.topic("c"), &[]);
    opened(&local).await;
    opened(&remote).await;
    let p = publisher(&s0.topic("c")).await;
    let (mut prd, pwr) = p.split();
    tokio::spawn(async move { while let Some(Ok(_)) = prd.recv().await {} });
    // Before: both receive.
    pwr.send(Message::text("before")).await.unwrap();
    for s in [&mut local, &mut remote] {
        let m = timeout(Duration::from_secs(10), s.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m, Message::text("before"));
    }
    redis.stop().await;
    sleep(Duration::from_millis(300)).await;
    // During: the publisher's own process still delivers, without an id.
    pwr.send(Message::text("during")).await.unwrap();
    let m = timeout(Duration::from_secs(10), local.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, Message::text("during"), "local delivery continues");
    assert!(
        timeout(Duration::from_millis(500), remote.recv())
            .await
            .is_err(),
        "a remote process cannot get it while Redis is down"
    );
    // Back (a new, empty Redis: its history is lost).
    let _redis = Redis::start(port).await;
    // Each process comes back by itself and catches up; its resuming
    // members are told that the history was lost.
    for (name, s) in [("local", &mut local), ("remote", &mut remote)] {
        match timeout(Duration::from_secs(20), s.recv_or_gap())
            .await
            .unwrap()
        {
            Some(Received::Gap(Gap { after, .. })) => assert!(after > MessageId::ZERO),
            other => panic!("{name}: expected a gap, got {other:?}"),
        }
    }
    // And live traffic flows across processes again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    'wait: loop {
        assert!(Instant::now() < deadline, "recovery");
        pwr.send(Message::text(format!("after {i}"))).await.unwrap();
        i += 1;
        while let Ok(Some(m)) = timeout(Duration::from_millis(200), remote.recv()).await {
            if m.as_text().is_some_and(|t| t.starts_with("after")) {
                break 'wait;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_history_shorter_than_the_absence_gives_a_gap() {
    let redis = Redis::start(free_port()).await;
    // Redis trims `MAXLEN ~ 10` by whole nodes (100 entries): publish far
    // more than that while the client is away.
    let s = Server::start(&redis.url(), &["--history", "10"]).await;
    let mut first = resuming(&s.topic("d"), &[]);
    opened(&first).await;
    let p = publisher(&s.topic("d")).await;
    let (mut prd, pwr) = p.split();
    pwr.send(Message::text("0")).await.unwrap();
    assert_eq!(first.recv().await.unwrap(), Message::text("0"));
    let seen = first.last_id().unwrap();
    first.close(tether::CloseCode::NORMAL, "").await;
    for i in 1..=2000 {
        pwr.send(Message::text(i.to_string())).await.unwrap();
    }
    // Wait until all were published (the publisher gets its own back).
    loop {
        let m = timeout(Duration::from_secs(30), prd.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if m.as_text() == Some("2000") {
            break;
        }
    }
    // Comes back with the id it saw, in the URL (as a reconnect does).
    let url = format!("{}?last_id={seen}", s.topic("d"));
    let mut back = resuming(&url, &[]);
    let gap = match timeout(Duration::from_secs(10), back.recv_or_gap())
        .await
        .unwrap()
    {
        Some(Received::Gap(g)) => g,
        other => panic!("expected a gap first, got {other:?}"),
    };
    assert_eq!(gap.after, seen);
    let before = gap.before.expect("the first id still held");
    assert!(before > seen);
    // Then what the history still holds, in order, without a hole, up to
    // the last.
    let mut last: Option<u64> = None;
    while last != Some(2000) {
        match timeout(Duration::from_secs(10), back.recv_or_gap())
            .await
            .unwrap()
        {
            Some(Received::Message(m)) => {
                let n = number(&m);
                match last {
                    None => assert!(n > 1, "messages were trimmed, yet {n} came first"),
                    Some(l) => assert_eq!(n, l + 1, "in order, no hole after the gap"),
                }
                last = Some(n);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Waits until a resuming session has a resume point.
async fn positioned(s: &Session) -> MessageId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(id) = s.last_id() {
            return id;
        }
        assert!(Instant::now() < deadline, "no position from the server");
        sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_a_client_whose_server_dies_before_its_first_message_misses_nothing() {
    let redis = Redis::start(free_port()).await;
    let a = Server::start(&redis.url(), &[]).await;
    let b = Server::start(&redis.url(), &[]).await;
    // Topic "f" has a message already, published through B: A has never
    // delivered it, so A asks Redis where the stream stands. Topic "e" has
    // no stream at all.
    let mut pf = publisher(&b.topic("f")).await;
    pf.send(Message::text("old")).await.unwrap();
    assert_eq!(pf.recv().await.unwrap().unwrap(), Message::text("old"));
    let mut e = resuming(&a.topic("e"), &[b.topic("e")]);
    let mut f = resuming(&a.topic("f"), &[b.topic("f")]);
    assert_eq!(
        positioned(&e).await,
        MessageId::ZERO,
        "before the first entry"
    );
    let at = positioned(&f).await;
    assert!(at > MessageId::ZERO, "after the old message: {at}");
    // A dies before either client received a message; three are published
    // on each topic through B while they are away.
    let mut a = a;
    a.child.kill().await.unwrap();
    let mut pe = publisher(&b.topic("e")).await;
    for i in 1..=3 {
        pe.send(Message::text(i.to_string())).await.unwrap();
        pf.send(Message::text(i.to_string())).await.unwrap();
    }
    for s in [&mut e, &mut f] {
        for i in 1..=3u64 {
            match timeout(Duration::from_secs(10), s.recv_or_gap()).await {
                Ok(Some(Received::Message(m))) => assert_eq!(number(&m), i),
                other => panic!("expected message {i}, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_redis_password_is_never_printed() {
    // Nothing listens on the port: the server says Redis is unreachable,
    // naming the URL without its password, then listens anyway.
    let port = free_port();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["serve", "--broadcast", "--redis", &url, "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(Duration::from_secs(20), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.starts_with("listening on "), "{line}");
    child.kill().await.unwrap();
    let mut err = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut err)
        .await
        .unwrap();
    assert!(err.contains("unreachable"), "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
}
