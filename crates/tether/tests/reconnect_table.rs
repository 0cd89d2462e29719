//! The reconnect tables of `tether::reconnect`, row by row, against a
//! scripted fault server (`tests/fault/mod.rs`): for each failure, how many
//! attempts are made, how long each wait is (from the `Retry` events and,
//! where it matters, from the clock), and what error the user finally sees.
//!
//! Every test uses a small backoff (first delay in [0, 50 ms), then 20 ms
//! doubling up to 400 ms, jitter 0.5), a seeded jitter, and its own servers
//! on port 0, so the tests are fast and can run in parallel.

mod fault;

use fault::{closed_port, FaultServer, Step};
use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tether::reconnect::{
    classify, Backoff, Connections, Decision, DelaySource, Event, Failure, ReconnectPolicy,
};
use tether::{
    ClientBuilder, CloseCode, CredentialsRequest, Error, ErrorKind, Initiator, Message, WebSocket,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The small backoff of these tests.
fn small() -> Backoff {
    Backoff {
        initial_max: ms(50),
        min: ms(20),
        factor: 2.0,
        max: ms(400),
        jitter: 0.5,
    }
}

/// The range of the delay before retry number `n` (0-based) of [`small`]:
/// `[0, 50 ms)` for the first, then `[base / 2, base]`.
fn range(n: usize) -> (Duration, Duration) {
    let b = small();
    if n == 0 {
        return (Duration::ZERO, b.initial_max);
    }
    let base = b.base(n as u32);
    (base.mul_f64(1.0 - b.jitter), base)
}

/// Asserts that `delay` is in the range of retry number `n`.
#[track_caller]
fn assert_backoff(delay: Duration, n: usize) {
    let (lo, hi) = range(n);
    let eps = Duration::from_micros(1);
    assert!(
        delay + eps >= lo && delay <= hi + eps,
        "delay before retry #{n} is {delay:?}, expected in [{lo:?}, {hi:?}]"
    );
}

/// A `Retry` event.
#[derive(Debug, Clone)]
struct Retry {
    attempt: u32,
    delay: Duration,
    source: DelaySource,
    reason: String,
    status: Option<u16>,
}

/// Every event the policy emitted, with the time it was emitted.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(Instant, Event)>>>);

impl Events {
    fn all(&self) -> Vec<Event> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn connecting(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Connecting { url, .. } => Some(url),
                _ => None,
            })
            .collect()
    }

    fn connected(&self) -> Vec<u32> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Connected { attempt } => Some(attempt),
                _ => None,
            })
            .collect()
    }

    fn retries(&self) -> Vec<Retry> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Retry {
                    attempt,
                    delay,
                    source,
                    reason,
                    status,
                } => Some(Retry {
                    attempt,
                    delay,
                    source,
                    reason,
                    status,
                }),
                _ => None,
            })
            .collect()
    }

    fn delays(&self) -> Vec<Duration> {
        self.retries().iter().map(|r| r.delay).collect()
    }

    fn closed(&self) -> Vec<(Option<CloseCode>, Duration)> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Closed { code, open_for, .. } => Some((code, open_for)),
                _ => None,
            })
            .collect()
    }

    fn stopped(&self) -> Vec<(String, Option<u16>, bool)> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Stopped {
                    reason,
                    status,
                    exhausted,
                } => Some((reason, status, exhausted)),
                _ => None,
            })
            .collect()
    }
}

/// The policy of these tests: the small backoff, a seeded jitter, and an
/// observer that records every event.
fn policy(seed: u64) -> (ReconnectPolicy, Events) {
    let events = Events::default();
    let sink = events.clone();
    let p = ReconnectPolicy::default()
        .backoff(small())
        .seed(seed)
        .on_event(move |e| sink.0.lock().unwrap().push((Instant::now(), e.clone())));
    (p, events)
}

/// `connections.next()`, bounded so that a hang fails the test.
async fn next(c: &mut Connections) -> Option<tether::Result<WebSocket>> {
    tokio::time::timeout(Duration::from_secs(8), c.next())
        .await
        .expect("next() hung")
}

/// The next connection, which must succeed.
#[track_caller]
fn ok(r: Option<tether::Result<WebSocket>>) -> WebSocket {
    match r {
        Some(Ok(ws)) => ws,
        Some(Err(e)) => panic!("expected a connection, got the error: {e} ({e:?})"),
        None => panic!("expected a connection, the stream ended"),
    }
}

/// The next item, which must be an error.
#[track_caller]
fn err(r: Option<tether::Result<WebSocket>>) -> Error {
    match r {
        Some(Err(e)) => e,
        Some(Ok(_)) => panic!("expected an error, got a connection"),
        None => panic!("expected an error, the stream ended"),
    }
}

/// Reads until the connection ends; returns what `recv` gave.
async fn drain(ws: &mut WebSocket) -> Vec<tether::Result<Message>> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.recv()).await {
            Ok(Some(r)) => got.push(r),
            Ok(None) => return got,
            Err(_) => panic!("the connection did not end: {got:?}"),
        }
    }
}

/// Checks that the connection echoes.
async fn assert_echoes(ws: &mut WebSocket) {
    ws.send(Message::text("ping?")).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .expect("no echo")
        .expect("closed")
        .expect("error");
    assert_eq!(m, Message::text("ping?"));
}

// ---------------------------------------------------------------------------
// Failed attempts: network
// ---------------------------------------------------------------------------

