//! The scale-out cells (`--scale`): fan-out through Redis across server
//! processes, against the in-process backend on one process.
//!
//! - **Redis**: a `redis-server` (no persistence) and 3
//!   `tether serve --broadcast --redis URL` processes, `--scale-conns`
//!   clients on each (300 by default);
//! - **in-process**: one `tether serve --broadcast --history 1000` with
//!   3 x `--scale-conns` clients.
//!
//! All clients are tether connections in this process, on the topic
//! `/bench`, without the resume subprotocol (bare messages). One publisher
//! (a connection to the first server; what it sends is published to its
//! topic) sends text messages `<seq> <ns>`, `<ns>` the send time since a
//! start instant of this process; each client computes publish-to-receipt
//! latency from it. The publisher keeps `inflight` messages outstanding:
//! message `s` goes once the deliveries counted over all clients reach
//! `(s - inflight) x clients`. The rate is deliveries per second over the
//! counted messages, after a warm-up.
//!
//! Where the time goes: the CPU seconds (user + system, from
//! `/proc/<pid>/stat`) of redis-server, of each server process and of this
//! process (the clients and the publisher) over the counted window.
//!
//! The tether binary is `target/release/tether` (next to this one): build
//! it with `cargo build --release -p tether-cli`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether::{ClientBuilder, Message};

/// Messages counted in each cell.
const MESSAGES: u64 = 3000;
/// Warm-up messages, not counted.
const WARMUP: u64 = 300;
/// Broadcasts outstanding.
const INFLIGHT: u64 = 8;

/// One setup's result.
struct Outcome {
    label: String,
    clients: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
    secs: f64,
    /// (process, user and system CPU seconds, write syscalls, over the
    /// window).
    cpu: Vec<(String, f64, f64, u64)>,
}

/// A process's user and system ticks, and its write syscalls.
type Counters = (u64, u64, u64);

/// user and system ticks of a process (fields 14 and 15 of its stat),
/// and its write syscalls (`syscw` of `/proc/<pid>/io`, 0 if unreadable).
fn ticks(pid: &str) -> Option<Counters> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let f = |i: usize| rest.get(i).and_then(|x| x.parse::<u64>().ok());
    let writes = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("syscw:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    Some((f(11)?, f(12)?, writes))
}

/// USER_HZ on Linux.
const HZ: f64 = 100.0;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A child process killed when dropped.
struct Proc {
    name: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tether_bin() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = me.with_file_name("tether");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found: cargo build --release -p tether-cli",
            bin.display()
        ))
    }
}

/// Starts `tether serve` with `args`; returns it and its `ws://` URL.
fn serve(name: &str, args: &[&str]) -> Result<(Proc, String), String> {
    use std::io::BufRead;
    let mut child = Command::new(tether_bin()?)
        .arg("serve")
        .args(args)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut lines = std::io::BufReader::new(out).lines();
    let line = lines
        .next()
        .ok_or("tether serve printed nothing")?
        .map_err(|e| e.to_string())?;
    std::thread::spawn(move || for _ in lines {});
    let url = line
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected: {line}"))?
        .trim_end_matches('/')
        .to_string();
    Ok((
        Proc {
            name: name.into(),
            child,
        },
        url,
    ))
}

fn redis(port: u16) -> Result<Proc, String> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Proc {
        name: "redis-server".into(),
        child,
    })
}

/// Shared by the clients: deliveries counted and latencies (µs).
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    /// Wakes the publisher when deliveries move on.
    progress: tokio::sync::Notify,
    latencies: Mutex<Vec<u32>>,
}

