//! The fan-out cells (`--fanout`): one message to every one of 1,000
//! connections, messages delivered per second.
//!
//! Each server relays every data message it receives to all its
//! connections (the sender included), written as its library documents
//! a broadcast:
//! - tether: `hub::Hub`, `join` each connection, `broadcast` what a member
//!   sends;
//! - tokio-tungstenite: its `examples/server.rs` chat server: a map of
//!   unbounded channel senders behind a mutex, each connection `split`,
//!   `try_for_each` on the incoming half sending a clone of the message
//!   into every channel, and the channel `forward`ed into the outgoing
//!   half (`select`ed with the incoming half in the connection's task).
//!   The example's `futures-channel` receiver is a tokio unbounded
//!   channel turned into a `Stream` here (same semantics, no new crate);
//!   the example skips the sender, this one includes it, as the others do;
//! - Python websockets: `broadcast(CONNECTIONS, message)` in the handler's
//!   `async for message in ws` loop, as its docs show (`peers/fanout_server.py`).
//!
//! The load generator (raw tokio TCP, like the echo cells') opens the
//! connections, then one of them publishes binary messages carrying a
//! sequence number, keeping `inflight` broadcasts outstanding: message `s`
//! is sent once message `s - inflight` has reached every connection. Each
//! connection parses the frames it receives (unmasked, binary, the right
//! length) and counts them; the rate is deliveries (frames received over
//! all connections) per second. Before counting, the publisher sends probe
//! messages until every connection got one, so that each server has added
//! every connection to its group.