/// Row: connection refused → retry; `max_attempts` turns it into Exhausted.
#[tokio::test]
async fn refused_is_retried_until_max_attempts() {
    let addr = closed_port().await;
    let (p, ev) = policy(1);
    let mut c = ClientBuilder::new(format!("ws://{addr}/")).reconnecting(p.max_attempts(Some(3)));
    let e = err(next(&mut c).await);
    assert_eq!(e.kind(), ErrorKind::Exhausted, "{e}");
    assert_eq!(e.attempts(), Some(3));
    let last = e.last_error().expect("the last failure");
    assert_eq!(last.kind(), ErrorKind::Connect, "{last}");
    assert_eq!(
        last.io_kind(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{last:?}"
    );
    let shown = e.to_string();
    assert!(shown.contains("gave up after 3 attempts"), "{shown}");
    assert!(shown.contains("max_attempts 3"), "{shown}");
    // Display is one level; the Stopped event tells the whole chain.
    assert!(!shown.contains(&addr.to_string()), "{shown}");
    let stopped = ev.stopped();
    assert!(stopped[0].0.starts_with(&shown), "{stopped:?}");
    assert!(stopped[0].0.contains(&addr.to_string()), "{stopped:?}");
    // The source chain leads to the last failure.
    assert_eq!(
        e.source()
            .and_then(|s| s.downcast_ref::<Error>())
            .map(Error::kind),
        Some(ErrorKind::Connect)
    );

    assert_eq!(ev.connecting().len(), 3);
    let r = ev.retries();
    assert_eq!(r.len(), 2, "{r:?}");
    for (i, r) in r.iter().enumerate() {
        assert_eq!(r.attempt, i as u32 + 2);
        assert_eq!(r.source, DelaySource::Backoff);
        assert_eq!(r.status, None);
        assert_backoff(r.delay, i);
    }
    let s = ev.stopped();
    assert_eq!(s.len(), 1);
    assert!(s[0].2, "exhausted");
    assert!(next(&mut c).await.is_none(), "the stream ends");
    assert_eq!(c.attempts(), 3);
}

/// Row: DNS failure → retry (Exhausted with the last DNS error).
#[tokio::test]
async fn dns_failure_is_retried() {
    let (p, ev) = policy(2);
    let mut c = ClientBuilder::new("ws://no-such-host.invalid/")
        .open_timeout(Some(Duration::from_secs(5)))
        .reconnecting(p.max_attempts(Some(2)));
    let e = err(next(&mut c).await);
    assert_eq!(e.kind(), ErrorKind::Exhausted, "{e}");
    assert_eq!(e.attempts(), Some(2));
    let last = e.last_error().unwrap();
    assert_eq!(last.kind(), ErrorKind::Dns, "{last}");
    assert!(
        last.to_string().contains("no-such-host.invalid"),
        "the last failure names the host: {last}"
    );
    let stopped = ev.stopped();
    assert!(
        stopped[0].0.contains("no-such-host.invalid"),
        "the reason names the host: {stopped:?}"
    );
    assert_eq!(ev.connecting().len(), 2);
    assert_eq!(ev.retries().len(), 1);
    assert_backoff(ev.delays()[0], 0);
    assert!(next(&mut c).await.is_none());
}

/// Row: EOF during the handshake → retry, then success.
#[tokio::test]
async fn eof_during_handshake_is_retried() {
    let server = FaultServer::start(vec![Step::Eof, Step::Eof, Step::echo()]).await;
    let (p, ev) = policy(3);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    assert_eq!(server.connections(), 3);
    assert_eq!(ev.connected(), vec![3]);
    let r = ev.retries();
    assert_eq!(r.len(), 2);
    for (i, r) in r.iter().enumerate() {
        assert!(
            r.reason.contains("closed during the opening handshake"),
            "{}",
            r.reason
        );
        assert_eq!(r.source, DelaySource::Backoff);
        assert_backoff(r.delay, i);
    }
    // The real waits between attempts match the announced delays.
    let at = server.accepted_at();
    for i in 0..2 {
        assert!(at[i + 1] - at[i] >= r[i].delay, "{:?}", at[i + 1] - at[i]);
    }
}

/// Row: reset during the handshake → retry, then success.
#[tokio::test]
async fn reset_during_handshake_is_retried() {
    let server = FaultServer::start(vec![Step::Reset, Step::echo()]).await;
    let (p, ev) = policy(5);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    assert_eq!(ev.connected(), vec![2]);
    let r = ev.retries();
    assert_eq!(r.len(), 1);
    assert!(r[0].reason.contains("handshake"), "{}", r[0].reason);
    assert_backoff(r[0].delay, 0);
    assert_eq!(server.connections(), 2);
}

/// Row: open timeout (the server never answers) → retry, then success.
#[tokio::test]
async fn open_timeout_is_retried() {
    let server = FaultServer::start(vec![Step::Hang, Step::echo()]).await;
    let (p, ev) = policy(4);
    let started = Instant::now();
    let mut c = ClientBuilder::new(server.url())
        .open_timeout(Some(ms(200)))
        .reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    let took = started.elapsed();
    assert_echoes(&mut ws).await;
    assert!(took >= ms(200) && took < ms(1500), "{took:?}");
    assert_eq!(ev.connected(), vec![2]);
    let r = ev.retries();
    assert_eq!(r.len(), 1);
    assert!(r[0].reason.contains("timed out"), "{}", r[0].reason);
    assert_backoff(r[0].delay, 0);
    assert_eq!(server.connections(), 2);
}

// ---------------------------------------------------------------------------
// Failed attempts: HTTP statuses
// ---------------------------------------------------------------------------

/// Row: HTTP 500, 502, 503, 504 → retry (backoff without Retry-After).
#[tokio::test]
async fn server_errors_are_retried() {
    for (i, s) in [500u16, 502, 503, 504].into_iter().enumerate() {
        let server =
            FaultServer::start(vec![Step::status(s).body("upstream is down"), Step::echo()]).await;
        let (p, ev) = policy(10 + i as u64);
        let mut c = ClientBuilder::new(server.url()).reconnecting(p);
        let mut ws = ok(next(&mut c).await);
        assert_echoes(&mut ws).await;
        assert_eq!(ev.connected(), vec![2], "{s}");
        let r = ev.retries();
        assert_eq!(r.len(), 1, "{s}");
        assert_eq!(r[0].status, Some(s));
        assert_eq!(r[0].source, DelaySource::Backoff, "{s}");
        assert!(r[0].reason.contains(&s.to_string()), "{}", r[0].reason);
        assert_backoff(r[0].delay, 0);
        assert_eq!(server.connections(), 2);
    }
}

/// Checks that a status with `Retry-After` waits as long as the header says
/// (`expected`), by the event and by the clock.
async fn retry_after_is_honoured(status: u16, retry_after: &str, expected: Duration) {
    let server = FaultServer::start(vec![
        Step::status(status)
            .header("Retry-After", retry_after)
            .body("slow down"),
        Step::echo(),
    ])
    .await;
    let (p, ev) = policy(20);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    let r = ev.retries();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].delay, expected, "{status}");
    assert_eq!(r[0].source, DelaySource::RetryAfter);
    assert_eq!(r[0].status, Some(status));
    assert_eq!(r[0].attempt, 2);
    let at = server.accepted_at();
    assert_eq!(at.len(), 2);
    let waited = at[1] - at[0];
    assert!(
        waited >= expected && waited < expected + ms(900),
        "{status}: waited {waited:?}"
    );
}

/// Row: 503 with `Retry-After: 2` → the next attempt comes 2 s later.
#[tokio::test]
async fn status_503_honours_retry_after() {
    retry_after_is_honoured(503, "2", Duration::from_secs(2)).await;
}

/// Row: 408 with `Retry-After: 1` → honoured.
#[tokio::test]
async fn status_408_honours_retry_after() {
    retry_after_is_honoured(408, "1", Duration::from_secs(1)).await;
}

