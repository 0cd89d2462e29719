//! `tether serve --broadcast` with a peer that never reads: what the server
//! holds for it is bounded by `--max-queue-bytes`, the slow peer is closed
//! with 1013 within seconds, and a fast peer still receives everything.

use futures_util::StreamExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether::{ClientBuilder, Message};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tether");
const MESSAGE: usize = 256 << 10;
const CAP: usize = 1 << 20;
/// Allocator slack, buffers of messages in flight, the tasks of the peers.
const MARGIN: usize = 32 << 20;

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_broadcast_peer_is_closed_and_memory_stays_bounded() {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--broadcast",
            "--close-timeout",
            "1",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_string();
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_string();
    // The server's stderr, with the time each line came.
    let started = Instant::now();
    let said: Arc<Mutex<Vec<(Duration, String)>>> = Arc::default();
    let log = said.clone();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(l)) = stderr.next_line().await {
            log.lock().unwrap().push((started.elapsed(), l));
        }
    });

    // The slow peer: upgrades, then never reads.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        slow.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));

    // The fast peer publishes 256 KiB messages for 10 s, one in flight, and
    // reads everything (a broadcast goes to the sender too).
    let ws = ClientBuilder::new(url.as_str())
        .compression(None)
        .max_message_size(Some(4 << 20))
        .connect()
        .await
        .unwrap();
    let (mut reader, writer) = ws.split();
    let received = Arc::new(AtomicUsize::new(0));
    let got = received.clone();
    let reading = tokio::spawn(async move {
        while let Some(Ok(m)) = reader.next().await {
            if m.is_data() {
                assert_eq!(m.len(), MESSAGE);
                got.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let base = rss(pid);
    let mut peak = base;
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(10) {
        writer
            .send(Message::binary(vec![sent as u8; MESSAGE]))
            .await
            .unwrap();
        sent += 1;
        let deadline = Instant::now() + Duration::from_secs(5);
        while received.load(Ordering::SeqCst) < sent {
            assert!(Instant::now() < deadline, "the fast peer stalled at {sent}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        peak = peak.max(rss(pid));
    }
    assert_eq!(
        received.load(Ordering::SeqCst),
        sent,
        "the fast peer got every message"
    );
    let growth = peak.saturating_sub(base);
    eprintln!(
        "{sent} messages of 256 KiB; server RSS {} MiB -> peak {} MiB (+{:.1} MiB)",
        base >> 20,
        peak >> 20,
        growth as f64 / (1 << 20) as f64
    );
    assert!(
        growth < CAP + MARGIN,
        "server RSS grew by {growth} bytes (cap {CAP} + margin {MARGIN})"
    );

    // The slow peer was closed with 1013, within seconds.
    let lines = said.lock().unwrap().clone();
    let kicked = lines
        .iter()
        .find(|(_, l)| l.contains("too slow") && l.contains("1013"))
        .unwrap_or_else(|| panic!("no slow-peer close: {lines:?}"));
    assert!(
        kicked.0 < Duration::from_secs(5),
        "closed after {:?}",
        kicked.0
    );
    // Its connection is gone: reading now drains what the kernel held, then EOF.
    let mut buf = vec![0u8; 1 << 20];
    tokio::time::timeout(Duration::from_secs(5), async {
        while slow.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await
    .expect("the slow peer's connection was not closed");
    drop(writer);
    reading.abort();
}