use crate::harness::{self, CpuTicks, Running, Server, Timing};
use futures_util::{future, stream, StreamExt, TryStreamExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A fan-out cell: payload, connections, broadcasts outstanding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FanCell {
    pub(crate) payload: usize,
    pub(crate) conns: usize,
    pub(crate) inflight: usize,
}

impl FanCell {
    pub(crate) fn label(&self) -> String {
        let size = match self.payload {
            n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
            n => format!("{n} B"),
        };
        format!(
            "{size} to {} conns, {} in flight",
            self.conns, self.inflight
        )
    }
}

/// The cells.
pub(crate) const CELLS: &[FanCell] = &[
    FanCell {
        payload: 16,
        conns: 1000,
        inflight: 16,
    },
    FanCell {
        payload: 1024,
        conns: 1000,
        inflight: 16,
    },
    FanCell {
        payload: 16 << 10,
        conns: 1000,
        inflight: 4,
    },
];

/// The servers: label and server.
pub(crate) const SERVERS: &[(&str, Server)] = &[
    ("tether (Hub)", Server::Local(tether_hub)),
    (
        "tokio-tungstenite (channel per connection)",
        Server::Local(tungstenite_channels),
    ),
    (
        "Python websockets (broadcast)",
        Server::External(crate::peers::python_fanout),
    ),
];

/// The sequence number of the probe messages.
const PROBE: u64 = u64::MAX;

thread_local! {
    // Each run starts a new server thread on a current-thread runtime, so
    // each run gets a fresh group.
    static HUB: tether::hub::Hub = tether::hub::Hub::new();
    static PEERS: RefCell<Option<PeerMap>> = const { RefCell::new(None) };
}

/// tether: join the hub, broadcast every data message received.
fn tether_hub(tcp: TcpStream) -> harness::ConnFuture {
    Box::pin(async move {
        let ws = tether::ServerBuilder::new()
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let hub = HUB.with(Clone::clone);
        let mut member = hub.join(ws);
        while let Some(Ok(msg)) = member.recv().await {
            if msg.is_data() {
                let _ = hub.broadcast(msg);
            }
        }
        Ok(())
    })
}

type Tx = tokio::sync::mpsc::UnboundedSender<tokio_tungstenite::tungstenite::Message>;
type PeerMap = Arc<Mutex<HashMap<u64, Tx>>>;

static NEXT_PEER: AtomicU64 = AtomicU64::new(0);

/// tokio-tungstenite, as its chat-server example.
fn tungstenite_channels(tcp: TcpStream) -> harness::ConnFuture {
    Box::pin(async move {
        let peers = PEERS.with(|p| p.borrow_mut().get_or_insert_with(Default::default).clone());
        let ws = tokio_tungstenite::accept_async(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let id = NEXT_PEER.fetch_add(1, Ordering::Relaxed);
        peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let (outgoing, incoming) = ws.split();
        let broadcast_incoming = incoming.try_for_each(|msg| {
            if msg.is_binary() || msg.is_text() {
                let peers = peers.lock().unwrap_or_else(|p| p.into_inner());
                for tx in peers.values() {
                    let _ = tx.send(msg.clone());
                }
            }
            future::ok(())
        });
        let rx = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let receive_from_others = rx.map(Ok).forward(outgoing);
        futures_util::pin_mut!(broadcast_incoming, receive_from_others);
        future::select(broadcast_incoming, receive_from_others).await;
        peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        Ok(())
    })
}

/// Progress shared by the load generator's connections.
struct Progress {
    conns: u32,
    /// Connections that received `s`, at `s % inflight`.
    counts: Vec<AtomicU32>,
    /// Connections that received a probe.
    probed: AtomicUsize,
    delivered: AtomicU64,
    /// Woken when a message reached every connection.
    done: Notify,
    stop: AtomicBool,
    error: Mutex<Option<String>>,
}

impl Progress {
    fn fail(&self, e: String) {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }

    fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A masked binary frame carrying `seq` and the pattern, `len` bytes.
fn message(seq: u64, len: usize) -> Vec<u8> {
    let mut p = crate::raw::payload(len.max(8));
    p[..8].copy_from_slice(&seq.to_be_bytes());
    crate::raw::masked_frame(0x82, &p)
}

/// One connection's receiving side: parses and counts what arrives.
async fn receive<R: AsyncReadExt + Unpin>(
    mut rd: R,
    mut buf: Vec<u8>,
    p: Arc<Progress>,
    cell: FanCell,
) -> Result<(), String> {
    let mut probed = false;
    let mut start = 0;
    loop {
        loop {
            let b = &buf[start..];
            if b.len() < 2 {
                break;
            }
            if b[1] & 0x80 != 0 {
                return Err("the server sent a masked frame".into());
            }
            let (len, head) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
                127 if b.len() >= 10 => {
                    let n = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
                    (usize::try_from(n).map_err(|_| "frame too large")?, 10)
                }
                126 | 127 => break,
                n => (usize::from(n), 2),
            };
            if b.len() < head + len {
                break;
            }
            match b[0] {
                0x82 => {
                    if len != cell.payload.max(8) {
                        return Err(format!("a message of {len} bytes, sent {}", cell.payload));
                    }
                    let seq = u64::from_be_bytes(b[head..head + 8].try_into().expect("8 bytes"));
                    if seq == PROBE {
                        if !std::mem::replace(&mut probed, true) {
                            p.probed.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        p.delivered.fetch_add(1, Ordering::Relaxed);
                        let slot = &p.counts[(seq % cell.inflight as u64) as usize];
                        if slot.fetch_add(1, Ordering::AcqRel) + 1 == p.conns {
                            p.done.notify_one();
                        }
                    }
                }
                // Pings and pongs (no run lasts long enough to need pongs).
                0x89 | 0x8a => {}
                0x88 => return Err("the server closed a connection".into()),
                b0 => return Err(format!("unexpected frame, first byte {b0:#x}")),
            }
            start += head + len;
        }
        buf.drain(..start);
        start = 0;
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 << 10);
        }
        let n = rd
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed a connection".into());
        }
    }
}