/// Row: 429 with `Retry-After: 1` → honoured.
#[tokio::test]
async fn status_429_honours_retry_after() {
    retry_after_is_honoured(429, "1", Duration::from_secs(1)).await;
}

/// Row: `Retry-After` as an HTTP date.
#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let server = FaultServer::start(vec![
        Step::status(503).header("Retry-After", &when),
        Step::echo(),
    ])
    .await;
    let (p, ev) = policy(21);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let _ws = ok(next(&mut c).await);
    let r = ev.retries();
    assert_eq!(r[0].source, DelaySource::RetryAfter);
    // The date has a precision of one second.
    assert!(
        r[0].delay > ms(900) && r[0].delay <= Duration::from_secs(2),
        "{:?}",
        r[0].delay
    );
    let at = server.accepted_at();
    assert!(at[1] - at[0] >= r[0].delay);
}

/// `Retry-After` is capped by `max_retry_after`.
#[tokio::test]
async fn retry_after_is_capped() {
    let server = FaultServer::start(vec![
        Step::status(503).header("Retry-After", "3600"),
        Step::echo(),
    ])
    .await;
    let (p, ev) = policy(22);
    let started = Instant::now();
    let mut c = ClientBuilder::new(server.url()).reconnecting(p.max_retry_after(ms(300)));
    let _ws = ok(next(&mut c).await);
    let took = started.elapsed();
    let r = ev.retries();
    assert_eq!(r[0].delay, ms(300));
    assert_eq!(r[0].source, DelaySource::RetryAfter);
    assert!(took >= ms(300) && took < ms(1500), "{took:?}");
}

/// The backoff of the hot-loop tests: slow enough that 8 s hold a dozen
/// attempts, so a hot loop (thousands) cannot hide.
fn hot_loop_backoff() -> Backoff {
    Backoff {
        initial_max: ms(200),
        min: ms(200),
        factor: 2.0,
        max: ms(2000),
        jitter: 0.5,
    }
}

/// The most attempts the backoff schedule allows in `window`: every delay
/// at the bottom of its range.
fn schedule_count(b: &Backoff, window: Duration) -> usize {
    // Attempt 1 comes at once; attempt n + 2 comes after delay n.
    let mut at = Duration::ZERO;
    for n in 0u32.. {
        at += if n == 0 {
            Duration::ZERO
        } else {
            b.base(n).mul_f64(1.0 - b.jitter)
        };
        if at > window {
            return n as usize + 1;
        }
    }
    unreachable!()
}

/// A server that keeps answering with `step` (a status whose `Retry-After`
/// is zero or in the past) gets no more attempts in 8 s than the backoff
/// schedule allows, and the delays grow: the server's delay never shortens
/// the backoff.
async fn retry_after_never_beats_the_backoff(step: Step, seed: u64) {
    let server = FaultServer::start(vec![step]).await;
    let (p, ev) = policy(seed);
    let b = hot_loop_backoff();
    let mut c = ClientBuilder::new(server.url()).reconnecting(p.backoff(b));
    let window = Duration::from_secs(8);
    // Every attempt fails and is retried: the stream yields nothing.
    assert!(tokio::time::timeout(window, c.next()).await.is_err());
    drop(c);
    let attempts = server.connections();
    let allowed = schedule_count(&b, window);
    assert!(
        attempts <= allowed + 1,
        "{attempts} attempts in 8 s, the backoff allows {allowed}"
    );
    assert!(attempts >= 4, "only {attempts} attempts");
    let r = ev.retries();
    assert!(r.len() + 1 >= attempts, "{} retries", r.len());
    for (i, r) in r.iter().enumerate() {
        assert_eq!(r.source, DelaySource::Backoff, "retry #{i}: {r:?}");
        let (lo, hi) = if i == 0 {
            (Duration::ZERO, b.initial_max)
        } else {
            let base = b.base(i as u32);
            (base.mul_f64(1.0 - b.jitter), base)
        };
        assert!(
            r.delay + Duration::from_micros(1) >= lo && r.delay <= hi,
            "retry #{i}: {:?} not in [{lo:?}, {hi:?}]",
            r.delay
        );
    }
    // Retries #1 to #4 have ranges that meet end to end (factor 2, jitter
    // 0.5), so the delays only grow until the cap.
    let d: Vec<Duration> = r.iter().map(|r| r.delay).collect();
    assert!(d[1..5].windows(2).all(|w| w[1] >= w[0]), "growing: {d:?}");
    // And the clock agrees: no two attempts closer than the smallest delay
    // the schedule allows after the first.
    let at = server.accepted_at();
    for (i, w) in at.windows(2).enumerate().skip(1) {
        let lo = b.base(i as u32).mul_f64(1.0 - b.jitter);
        assert!(
            w[1] - w[0] + ms(5) >= lo,
            "attempts {i} and {} were {:?} apart",
            i + 1,
            w[1] - w[0]
        );
    }
}

/// Row: 503 with `Retry-After: 0`, forever → the backoff schedule, not a
/// hot loop.
#[tokio::test]
async fn retry_after_zero_is_not_a_hot_loop() {
    retry_after_never_beats_the_backoff(
        Step::status(503).header("Retry-After", "0").body("busy"),
        30,
    )
    .await;
}

/// Row: 503 with a `Retry-After` date in the past (clock skew), forever →
/// the backoff schedule.
#[tokio::test]
async fn retry_after_in_the_past_is_not_a_hot_loop() {
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(30));
    retry_after_never_beats_the_backoff(
        Step::status(503).header("Retry-After", &past).body("busy"),
        31,
    )
    .await;
}

/// Row: 429 with `Retry-After: 0`, forever → the backoff schedule.
#[tokio::test]
async fn status_429_retry_after_zero_is_not_a_hot_loop() {
    retry_after_never_beats_the_backoff(
        Step::status(429)
            .header("Retry-After", "0")
            .body("slow down"),
        32,
    )
    .await;
}

/// A `Retry-After` shorter than the backoff delay gives way to it; a longer
/// one wins, and the event says which rule chose.
#[tokio::test]
async fn the_longer_of_retry_after_and_backoff_wins() {
    // The first backoff delay is in [0, 50 ms): a 1 s Retry-After wins.
    // Then 503 with Retry-After 0 twice: the backoff's delays.
    let server = FaultServer::start(vec![
        Step::status(503).header("Retry-After", "1"),
        Step::status(503).header("Retry-After", "0"),
        Step::status(503).header("Retry-After", "0"),
        Step::echo(),
    ])
    .await;
    let (p, ev) = policy(33);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let _ws = ok(next(&mut c).await);
    let r = ev.retries();
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!(
        (r[0].delay, r[0].source),
        (Duration::from_secs(1), DelaySource::RetryAfter)
    );
    for (i, r) in r.iter().enumerate().skip(1) {
        assert_eq!(r.source, DelaySource::Backoff, "{r:?}");
        assert_backoff(r.delay, i);
    }
}

