//! Running one measurement: a server on its own thread and current-thread
//! runtime (pinned to one CPU), clients on another (pinned to the other).

use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// What a connection (client side) or a connection handler (server side)
/// returns: an error description when it failed.
pub(crate) type ConnFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Serves one accepted TCP connection.
pub(crate) type ServerFn = fn(TcpStream) -> ConnFuture;

/// Opens one client connection to the address and drives its load until the
/// run ends, counting echoes in the [`Tally`].
pub(crate) type ClientFn = fn(SocketAddr, Arc<Job>, Arc<Tally>) -> ConnFuture;

/// One cell of the benchmark: message size, connections, messages in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    /// Payload bytes per message.
    pub(crate) payload: usize,
    /// Concurrent connections.
    pub(crate) conns: usize,
    /// Messages each connection keeps in flight.
    pub(crate) inflight: usize,
}

impl Cell {
    /// A label such as `16 B, 64x16`.
    pub(crate) fn label(&self) -> String {
        let size = match self.payload {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
            n => format!("{n} B"),
        };
        format!("{size}, {}x{}", self.conns, self.inflight)
    }
}

/// What every connection of a run sends, prepared once.
#[derive(Debug)]
pub(crate) struct Job {
    /// The payload, for the library clients.
    pub(crate) payload: Bytes,
    /// The payload, for the load generator's check.
    pub(crate) expected: Arc<[u8]>,
    /// `inflight` masked binary frames of the payload, back to back, for the
    /// load generator.
    pub(crate) frames: Bytes,
    /// Messages kept in flight per connection.
    pub(crate) inflight: usize,
}

impl Job {
    /// Prepares the messages of `cell`.
    pub(crate) fn new(cell: Cell) -> Self {
        let p = crate::raw::payload(cell.payload);
        Job {
            frames: crate::raw::masked_frames(&p, cell.inflight).into(),
            expected: p.clone().into(),
            payload: p.into(),
            inflight: cell.inflight,
        }
    }
}

/// Progress shared by the connections of one run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    echoed: AtomicU64,
    ready: AtomicUsize,
    error: Mutex<Option<String>>,
}

impl Tally {
    /// Counts `n` echoed messages.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.echoed.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks one connection as open (handshake done).
    pub(crate) fn ready(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the first error of the run.
    pub(crate) fn fail(&self, e: String) {
        let mut g = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(e);
        }
    }

    fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Warm-up and measuring time of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Load before counting starts.
    pub(crate) warmup: Duration,
    /// Counting window.
    pub(crate) measure: Duration,
}

/// Pins the calling thread to `cpu`, if the process may run there.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; sched_{get,set}affinity only read or
    // write the set passed, for the calling thread (pid 0).
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.len() < 2 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[cpu % cpus.len()], &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU time counters, in clock ticks, to tell a quiet run from a disturbed
/// one on a shared machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTicks {
    /// user + nice + system time of the whole machine.
    busy: u64,
    /// Time the hypervisor took away.
    steal: u64,
    /// user + system time of this process.
    own: u64,
}

impl CpuTicks {
    /// Reads the counters from `/proc` (Linux only).
    pub(crate) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let f: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // After the parenthesised command name, utime and stime are the
        // 12th and 13th fields.
        let rest: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        let me = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
        Some(CpuTicks {
            busy: f.first()? + f.get(1)? + f.get(2)?,
            steal: *f.get(7)?,
            own: me,
        })
    }

    /// Since `before`, over `secs` seconds: the percent of one CPU used by
    /// other processes, and stolen by the hypervisor.
    pub(crate) fn since(&self, before: &CpuTicks, secs: f64) -> (f64, f64) {
        let hz = 100.0; // USER_HZ on Linux
        let others = (self.busy - before.busy).saturating_sub(self.own - before.own);
        let pct = |ticks: u64| ticks as f64 / hz / secs.max(1e-3) * 100.0;
        (pct(others), pct(self.steal - before.steal))
    }
}

/// Waits (at most `limit`) until other processes use less than
/// `max_others` percent of a CPU over one second; returns whether they did.
pub(crate) fn wait_quiet(max_others: f64, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let Some(before) = CpuTicks::now() else {
            return true;
        };
        std::thread::sleep(Duration::from_secs(1));
        match CpuTicks::now() {
            Some(after) if after.since(&before, 1.0).0 >= max_others => {}
            _ => return true,
        }
    }
    false
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `server` on CPU 0 and `cell.conns` connections of `client` on CPU 1;
/// returns the echoed messages per second over the counting window (or the
/// first error any connection hit), and the share of one CPU (percent) that
/// other processes took during the window.
pub(crate) fn run(
    server: ServerFn,
    client: ClientFn,
    cell: Cell,
    timing: Timing,
) -> (Result<f64, String>, f64) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            pin_to_cpu(0);
            let rt = runtime();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("local address"))
                    .expect("send address");
                let accept = async {
                    loop {
                        match listener.accept().await {
                            Ok((tcp, _)) => {
                                let _ = tcp.set_nodelay(true);
                                tokio::spawn(server(tcp));
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                };
                tokio::select! {
                    _ = stop_rx => {}
                    _ = accept => {}
                }
            });
            // Dropping the runtime drops every connection handler.
            drop(rt);
        })
        .expect("spawn server thread");
    let Ok(addr) = addr_rx.recv() else {
        return (Err("server thread failed to start".into()), 0.0);
    };
    let job = Arc::new(Job::new(cell));
    let client_thread = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            pin_to_cpu(1);
            let rt = runtime();
            rt.block_on(measure(addr, client, cell, job, timing))
        })
        .expect("spawn client thread");
    let result = client_thread
        .join()
        .unwrap_or_else(|_| Err("client thread panicked".into()));
    let _ = stop_tx.send(());
    let _ = server_thread.join();
    match result {
        Ok((rate, others)) => (Ok(rate), others),
        Err(e) => (Err(e), 0.0),
    }
}

async fn measure(
    addr: SocketAddr,
    client: ClientFn,
    cell: Cell,
    job: Arc<Job>,
    timing: Timing,
) -> Result<(f64, f64), String> {
    let tally = Arc::new(Tally::default());
    for _ in 0..cell.conns {
        let (job, tally) = (job.clone(), tally.clone());
        tokio::spawn(async move {
            let r = client(addr, job, tally.clone()).await;
            tally.fail(
                r.err()
                    .unwrap_or_else(|| "a connection ended during the run".into()),
            );
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while tally.ready.load(Ordering::Relaxed) < cell.conns {
        if let Some(e) = tally.error() {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Err("connections did not open within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(timing.warmup).await;
    let cpu0 = CpuTicks::now();
    let (c0, t0) = (tally.echoed.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(timing.measure).await;
    let (c1, t1) = (tally.echoed.load(Ordering::Relaxed), Instant::now());
    let secs = (t1 - t0).as_secs_f64();
    let others = match (cpu0, CpuTicks::now()) {
        (Some(b), Some(a)) => a.since(&b, secs).0,
        _ => 0.0,
    };
    if let Some(e) = tally.error() {
        return Err(e);
    }
    Ok(((c1 - c0) as f64 / secs, others))
}