/// The publisher: probes until every connection is in the group, then
/// keeps `inflight` broadcasts outstanding until told to stop.
async fn publish<W: AsyncWriteExt + Unpin>(
    mut wr: W,
    p: Arc<Progress>,
    cell: FanCell,
    ready: Arc<Notify>,
) -> Result<(), String> {
    let probe = message(PROBE, cell.payload);
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.probed.load(Ordering::Relaxed) < cell.conns {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} connections got a message within 20 s",
                p.probed.load(Ordering::Relaxed),
                cell.conns
            ));
        }
        wr.write_all(&probe)
            .await
            .map_err(|e| format!("write: {e}"))?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ready.notify_one();
    let w = cell.inflight as u64;
    let (mut sent, mut completed) = (0u64, 0u64);
    let mut batch = Vec::new();
    while !p.stop.load(Ordering::Relaxed) {
        loop {
            let slot = &p.counts[(completed % w) as usize];
            if slot.load(Ordering::Acquire) < p.conns || completed == sent {
                break;
            }
            slot.store(0, Ordering::Release);
            completed += 1;
        }
        batch.clear();
        while sent < completed + w {
            batch.extend_from_slice(&message(sent, cell.payload));
            sent += 1;
        }
        if batch.is_empty() {
            p.done.notified().await;
        } else {
            wr.write_all(&batch)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
    }
    Ok(())
}

/// Runs one measurement of `server` in `cell`: the rate, and the share of
/// a CPU other processes took meanwhile.
pub(crate) fn run(server: Server, cell: FanCell, timing: Timing) -> (Result<f64, String>, f64) {
    let (addr, running) = match harness::start(server) {
        Ok(x) => x,
        Err(e) => return (Err(e), 0.0),
    };
    let child = running.pid();
    let load = std::thread::Builder::new()
        .name("bench-fanout-load".into())
        .spawn(move || {
            harness::pin_to_cpu(1);
            harness::runtime().block_on(measure(addr, cell, timing, child))
        })
        .expect("spawn load thread");
    let r = load
        .join()
        .unwrap_or_else(|_| Err("load thread panicked".into()));
    Running::stop(running);
    match r {
        Ok((rate, others)) => (Ok(rate), others),
        Err(e) => (Err(e), 0.0),
    }
}

async fn measure(
    addr: SocketAddr,
    cell: FanCell,
    timing: Timing,
    child: Option<u32>,
) -> Result<(f64, f64), String> {
    let p = Arc::new(Progress {
        conns: u32::try_from(cell.conns).map_err(|_| "too many connections")?,
        counts: (0..cell.inflight).map(|_| AtomicU32::new(0)).collect(),
        probed: AtomicUsize::new(0),
        delivered: AtomicU64::new(0),
        done: Notify::new(),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
    });
    // Open the connections, a batch at a time.
    let mut opened = Vec::with_capacity(cell.conns);
    for chunk in (0..cell.conns)
        .collect::<Vec<_>>()
        .chunks(crate::idle::OPENING)
    {
        let batch: Vec<_> = chunk
            .iter()
            .map(|_| {
                tokio::spawn(async move {
                    let mut rd = vec![0u8; 4096];
                    let u = crate::raw::upgrade(addr, None, &mut rd).await?;
                    Ok::<_, String>((u.tcp, rd[u.head_len..u.got].to_vec()))
                })
            })
            .collect();
        for b in batch {
            opened.push(b.await.map_err(|e| e.to_string())??);
        }
    }
    let ready = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for (i, (tcp, leftover)) in opened.into_iter().enumerate() {
        let p2 = p.clone();
        if i == 0 {
            let (rd, wr) = tcp.into_split();
            let (p3, ready) = (p.clone(), ready.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = publish(wr, p3.clone(), cell, ready).await {
                    p3.fail(e);
                }
            }));
            tasks.push(tokio::spawn(async move {
                if let Err(e) = receive(rd, leftover, p2.clone(), cell).await {
                    p2.fail(e);
                }
            }));
        } else {
            tasks.push(tokio::spawn(async move {
                if let Err(e) = receive(tcp, leftover, p2.clone(), cell).await {
                    p2.fail(e);
                }
            }));
        }
    }
    let result = async {
        tokio::select! {
            _ = ready.notified() => {}
            _ = wait_error(&p) => return Err(p.error().unwrap_or_default()),
        }
        tokio::time::sleep(timing.warmup).await;
        let cpu0 = CpuTicks::now_with(child);
        let (d0, t0) = (p.delivered.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(timing.measure).await;
        let (d1, t1) = (p.delivered.load(Ordering::Relaxed), Instant::now());
        let secs = (t1 - t0).as_secs_f64();
        let others = match (cpu0, CpuTicks::now_with(child)) {
            (Some(b), Some(a)) => a.since(&b, secs).0,
            _ => 0.0,
        };
        if let Some(e) = p.error() {
            return Err(e);
        }
        if d1 == d0 {
            return Err("no message delivered during the window".into());
        }
        Ok(((d1 - d0) as f64 / secs, others))
    }
    .await;
    p.stop.store(true, Ordering::Relaxed);
    p.done.notify_one();
    for t in tasks {
        t.abort();
    }
    result
}