/// Row: 401 and 403 → fatal at once, with the status and the body.
#[tokio::test]
async fn auth_refusals_are_fatal_at_once() {
    for s in [401u16, 403] {
        let server = FaultServer::start(vec![Step::status(s)
            .header("WWW-Authenticate", "Bearer")
            .body("token expired")])
        .await;
        let (p, ev) = policy(30);
        let mut c = ClientBuilder::new(server.url())
            .header("Authorization", "Bearer s3cret-token")
            .unwrap()
            .reconnecting(p);
        let e = err(next(&mut c).await);
        assert_eq!(e.kind(), ErrorKind::HttpStatus, "{e}");
        assert_eq!(e.status(), Some(s));
        assert!(e.is_auth_refused());
        assert!(!e.is_retryable());
        assert_eq!(e.attempts(), Some(1));
        let shown = e.to_string();
        assert!(shown.contains("refused the credentials"), "{shown}");
        assert!(shown.contains(&s.to_string()), "{shown}");
        assert!(shown.contains("token expired"), "the body excerpt: {shown}");
        assert!(!shown.contains("s3cret"), "no credentials: {shown}");
        assert!(next(&mut c).await.is_none(), "{s}: the stream ends");
        assert_eq!(ev.connecting().len(), 1);
        assert!(ev.retries().is_empty());
        let st = ev.stopped();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].1, Some(s));
        assert!(!st[0].2, "not exhausted");
        tokio::time::sleep(ms(100)).await;
        assert_eq!(server.connections(), 1, "{s}: exactly one attempt");
    }
}

/// Row: other statuses (other 4xx, 2xx, unfollowable 3xx) → fatal.
#[tokio::test]
async fn other_statuses_are_fatal() {
    let cases = [
        Step::status(400).body("bad request"),
        Step::status(404).body("no such feed"),
        Step::status(200).body("<html>hello</html>"),
        // A redirect without a Location cannot be followed.
        Step::status(302),
        Step::status(426),
    ];
    for step in cases {
        let code = match &step {
            Step::Status { code, .. } => *code,
            _ => unreachable!(),
        };
        let server = FaultServer::start(vec![step]).await;
        let (p, ev) = policy(31);
        let mut c = ClientBuilder::new(server.url()).reconnecting(p);
        let e = err(next(&mut c).await);
        assert_eq!(e.kind(), ErrorKind::HttpStatus, "{code}: {e}");
        assert_eq!(e.status(), Some(code));
        assert!(!e.is_auth_refused());
        assert_eq!(e.attempts(), Some(1));
        assert!(
            e.to_string().contains("rejected the WebSocket upgrade"),
            "{e}"
        );
        assert!(e.to_string().contains(&code.to_string()), "{e}");
        assert!(next(&mut c).await.is_none());
        assert_eq!(ev.connecting().len(), 1, "{code}");
        assert_eq!(server.connections(), 1, "{code}");
    }
}

// ---------------------------------------------------------------------------
// Redirects
// ---------------------------------------------------------------------------

/// Row: 302 to another origin → followed inside the attempt, without the
/// credentials; a later reconnect starts over at the original URL.
#[tokio::test]
async fn temporary_redirect_drops_credentials_and_is_not_kept() {
    let b = FaultServer::start(vec![Step::echo()]).await;
    let a = FaultServer::start(vec![Step::redirect(
        302,
        &format!("http://{}/moved?x=1", b.addr()),
    )])
    .await;
    let (p, ev) = policy(40);
    let mut c = ClientBuilder::new(a.url_with("/feed"))
        .header("Authorization", "Bearer s3cret")
        .unwrap()
        .header("Cookie", "sid=abc")
        .unwrap()
        .header("X-Trace", "t1")
        .unwrap()
        .header("X-Api-Key", "k-123")
        .unwrap()
        .header("X-Tenant-Pin", "4321")
        .unwrap()
        .sensitive_header("X-Tenant-Pin")
        .reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    let (ra, rb) = (a.requests(), b.requests());
    assert_eq!((ra.len(), rb.len()), (1, 1));
    assert_eq!(ra[0].path(), "/feed");
    assert_eq!(ra[0].header("authorization"), Some("Bearer s3cret"));
    assert_eq!(rb[0].path(), "/moved?x=1");
    assert_eq!(rb[0].header("authorization"), None, "credentials dropped");
    assert_eq!(rb[0].header("cookie"), None, "cookies dropped");
    assert_eq!(rb[0].header("x-api-key"), None, "API keys dropped");
    assert_eq!(
        rb[0].header("x-tenant-pin"),
        None,
        "a header registered as sensitive is dropped"
    );
    assert_eq!(ra[0].header("x-api-key"), Some("k-123"), "sent to A");
    assert_eq!(rb[0].header("x-trace"), Some("t1"), "other headers kept");
    assert_eq!(rb[0].header("host"), Some(b.addr().to_string().as_str()));

    // The user drops the connection: the next one starts at A again.
    drop(ws);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    let (ra, rb) = (a.requests(), b.requests());
    assert_eq!((ra.len(), rb.len()), (2, 2), "back to the original URL");
    assert_eq!(ra[1].header("authorization"), Some("Bearer s3cret"));
    assert_eq!(rb[1].header("authorization"), None);
    assert_eq!(ev.connected(), vec![1, 2], "one attempt each");
    let urls = ev.connecting();
    assert!(
        urls.iter().all(|u| u.contains(&a.addr().to_string())),
        "{urls:?}"
    );
}

/// Row: 301 within the same origin → later reconnects go straight to the
/// new URL. (A permanent redirect to another origin is not kept: see
/// `permanent_redirect_to_another_origin_never_gets_the_credentials`.)
#[tokio::test]
async fn permanent_redirect_is_kept() {
    let a = FaultServer::start(vec![Step::redirect(301, "/new"), Step::echo()]).await;
    let (p, ev) = policy(41);
    let mut c = ClientBuilder::new(a.url_with("/old")).reconnecting(p);
    let ws = ok(next(&mut c).await);
    drop(ws);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    assert_eq!(a.connections(), 3, "the old URL is not asked again");
    let paths: Vec<String> = a.requests().iter().map(|r| r.path().to_string()).collect();
    assert_eq!(paths, vec!["/old", "/new", "/new"]);
    let urls = ev.connecting();
    assert!(urls[1].ends_with("/new"), "{urls:?}");
}