/// Connects `per_url` clients to each URL's `/bench` topic, publishes, and
/// measures.
async fn measure(
    label: &str,
    urls: &[String],
    per_url: usize,
    procs: &[&Proc],
) -> Result<Outcome, String> {
    let start = Instant::now();
    let tally = Arc::new(Tally::default());
    let mut sockets = Vec::new();
    for url in urls {
        for _ in 0..per_url {
            let ws = ClientBuilder::new(format!("{url}/bench"))
                .compression(None)
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            sockets.push(ws);
        }
    }
    let clients = sockets.len();
    for mut ws in sockets {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut mine = Vec::with_capacity(MESSAGES as usize);
            while let Some(Ok(m)) = ws.recv().await {
                let Some(t) = m.as_text() else { continue };
                let mut it = t.split(' ');
                let (Some(seq), Some(ns)) = (it.next(), it.next()) else {
                    continue;
                };
                let (Ok(seq), Ok(ns)) = (seq.parse::<u64>(), ns.parse::<u64>()) else {
                    continue;
                };
                let now = start.elapsed().as_nanos() as u64;
                if seq >= WARMUP {
                    mine.push(u32::try_from(now.saturating_sub(ns) / 1000).unwrap_or(u32::MAX));
                }
                tally.delivered.fetch_add(1, Ordering::Relaxed);
                tally.progress.notify_one();
                if seq + 1 == WARMUP + MESSAGES {
                    break;
                }
            }
            tally
                .latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(mine);
        });
    }
    let publisher = ClientBuilder::new(format!("{}/bench", urls[0]))
        .compression(None)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let (mut rd, wr) = publisher.split();
    // Its own copies come back: read and drop them.
    tokio::spawn(async move { while let Some(Ok(_)) = rd.recv().await {} });
    let n = clients as u64;
    let mut window = None;
    for s in 0..WARMUP + MESSAGES {
        if s == WARMUP {
            // Everything of the warm-up delivered: the window starts.
            wait_for(&tally, WARMUP * n).await?;
            let cpu: Vec<(String, Option<Counters>)> = procs
                .iter()
                .map(|p| (p.name.clone(), ticks(&p.child.id().to_string())))
                .chain(std::iter::once((
                    "clients (this process)".into(),
                    ticks("self"),
                )))
                .collect();
            window = Some((Instant::now(), cpu));
        }
        while tally.delivered.load(Ordering::Relaxed) + INFLIGHT * n < (s + 1) * n {
            tally.progress.notified().await;
        }
        let ns = start.elapsed().as_nanos() as u64;
        wr.send(Message::text(format!("{s} {ns}")))
            .await
            .map_err(|e| e.to_string())?;
    }
    wait_for(&tally, (WARMUP + MESSAGES) * n).await?;
    let (t0, cpu0) = window.ok_or("no window")?;
    let secs = t0.elapsed().as_secs_f64();
    let mut cpu = Vec::new();
    for (i, (name, before)) in cpu0.into_iter().enumerate() {
        let after = match procs.get(i) {
            Some(p) => ticks(&p.child.id().to_string()),
            None => ticks("self"),
        };
        if let (Some(a), Some(b)) = (after, before) {
            cpu.push((
                name,
                (a.0 - b.0) as f64 / HZ,
                (a.1 - b.1) as f64 / HZ,
                a.2.saturating_sub(b.2),
            ));
        }
    }
    // Let the readers hand their samples over.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat = std::mem::take(&mut *tally.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_unstable();
    let q = |f: f64| {
        lat.get(((lat.len() as f64 * f) as usize).min(lat.len().saturating_sub(1)))
            .map_or(Duration::ZERO, |&us| Duration::from_micros(u64::from(us)))
    };
    Ok(Outcome {
        label: label.into(),
        clients,
        rate: (MESSAGES * n) as f64 / secs,
        p50: q(0.50),
        p99: q(0.99),
        secs,
        cpu,
    })
}

async fn wait_for(tally: &Tally, target: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while tally.delivered.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            return Err(format!(
                "stalled at {} of {target} deliveries",
                tally.delivered.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn redis_cell(per: usize) -> Result<Outcome, String> {
    let port = free_port();
    let r = redis(port)?;
    let url = format!("redis://127.0.0.1:{port}");
    let mut procs = Vec::new();
    let mut urls = Vec::new();
    for i in 0..3 {
        let (p, u) = serve(
            &format!("tether serve #{}", i + 1),
            &["--broadcast", "--redis", &url],
        )?;
        procs.push(p);
        urls.push(u);
    }
    let all: Vec<&Proc> = std::iter::once(&r).chain(procs.iter()).collect();
    let rt = crate::harness::runtime();
    rt.block_on(measure(
        &format!("Redis, 3 processes x {per}"),
        &urls,
        per,
        &all,
    ))
}

fn in_process_cell(per: usize) -> Result<Outcome, String> {
    let (p, u) = serve("tether serve", &["--broadcast", "--history", "1000"])?;
    let rt = crate::harness::runtime();
    rt.block_on(measure(
        &format!("in-process, 1 process x {}", 3 * per),
        &[u],
        3 * per,
        &[&p],
    ))
}

/// Runs both cells and prints (and writes) the table.
pub(crate) fn main(per: Option<usize>, out: Option<PathBuf>) {
    let per = per.unwrap_or(300);
    let mut rows = Vec::new();
    for cell in [redis_cell as fn(usize) -> _, in_process_cell] {
        match cell(per) {
            Ok(o) => rows.push(o),
            Err(e) => eprintln!("scale cell failed: {e}"),
        }
    }
    let mut md = String::from(
        "| setup | clients | deliveries/s | p50 | p99 | window | CPU seconds (and write syscalls) in the window |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
    );
    for o in &rows {
        let cpu: Vec<String> = o
            .cpu
            .iter()
            .map(|(n, u, s, w)| {
                format!(
                    "{n} {:.2} ({u:.2} user + {s:.2} sys; {:.0}k writes)",
                    u + s,
                    *w as f64 / 1e3
                )
            })
            .collect();
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.2} s | {} |\n",
            o.label,
            o.clients,
            o.rate,
            o.p50.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3,
            o.secs,
            cpu.join(", ")
        ));
    }
    md.push_str(&format!(
        "\n{MESSAGES} messages counted after {WARMUP} of warm-up, {INFLIGHT} in flight, \
         text `<seq> <ns>` (about 20 bytes), no compression.\n"
    ));
    println!("{md}");
    let path = out.unwrap_or_else(|| PathBuf::from("target/bench-scale.md"));
    if let Err(e) = std::fs::write(&path, &md) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}