/// Returns once a connection failed.
async fn wait_error(p: &Progress) {
    while p.error().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Share of one CPU (percent) other processes may take during a window
/// before the run is repeated, and the tries before a disturbed run is kept
/// (as for the echo cells).
const MAX_OTHERS: f64 = 10.0;
const MAX_TRIES: usize = 4;

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[m]),
        _ => Some((v[m - 1] + v[m]) / 2.0),
    }
}

/// Runs every cell `reps` times (servers interleaved within each
/// repetition) and returns the markdown report.
pub(crate) fn run_all(cells: &[FanCell], timing: Timing, reps: usize) -> String {
    let nofile = crate::idle::raise_nofile();
    let started = Instant::now();
    let cpu_before = CpuTicks::now();
    let mut samples = vec![vec![Vec::<f64>::new(); SERVERS.len()]; cells.len()];
    let mut errors = Vec::new();
    let (mut retried, mut kept_disturbed) = (0, 0);
    for (ci, &cell) in cells.iter().enumerate() {
        if (nofile as usize) < 2 * cell.conns + 100 {
            errors.push(format!(
                "- {}: skipped, the open-file limit ({nofile}) is too low",
                cell.label()
            ));
            continue;
        }
        for rep in 1..=reps {
            for (si, (name, server)) in SERVERS.iter().enumerate() {
                let mut tries = 0;
                loop {
                    tries += 1;
                    let (r, others) = run(*server, cell, timing);
                    match r {
                        Ok(x) if others > MAX_OTHERS && tries < MAX_TRIES => {
                            retried += 1;
                            eprintln!(
                                "[fan-out {}] run {rep}/{reps} {name}: {}/s, but other processes \
                                 used {others:.0}% of a CPU meanwhile; again",
                                cell.label(),
                                crate::report::rate(x)
                            );
                            harness::wait_quiet(MAX_OTHERS, Duration::from_secs(60));
                            continue;
                        }
                        Ok(x) => {
                            if others > MAX_OTHERS {
                                kept_disturbed += 1;
                            }
                            eprintln!(
                                "[fan-out {}] run {rep}/{reps} {name}: {}/s (others {others:.0}%)",
                                cell.label(),
                                crate::report::rate(x)
                            );
                            samples[ci][si].push(x);
                        }
                        Err(e) => {
                            eprintln!(
                                "[fan-out {}] run {rep}/{reps} {name}: ERROR {e}",
                                cell.label()
                            );
                            errors.push(format!("- {}, {name}: {e}", cell.label()));
                        }
                    }
                    break;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let disturbance = match (cpu_before, CpuTicks::now()) {
        (Some(b), Some(a)) => {
            let (others, steal) = a.since(&b, secs);
            format!("other processes used {others:.0}% of one CPU on average, steal {steal:.0}%")
        }
        _ => "CPU use of other processes unknown".into(),
    };
    let mut out = format!(
        "## Fan-out: one message to every connection\n\n\
         Messages delivered per second (frames received, summed over all connections; divide by \
         the connections for broadcasts per second); median of {reps} run(s), servers interleaved \
         within each repetition; {:.1} s counted after {:.2} s of warm-up. The server runs on one \
         pinned CPU (Rust servers on a current-thread tokio runtime; Python as a child process), \
         the load generator on the other. Each server relays every message it receives to all \
         connections; one connection publishes binary messages, keeping the given number of \
         broadcasts outstanding (the next is sent once an earlier one reached every connection). \
         tether: `Hub::join` + `Hub::broadcast`; tokio-tungstenite: its chat-server example (a \
         mutex-guarded map of unbounded channels, `forward` of each channel into the connection's \
         sink); Python websockets: `broadcast()` over the set of connections. Ratios above 1 mean \
         tether is faster. Total time {secs:.0} s; during it {disturbance} ({retried} disturbed \
         run(s) repeated, {kept_disturbed} kept after {MAX_TRIES} tries).\n\n",
        timing.measure.as_secs_f64(),
        timing.warmup.as_secs_f64(),
    );
    out.push_str("| cell |");
    for (name, _) in SERVERS {
        out.push_str(&format!(" {name} |"));
    }
    for (name, _) in &SERVERS[1..] {
        out.push_str(&format!(" tether / {name} |"));
    }
    out.push_str("\n|---|");
    for _ in 0..2 * SERVERS.len() - 1 {
        out.push_str("---:|");
    }
    out.push('\n');
    for (ci, cell) in cells.iter().enumerate() {
        let meds: Vec<Option<f64>> = samples[ci].iter().map(|s| median(s)).collect();
        out.push_str(&format!("| {} |", cell.label()));
        for m in &meds {
            out.push_str(&format!(" {} |", m.map_or("-".into(), crate::report::rate)));
        }
        for m in &meds[1..] {
            match (meds[0], *m) {
                (Some(t), Some(x)) if x > 0.0 => out.push_str(&format!(" {:.2}x |", t / x)),
                _ => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    if !errors.is_empty() {
        out.push_str("\nErrors:\n\n");
        for e in errors {
            out.push_str(&e);
            out.push('\n');
        }
    }
    out.push_str("\nEvery run (deliveries/s):\n\n");
    for (ci, cell) in cells.iter().enumerate() {
        for (si, (name, _)) in SERVERS.iter().enumerate() {
            let runs: Vec<String> = samples[ci][si]
                .iter()
                .map(|x| crate::report::rate(*x))
                .collect();
            out.push_str(&format!(
                "- {}, {name}: {}\n",
                cell.label(),
                runs.join(", ")
            ));
        }
    }
    out
}

/// The `--fanout` run: the cells whose label contains `only` (all by
/// default), with `conns` connections each if given; the report goes to
/// stdout and to `out` (default `target/bench-fanout.md`).
pub(crate) fn main(
    only: Option<&str>,
    conns: Option<usize>,
    timing: Timing,
    reps: usize,
    out: Option<PathBuf>,
    versions: &str,
) {
    let cells: Vec<FanCell> = CELLS
        .iter()
        .map(|c| FanCell {
            conns: conns.unwrap_or(c.conns),
            ..*c
        })
        .filter(|c| only.is_none_or(|f| c.label().contains(f)))
        .collect();
    let doc = format!(
        "# tether fan-out benchmark\n\nVersions: {versions}. Peers: {}.\n\n{}",
        crate::peers::versions(),
        run_all(&cells, timing, reps)
    );
    print!("{doc}");
    let out = out.unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/bench-fanout.md"
        ))
    });
    match std::fs::write(&out, &doc) {
        Ok(()) => eprintln!("wrote {}", out.display()),
        Err(e) => eprintln!("could not write {}: {e}", out.display()),
    }
}