/// A chain with one temporary hop (301 then 302) is not kept.
#[tokio::test]
async fn redirect_chain_with_a_temporary_hop_is_not_kept() {
    let c3 = FaultServer::start(vec![Step::echo()]).await;
    let b = FaultServer::start(vec![Step::redirect(302, &c3.url_with("/c"))]).await;
    let a = FaultServer::start(vec![Step::redirect(301, &b.url_with("/b"))]).await;
    let (p, ev) = policy(45);
    let mut c = ClientBuilder::new(a.url_with("/a")).reconnecting(p);
    drop(ok(next(&mut c).await));
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    assert_eq!(
        (a.connections(), b.connections(), c3.connections()),
        (2, 2, 2)
    );
    assert_eq!(c3.requests()[1].path(), "/c");
    assert_eq!(ev.connected(), vec![1, 2]);
}

/// After a permanent redirect to another origin, later reconnects go to the
/// new origin: they must not carry the credentials that were dropped when
/// the redirect was first followed.
///
/// BUG: the builder's Authorization header is sent to the new origin on
/// every reconnect after the first.
#[tokio::test]
async fn permanent_redirect_to_another_origin_never_gets_the_credentials() {
    let b = FaultServer::start(vec![Step::echo()]).await;
    let a = FaultServer::start(vec![Step::redirect(308, &format!("ws://{}/new", b.addr()))]).await;
    let (p, _ev) = policy(42);
    let mut c = ClientBuilder::new(a.url_with("/old"))
        .header("Authorization", "Bearer s3cret")
        .unwrap()
        .reconnecting(p);
    drop(ok(next(&mut c).await));
    drop(ok(next(&mut c).await));
    let rb = b.requests();
    assert_eq!(rb.len(), 2);
    assert_eq!(rb[0].header("authorization"), None, "dropped on the hop");
    assert_eq!(
        rb[1].header("authorization"),
        None,
        "the reconnect to the new origin sent A's credentials to B"
    );
}

/// Row: more than 10 redirects → ErrorKind::Redirect, fatal. A same-origin
/// redirect keeps the credentials.
#[tokio::test]
async fn too_many_redirects_are_fatal() {
    let server = FaultServer::start(vec![Step::redirect(302, "/again")]).await;
    let (p, ev) = policy(43);
    let mut c = ClientBuilder::new(server.url())
        .header("Authorization", "Bearer s3cret")
        .unwrap()
        .reconnecting(p);
    let e = err(next(&mut c).await);
    assert_eq!(e.kind(), ErrorKind::Redirect, "{e}");
    assert!(e.to_string().contains("too many redirects"), "{e}");
    assert_eq!(e.attempts(), Some(1));
    assert!(next(&mut c).await.is_none());
    let reqs = server.requests();
    assert_eq!(reqs.len(), 11, "the first request and 10 redirects");
    assert!(
        reqs.iter()
            .all(|r| r.header("authorization") == Some("Bearer s3cret")),
        "same origin: credentials kept"
    );
    assert_eq!(reqs[10].path(), "/again");
    assert_eq!(ev.connecting().len(), 1);
}

/// A redirect to an unsupported scheme → ErrorKind::Redirect, fatal.
#[tokio::test]
async fn unfollowable_redirect_is_fatal() {
    let server = FaultServer::start(vec![Step::redirect(307, "ftp://example.com/")]).await;
    let (p, _ev) = policy(44);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let e = err(next(&mut c).await);
    assert_eq!(e.kind(), ErrorKind::Redirect, "{e}");
    assert!(e.to_string().contains("ftp"), "{e}");
    assert_eq!(e.attempts(), Some(1));
    assert!(next(&mut c).await.is_none());
    assert_eq!(server.connections(), 1);
}

// ---------------------------------------------------------------------------
// Fatal before or during the handshake
// ---------------------------------------------------------------------------

/// Row: invalid URL or unsupported scheme (including wss:// in a build
/// without TLS) → fatal before any attempt.
#[tokio::test]
async fn invalid_url_is_fatal_before_any_attempt() {
    let mut urls = vec!["http://x/", "not a url", "ws://x/#frag"];
    if cfg!(not(feature = "rustls")) {
        urls.push("wss://127.0.0.1:9/");
    }
    for url in urls {
        let (p, ev) = policy(50);
        let mut c = ClientBuilder::new(url).reconnecting(p);
        let e = err(next(&mut c).await);
        assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{url}: {e}");
        assert!(e.to_string().contains("invalid URL"), "{e}");
        assert!(next(&mut c).await.is_none());
        assert!(ev.connecting().is_empty(), "{url}: no attempt");
        assert_eq!(ev.stopped().len(), 1);
        assert_eq!(c.attempts(), 0);
    }
}

/// Row: invalid handshake response (bad accept key) → fatal.
#[tokio::test]
async fn bad_accept_key_is_fatal() {
    let server = FaultServer::start(vec![Step::BadAccept]).await;
    let (p, ev) = policy(51);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let e = err(next(&mut c).await);
    assert_eq!(e.kind(), ErrorKind::Handshake, "{e}");
    // What is wrong with the handshake is the source (the protocol error).
    let cause = e.source().expect("the handshake error").to_string();
    assert!(cause.contains("Sec-WebSocket-Accept"), "{e}: {cause}");
    assert_eq!(e.attempts(), Some(1));
    assert!(next(&mut c).await.is_none());
    assert_eq!(ev.connecting().len(), 1);
    assert_eq!(server.connections(), 1);
}

// ---------------------------------------------------------------------------
// Credentials provider
// ---------------------------------------------------------------------------

/// A provider that returns "Bearer old", or "Bearer new" when asked to
/// refresh; records what it was asked.
fn token_provider(builder: ClientBuilder) -> (ClientBuilder, Arc<Mutex<Vec<CredentialsRequest>>>) {
    let calls: Arc<Mutex<Vec<CredentialsRequest>>> = Arc::default();
    let log = calls.clone();
    let b = builder.headers_provider(move |req: CredentialsRequest| {
        log.lock().unwrap().push(req);
        async move {
            let token = if req.refresh { "new" } else { "old" };
            let mut h = http::HeaderMap::new();
            h.insert("authorization", format!("Bearer {token}").parse()?);
            Ok(h)
        }
    });
    (b, calls)
}

/// Row: 401 with a credentials provider → one refresh, one immediate retry.
#[tokio::test]
async fn refused_credentials_are_refreshed_once() {
    let server = FaultServer::start(vec![Step::choose(|r| {
        if r.header("authorization") == Some("Bearer new") {
            Step::echo()
        } else {
            Step::status(401).body("token expired")
        }
    })])
    .await;
    let (p, ev) = policy(60);
    let (b, calls) = token_provider(ClientBuilder::new(server.url()));
    let started = Instant::now();
    let mut c = b.reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    assert!(started.elapsed() < ms(1000));
    assert_echoes(&mut ws).await;
    assert_eq!(ev.connected(), vec![2]);
    let r = ev.retries();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].delay, Duration::ZERO);
    assert_eq!(r[0].source, DelaySource::Refresh);
    assert_eq!(r[0].status, Some(401));
    assert_eq!(r[0].attempt, 2);
    let auth: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(auth, ["Bearer old", "Bearer new"]);
    let calls: Vec<_> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| (c.attempt, c.refresh))
        .collect();
    assert_eq!(calls, [(1, false), (2, true)]);
}

/// Row: a server that refuses every token → fatal after exactly 2 attempts.
#[tokio::test]
async fn credentials_refused_twice_are_fatal() {
    let server = FaultServer::start(vec![Step::status(403).body("go away")]).await;
    let (p, ev) = policy(61);
    let (b, calls) = token_provider(ClientBuilder::new(server.url()));
    let mut c = b.reconnecting(p);
    let e = err(next(&mut c).await);
    assert_eq!(e.kind(), ErrorKind::HttpStatus, "{e}");
    assert_eq!(e.status(), Some(403));
    assert!(e.is_auth_refused());
    assert_eq!(e.attempts(), Some(2));
    assert!(e.to_string().contains("go away"), "{e}");
    assert!(next(&mut c).await.is_none());
    assert_eq!(server.connections(), 2);
    assert_eq!(ev.connecting().len(), 2);
    let r = ev.retries();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].source, DelaySource::Refresh);
    assert_eq!(calls.lock().unwrap().len(), 2);
}

/// Row: the credentials provider fails → retry.
#[tokio::test]
async fn credentials_provider_error_is_retried() {
    let server = FaultServer::start(vec![Step::echo()]).await;
    let (p, ev) = policy(62);
    let mut c = ClientBuilder::new(server.url())
        .headers_provider(|req: CredentialsRequest| async move {
            if req.attempt == 1 {
                return Err("token service unreachable".into());
            }
            let mut h = http::HeaderMap::new();
            h.insert("authorization", "Bearer fresh".parse()?);
            Ok(h)
        })
        .reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    assert_eq!(ev.connected(), vec![2]);
    let r = ev.retries();
    assert_eq!(r.len(), 1);
    assert!(
        r[0].reason.contains("credentials provider failed")
            && r[0].reason.contains("token service unreachable"),
        "{}",
        r[0].reason
    );
    assert_eq!(r[0].source, DelaySource::Backoff);
    assert_eq!(
        server.connections(),
        1,
        "the failed attempt did not connect"
    );
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer fresh")
    );
}

// ---------------------------------------------------------------------------
// Established connections: how they ended
// ---------------------------------------------------------------------------

/// Row: closed by the peer with 1000, 1001, 1005, 1006 (no close frame:
/// FIN or RST),
/// 1011, 1012, 1013, 1014, other 3000-3999 → reconnect after a delay.
#[tokio::test]
async fn close_codes_that_reconnect() {
    let cases: Vec<(Step, u16)> = vec![
        (Step::close(1000, "bye"), 1000),
        (Step::close(1001, "going away"), 1001),
        (Step::close_without_code(), 1005),
        (Step::drop_tcp(), 1006),
        (Step::reset_tcp(), 1006),
        (Step::close(1011, "oops"), 1011),
        (Step::close(1012, "restarting"), 1012),
        (Step::close(1013, "later"), 1013),
        (Step::close(1014, "bad gateway"), 1014),
        (Step::close(3008, "app"), 3008),
    ];
    for (step, code) in cases {
        let server = FaultServer::start(vec![step, Step::echo()]).await;
        let (p, ev) = policy(70 + u64::from(code));
        let mut c = ClientBuilder::new(server.url()).reconnecting(p);
        let mut ws = ok(next(&mut c).await);
        let got = drain(&mut ws).await;
        match code {
            1006 => {
                let e = got
                    .iter()
                    .find_map(|r| r.as_ref().err())
                    .unwrap_or_else(|| panic!("1006: {got:?}"));
                assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
                assert_eq!(e.close_code(), Some(CloseCode::ABNORMAL));
            }
            1005 => assert!(
                matches!(got.first(), Some(Ok(Message::Close(None)))),
                "{got:?}"
            ),
            _ => assert!(
                matches!(got.first(), Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode(code)),
                "{code}: {got:?}"
            ),
        }
        drop(ws);
        let mut ws = ok(next(&mut c).await);
        assert_echoes(&mut ws).await;
        let closed = ev.closed();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].0, Some(CloseCode(code)), "{code}");
        let r = ev.retries();
        assert_eq!(r.len(), 1, "{code}");
        assert!(r[0].delay > Duration::ZERO, "{code}: a delay");
        assert_backoff(r[0].delay, 0);
        assert_eq!(server.connections(), 2, "{code}");
    }
}

/// Row: closed by the peer with 1002, 1003, 1007, 1008, 1009, 1010, 3000,
/// 3003, 4000-4999 → stop, with an error naming the code and reason.
#[tokio::test]
async fn close_codes_that_stop() {
    for code in [
        1002u16, 1003, 1007, 1008, 1009, 1010, 3000, 3003, 4000, 4999,
    ] {
        let server = FaultServer::start(vec![Step::close(code, "go away"), Step::echo()]).await;
        let (p, ev) = policy(80);
        let mut c = ClientBuilder::new(server.url()).reconnecting(p);
        let mut ws = ok(next(&mut c).await);
        let got = drain(&mut ws).await;
        assert!(
            matches!(got.first(), Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode(code)),
            "{code}: {got:?}"
        );
        drop(ws);
        let e = err(next(&mut c).await);
        assert_eq!(e.kind(), ErrorKind::Closed, "{code}: {e}");
        assert_eq!(e.close_code(), Some(CloseCode(code)));
        assert_eq!(e.initiator(), Some(Initiator::Remote));
        assert_eq!(e.attempts(), Some(1));
        let shown = e.to_string();
        assert!(shown.contains(&code.to_string()), "{shown}");
        assert!(shown.contains("go away"), "the reason: {shown}");
        assert!(shown.contains("not reconnecting"), "{shown}");
        assert!(next(&mut c).await.is_none(), "{code}: the stream ends");
        assert_eq!(ev.closed().len(), 1);
        assert!(ev.retries().is_empty(), "{code}");
        assert_eq!(ev.stopped().len(), 1);
        assert_eq!(server.connections(), 1, "{code}: no reconnect");
    }
}

/// Row: this end failed the connection because the peer broke the protocol
/// (1002, 1007, 1009) → stop.
#[tokio::test]
async fn local_protocol_failures_stop() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // RSV1 set without an extension.
        (fault::server_frame(0xC1, b"a"), 1002),
        // A text message that is not UTF-8.
        (fault::server_frame(0x81, &[0xff, 0xfe]), 1007),
        // Over max_message_size (16).
        (fault::server_frame(0x81, &[b'a'; 64]), 1009),
    ];
    for (bytes, code) in cases {
        let server = FaultServer::start(vec![Step::raw(bytes), Step::echo()]).await;
        let (p, ev) = policy(90);
        let mut c = ClientBuilder::new(server.url())
            .max_message_size(Some(16))
            .reconnecting(p);
        let mut ws = ok(next(&mut c).await);
        let got = drain(&mut ws).await;
        let e = got
            .iter()
            .find_map(|r| r.as_ref().err())
            .unwrap_or_else(|| panic!("{code}: {got:?}"));
        assert_eq!(e.kind(), ErrorKind::Protocol, "{code}: {e}");
        assert_eq!(e.close_code(), Some(CloseCode(code)));
        drop(ws);
        let e = err(next(&mut c).await);
        assert_eq!(e.kind(), ErrorKind::Closed, "{code}: {e}");
        assert_eq!(e.close_code(), Some(CloseCode(code)));
        assert_eq!(e.initiator(), Some(Initiator::Local));
        assert!(e.to_string().contains(&code.to_string()), "{e}");
        assert!(next(&mut c).await.is_none());
        assert_eq!(ev.closed()[0].0, Some(CloseCode(code)));
        assert_eq!(server.connections(), 1, "{code}");
    }
}

/// Row: closed by the user → reconnect, whatever the code.
#[tokio::test]
async fn user_close_reconnects() {
    let server = FaultServer::start(vec![Step::echo()]).await;
    let (p, ev) = policy(91);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    ws.close(CloseCode(4000), "done here").await.unwrap();
    drop(ws);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    assert_eq!(ev.closed()[0].0, Some(CloseCode(4000)));
    assert_eq!(server.connections(), 2);
}

/// Row: a server that accepts and closes at once cannot drive a hot loop:
/// the backoff does not reset (the connections lasted less than
/// `reset_after`), so the delays grow and the connections stay few.
#[tokio::test]
async fn accept_and_close_at_once_is_not_a_hot_loop() {
    let server = FaultServer::start(vec![Step::close(1000, "bye")]).await;
    let (p, ev) = policy(100);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p);
    let started = Instant::now();
    let mut opened = 0;
    while started.elapsed() < ms(1500) {
        let mut ws = ok(next(&mut c).await);
        opened += 1;
        drain(&mut ws).await;
    }
    let n = server.connections();
    assert_eq!(n, opened);
    assert!((6..20).contains(&n), "{n} connections in 1.5 s");
    let d = ev.delays();
    assert_eq!(d.len(), n - 1);
    for (i, d) in d.iter().enumerate() {
        assert_backoff(*d, i);
    }
    // From the second delay until the cap (base 320 ms, retry #5), each
    // range starts where the previous one ends: the delays only grow.
    let uncapped = &d[1..d.len().min(6)];
    assert!(uncapped.windows(2).all(|w| w[1] >= w[0]), "growing: {d:?}");
    assert!(d[4..].iter().all(|d| *d >= ms(80)), "{d:?}");
    assert!(ev
        .closed()
        .iter()
        .all(|(c, _)| *c == Some(CloseCode::NORMAL)));
}

/// A connection that stayed open longer than `reset_after` resets the
/// backoff: the next delay is from the first-delay range again.
#[tokio::test]
async fn long_enough_connection_resets_the_backoff() {
    let server = FaultServer::start(vec![
        Step::Eof,
        Step::Eof,
        Step::Eof,
        Step::Eof,
        Step::Eof,
        Step::close_after(1000, "bye", ms(200)),
    ])
    .await;
    let (p, ev) = policy(101);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p.reset_after(ms(100)));
    let mut ws = ok(next(&mut c).await);
    drain(&mut ws).await;
    drop(ws);
    let _ws = ok(next(&mut c).await);
    let d = ev.delays();
    assert_eq!(d.len(), 6, "{d:?}");
    for (i, d) in d[..5].iter().enumerate() {
        assert_backoff(*d, i);
    }
    assert!(ev.closed()[0].1 >= ms(150), "{:?}", ev.closed());
    // Without the reset it would be in [160, 320] ms.
    assert_backoff(d[5], 0);
}

/// Row: 1013 "try again later" never resets the backoff, even after a
/// connection that stayed open long enough; 1000 does.
#[tokio::test]
async fn try_again_later_never_resets_the_backoff() {
    async fn delays(code: u16) -> Vec<Duration> {
        let server = FaultServer::start(vec![Step::close_after(code, "later", ms(150))]).await;
        let (p, ev) = policy(102);
        let mut c = ClientBuilder::new(server.url()).reconnecting(p.reset_after(ms(100)));
        for _ in 0..5 {
            let mut ws = ok(next(&mut c).await);
            drain(&mut ws).await;
        }
        let closed = ev.closed();
        assert!(closed.iter().all(|(_, t)| *t >= ms(100)), "{closed:?}");
        ev.delays()
    }
    let (later, normal) = tokio::join!(delays(1013), delays(1000));
    assert_eq!(later.len(), 4);
    for (i, d) in later.iter().enumerate() {
        assert_backoff(*d, i);
    }
    assert!(later[3] >= ms(40), "1013 keeps growing: {later:?}");
    for d in &normal {
        assert_backoff(*d, 0);
    }
}

/// Row: keepalive timeout (a half-open peer) → reconnect, promptly, without
/// waiting for the close timeout.
#[tokio::test]
async fn half_open_peer_is_detected_and_replaced() {
    let server = FaultServer::start(vec![Step::silent(), Step::echo()]).await;
    let (p, ev) = policy(110);
    let started = Instant::now();
    let mut c = ClientBuilder::new(server.url())
        .ping_interval(Some(ms(100)))
        .ping_timeout(Some(ms(100)))
        .reconnecting(p);
    let mut ws = ok(next(&mut c).await);
    let t0 = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .expect("no keepalive timeout")
        .expect("an error, not the end")
        .expect_err("an error");
    let detected = t0.elapsed();
    assert_eq!(e.kind(), ErrorKind::KeepaliveTimeout, "{e}");
    assert_eq!(e.close_code(), Some(CloseCode::INTERNAL_ERROR));
    assert!(detected >= ms(150) && detected < ms(1000), "{detected:?}");
    assert!(drain(&mut ws).await.is_empty());
    drop(ws);
    let mut ws = ok(next(&mut c).await);
    assert_echoes(&mut ws).await;
    let total = started.elapsed();
    assert!(total < Duration::from_secs(2), "{total:?}");
    assert_eq!(ev.closed()[0].0, Some(CloseCode::INTERNAL_ERROR));
    assert_backoff(ev.delays()[0], 0);
    assert_eq!(server.connections(), 2);
}

// ---------------------------------------------------------------------------
// The hook and the caps
// ---------------------------------------------------------------------------

/// websockets' documentation example: stop on every 4xx, including 429.
#[tokio::test]
async fn hook_stops_on_every_4xx() {
    fn stop_on_4xx(p: ReconnectPolicy) -> ReconnectPolicy {
        p.classify(|failure, attempt| match failure {
            Failure::Attempt(e)
                if e.kind() == ErrorKind::HttpStatus
                    && (400..500).contains(&e.status().unwrap_or(0)) =>
            {
                Decision::Stop
            }
            _ => classify::default(failure, attempt),
        })
    }
    let server = FaultServer::start(vec![Step::status(429).header("Retry-After", "1")]).await;
    let (p, ev) = policy(120);
    let started = Instant::now();
    let mut c = ClientBuilder::new(server.url()).reconnecting(stop_on_4xx(p));
    let e = err(next(&mut c).await);
    assert!(started.elapsed() < ms(800), "no Retry-After wait");
    assert_eq!(e.kind(), ErrorKind::HttpStatus);
    assert_eq!(e.status(), Some(429));
    assert_eq!(e.attempts(), Some(1));
    assert!(next(&mut c).await.is_none());
    assert_eq!(ev.connecting().len(), 1);
    assert_eq!(server.connections(), 1);

    // The rest of the default table still applies.
    let server = FaultServer::start(vec![Step::status(503), Step::echo()]).await;
    let (p, ev) = policy(121);
    let mut c = ClientBuilder::new(server.url()).reconnecting(stop_on_4xx(p));
    let _ws = ok(next(&mut c).await);
    assert_eq!(ev.connected(), vec![2]);
}

#[derive(Debug)]
struct Maintenance {
    status: u16,
}

impl std::fmt::Display for Maintenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the service is in maintenance (HTTP {})", self.status)
    }
}

impl std::error::Error for Maintenance {}

/// `Decision::StopWith(error)` → ErrorKind::Stopped with that error as the
/// source.
#[tokio::test]
async fn hook_stop_with_custom_error() {
    let server = FaultServer::start(vec![Step::status(503)]).await;
    let (p, ev) = policy(122);
    let mut c =
        ClientBuilder::new(server.url()).reconnecting(p.classify(
            |failure, attempt| match failure {
                Failure::Attempt(e) if e.status() == Some(503) => {
                    Decision::StopWith(Box::new(Maintenance {
                        status: e.status().unwrap(),
                    }))
                }
                _ => classify::default(failure, attempt),
            },
        ));
    let e = err(next(&mut c).await);
    assert_eq!(e.kind(), ErrorKind::Stopped, "{e}");
    let m = e
        .source()
        .and_then(|s| s.downcast_ref::<Maintenance>())
        .expect("the custom error is the source");
    assert_eq!(m.status, 503);
    let shown = e.to_string();
    assert!(shown.contains("stopped by the reconnect policy"), "{shown}");
    assert_eq!(e.attempts(), Some(1));
    assert!(next(&mut c).await.is_none());
    // Display is one level; the Stopped event tells the custom error too.
    let stopped = ev.stopped();
    assert_eq!(stopped.len(), 1);
    assert!(
        stopped[0]
            .0
            .contains("stopped by the reconnect policy: the service is in maintenance"),
        "{stopped:?}"
    );
    assert_eq!(server.connections(), 1);
}

/// `Decision::RetryAfter(d)` from the hook → waits `d`, source Hook.
#[tokio::test]
async fn hook_retry_after() {
    let addr = closed_port().await;
    let (p, ev) = policy(123);
    let mut c = ClientBuilder::new(format!("ws://{addr}/")).reconnecting(
        p.max_attempts(Some(3))
            .classify(|_, _| Decision::RetryAfter(ms(30))),
    );
    let started = Instant::now();
    let e = err(next(&mut c).await);
    assert!(started.elapsed() >= ms(60));
    assert_eq!(e.kind(), ErrorKind::Exhausted);
    let r = ev.retries();
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .all(|r| r.delay == ms(30) && r.source == DelaySource::Hook));
}

/// Row: `max_elapsed` → Exhausted, without sleeping past the cap.
#[tokio::test]
async fn max_elapsed_is_exhausted() {
    let addr = closed_port().await;
    let (p, ev) = policy(130);
    let started = Instant::now();
    let mut c =
        ClientBuilder::new(format!("ws://{addr}/")).reconnecting(p.max_elapsed(Some(ms(150))));
    let e = err(next(&mut c).await);
    let took = started.elapsed();
    assert_eq!(e.kind(), ErrorKind::Exhausted, "{e}");
    assert!(e.to_string().contains("max_elapsed"), "{e}");
    assert_eq!(e.last_error().map(Error::kind), Some(ErrorKind::Connect));
    let attempts = e.attempts().unwrap();
    assert!(attempts >= 2, "{attempts}");
    assert_eq!(ev.connecting().len() as u32, attempts);
    let waited: Duration = ev.delays().iter().sum();
    assert!(waited <= ms(150), "{waited:?}");
    assert!(took < ms(600), "{took:?}");
    assert!(ev.stopped()[0].2, "exhausted");
    assert!(next(&mut c).await.is_none());
}

/// `max_attempts` counts consecutive *failed attempts*. A connection that
/// succeeded and was then dropped by the user is not a failed attempt, so
/// asking for the next connection must make a new attempt.
///
/// BUG: an ended connection (even one the user dropped) counts towards
/// `max_attempts`; with `max_attempts(Some(2))` and one failed attempt
/// before, dropping a healthy connection yields Exhausted without trying.
#[tokio::test]
async fn max_attempts_does_not_count_successful_connections() {
    let server = FaultServer::start(vec![Step::Eof, Step::echo()]).await;
    let (p, _ev) = policy(131);
    let mut c = ClientBuilder::new(server.url()).reconnecting(p.max_attempts(Some(2)));
    let ws = ok(next(&mut c).await);
    drop(ws);
    let r = next(&mut c).await;
    if let Some(Err(e)) = &r {
        panic!("the user asked for the next connection and got: {e}");
    }
    let mut ws = ok(r);
    assert_echoes(&mut ws).await;
    assert_eq!(server.connections(), 3);
}
