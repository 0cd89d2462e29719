//! Running one measurement: a server on its own thread and current-thread
//! runtime (pinned to one CPU), clients on another (pinned to the other).

use bytes::Bytes;
use std::future::Future;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// What a connection (client side) or a connection handler (server side)
/// returns: an error description when it failed.
pub(crate) type ConnFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Serves one accepted TCP connection.
pub(crate) type ServerFn = fn(TcpStream) -> ConnFuture;

/// Builds the command that starts an echo server in a child process. The
/// child listens on 127.0.0.1 and prints `LISTENING <port>` on stdout.
pub(crate) type CommandFn = fn() -> Result<Command, String>;

/// A server under test.
#[derive(Clone, Copy)]
pub(crate) enum Server {
    /// In this process: a connection handler, on its own pinned thread.
    Local(ServerFn),
    /// In a child process started for each run, pinned to the server CPU.
    External(CommandFn),
}

/// Opens one client connection to the address and drives its load until the
/// run ends, counting echoes in the [`Tally`].
pub(crate) type ClientFn = fn(SocketAddr, Arc<Job>, Arc<Tally>) -> ConnFuture;

/// What the messages of a cell carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Binary messages of a fixed byte pattern, uncompressed.
    Pattern,
    /// Text messages of JSON, compressed with permessage-deflate both ways.
    JsonDeflate,
    /// No messages: each client opens, upgrades and closes connections in
    /// a loop (see [`crate::handshakes`]); the rate counts upgrades.
    Handshake,
}

/// One cell of the benchmark: message size, connections, messages in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cell {
    /// What the messages carry.
    pub(crate) kind: Kind,
    /// Payload bytes per message (uncompressed).
    pub(crate) payload: usize,
    /// Concurrent connections.
    pub(crate) conns: usize,
    /// Messages each connection keeps in flight.
    pub(crate) inflight: usize,
}

impl Cell {
    /// A label such as `16 B, 64x16` or `JSON 1 KiB deflate, 64x16`.
    pub(crate) fn label(&self) -> String {
        let size = match self.payload {
            n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
            n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
            n => format!("{n} B"),
        };
        match self.kind {
            Kind::Pattern => format!("{size}, {}x{}", self.conns, self.inflight),
            Kind::JsonDeflate => format!("JSON {size} deflate, {}x{}", self.conns, self.inflight),
            Kind::Handshake => format!("handshakes, {} clients", self.conns),
        }
    }
}

/// Masked frames back to back, twice over, so that any run of up to
/// `count` consecutive frames, starting at any of them, is one slice.
#[derive(Debug)]
pub(crate) struct Ring {
    buf: Bytes,
    /// Where each frame starts in `buf` (`2 * count + 1` entries).
    starts: Vec<usize>,
    count: usize,
}

impl Ring {
    /// The ring of `frames`, in order.
    pub(crate) fn new(frames: &[Vec<u8>]) -> Self {
        let mut buf = Vec::with_capacity(2 * frames.iter().map(Vec::len).sum::<usize>());
        let mut starts = vec![0];
        for f in frames.iter().chain(frames) {
            buf.extend_from_slice(f);
            starts.push(buf.len());
        }
        Ring {
            buf: buf.into(),
            starts,
            count: frames.len(),
        }
    }

    /// The frames in the ring.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// Frames `first..first + n` (modulo the ring), as one slice;
    /// `first < count` and `n <= count`.
    pub(crate) fn frames(&self, first: usize, n: usize) -> &[u8] {
        &self.buf[self.starts[first]..self.starts[first + n]]
    }
}

/// What every connection of a run sends, prepared once.
#[derive(Debug)]
pub(crate) struct Job {
    /// The payload, for the library clients (binary cells only).
    pub(crate) payload: Bytes,
    /// The messages each connection sends, in turn, over and over; the
    /// load generator checks each echo against them.
    pub(crate) messages: Vec<Arc<[u8]>>,
    /// Messages are text (else binary).
    pub(crate) text: bool,
    /// The load generator offers permessage-deflate and sends compressed
    /// frames.
    pub(crate) deflate: bool,
    /// The uncompressed masked frames, for the load generator; the ring's
    /// frame `i` carries `messages[i % messages.len()]`.
    pub(crate) plain: Ring,
    /// The compressed masked frames (no context takeover, RSV1 set), made
    /// on first use for each client window (9..=15 bits) a server asks for.
    compressed: [OnceLock<Ring>; 7],
    /// Messages kept in flight per connection.
    pub(crate) inflight: usize,
}

impl Job {
    /// Prepares the messages of `cell`.
    pub(crate) fn new(cell: Cell) -> Self {
        match cell.kind {
            Kind::Pattern | Kind::Handshake => {
                let p = crate::raw::payload(cell.payload);
                let frame = crate::raw::masked_frame(0x82, &p);
                Job {
                    plain: Ring::new(&vec![frame; cell.inflight.max(1)]),
                    messages: vec![p.clone().into()],
                    payload: p.into(),
                    text: false,
                    deflate: false,
                    compressed: Default::default(),
                    inflight: cell.inflight,
                }
            }
            Kind::JsonDeflate => {
                let messages: Vec<Arc<[u8]>> =
                    (0..crate::deflate::variants(cell.payload, cell.inflight))
                        .map(|v| crate::deflate::json(cell.payload, v).into())
                        .collect();
                let frames: Vec<Vec<u8>> = messages
                    .iter()
                    .map(|m| crate::raw::masked_frame(0x81, m))
                    .collect();
                Job {
                    plain: Ring::new(&frames),
                    payload: Bytes::new(),
                    messages,
                    text: true,
                    deflate: true,
                    compressed: Default::default(),
                    inflight: cell.inflight,
                }
            }
        }
    }

    /// The compressed frames for a client window of `bits` (9..=15), each
    /// message compressed on its own.
    pub(crate) fn compressed(&self, bits: u8) -> Result<&Ring, String> {
        let slot = self
            .compressed
            .get(usize::from(bits).wrapping_sub(9))
            .ok_or_else(|| format!("cannot compress with a {bits}-bit window"))?;
        Ok(slot.get_or_init(|| {
            let frames: Vec<Vec<u8>> = self
                .messages
                .iter()
                .map(|m| {
                    let z = crate::deflate::compress(m, bits);
                    crate::raw::masked_frame(if self.text { 0xC1 } else { 0xC2 }, &z)
                })
                .collect();
            Ring::new(&frames)
        }))
    }
}

/// Progress shared by the connections of one run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    echoed: AtomicU64,
    /// Bytes the load generator wrote and read (after the handshake).
    sent: AtomicU64,
    received: AtomicU64,
    ready: AtomicUsize,
    error: Mutex<Option<String>>,
}

impl Tally {
    /// Counts `n` echoed messages.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.echoed.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes written (frames) by the load generator.
    #[inline]
    pub(crate) fn sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` bytes read (frames) by the load generator.
    #[inline]
    pub(crate) fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
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

/// The set holding only the `cpu`-th CPU this process may run on (modulo
/// their number), or `None` when it may run on fewer than two.
fn cpu_set(cpu: usize) -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity only writes the set
    // passed, for the calling thread (pid 0).
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return None;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.len() < 2 {
            return None;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[cpu % cpus.len()], &mut set);
        Some(set)
    }
}

/// Pins the calling thread to `cpu`, if the process may run there.
pub(crate) fn pin_to_cpu(cpu: usize) {
    if let Some(set) = cpu_set(cpu) {
        // SAFETY: only reads the set passed; pid 0 is the calling thread.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
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
    /// user + system time of this process, its waited-for children, and
    /// the running child server, if any.
    own: u64,
}

/// user + system time (fields 14 and 15 of `/proc/<pid>/stat`) and, with
/// `children`, that of the waited-for children (16 and 17), in ticks.
fn process_ticks(pid: &str, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name, utime, stime, cutime and cstime
    // are the 12th to 15th fields.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |i: usize| rest.get(i).and_then(|x| x.parse::<u64>().ok());
    let mut t = field(11)? + field(12)?;
    if children {
        t += field(13)? + field(14)?;
    }
    Some(t)
}

impl CpuTicks {
    /// Reads the counters from `/proc` (Linux only).
    pub(crate) fn now() -> Option<Self> {
        Self::now_with(None)
    }

    /// Reads the counters, counting the child process `child` (a server
    /// under test) as part of this one.
    pub(crate) fn now_with(child: Option<u32>) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let f: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let mut me = process_ticks("self", true)?;
        if let Some(pid) = child {
            // Gone already (or never started): its time is then in cutime.
            me += process_ticks(&pid.to_string(), false).unwrap_or(0);
        }
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
        let others = (self.busy - before.busy).saturating_sub(self.own.saturating_sub(before.own));
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

/// A current-thread tokio runtime.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    /// Echoed messages per second over the counting window.
    pub(crate) rate: f64,
    /// Bytes on the wire per echoed message, client to server and back
    /// (frames only; counted by the load generator, zero for other clients).
    pub(crate) up: f64,
    pub(crate) down: f64,
    /// CPU time of the server thread per echoed message, in nanoseconds
    /// (servers that run in this process only).
    pub(crate) server_ns: Option<f64>,
    /// CPU time of the client thread (all the load's connections) per
    /// echoed message, in nanoseconds.
    pub(crate) client_ns: Option<f64>,
}

/// The in-process server thread's id, for reading its CPU time (0: none).
static SERVER_TID: AtomicU64 = AtomicU64::new(0);

/// This thread's id, from `/proc/thread-self` (`<pid>/task/<tid>`).
fn thread_id() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time (user and system) of thread `tid` of this process so far, in
/// nanoseconds: the first field of its `schedstat`, the scheduler's own
/// precise count (the tick counts of `stat` are too coarse for a window
/// of half a second). Time the hypervisor steals is not in it, so CPU per
/// message is far steadier than messages per second on a noisy machine.
fn thread_cpu_ns(tid: u64) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// A server started for one run: where it listens, and how to stop it.
pub(crate) enum Running {
    Thread(
        std::thread::JoinHandle<()>,
        tokio::sync::oneshot::Sender<()>,
    ),
    Process(Child),
}

/// Starts `server` on CPU 0; returns where it listens.
pub(crate) fn start(server: Server) -> Result<(SocketAddr, Running), String> {
    match server {
        Server::Local(f) => start_thread(f),
        Server::External(f) => start_process(f()?),
    }
}

fn start_thread(server: ServerFn) -> Result<(SocketAddr, Running), String> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::Builder::new()
        .name("bench-server".into())
        .spawn(move || {
            pin_to_cpu(0);
            SERVER_TID.store(thread_id().unwrap_or(0), Ordering::Relaxed);
            let rt = runtime();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("local address"))
                    .expect("send address");
                tokio::select! {
                    _ = stop_rx => {}
                    _ = accept_loop(listener, server) => {}
                }
            });
            // Dropping the runtime drops every connection handler.
            drop(rt);
        })
        .expect("spawn server thread");
    let Ok(addr) = addr_rx.recv() else {
        return Err("server thread failed to start".into());
    };
    Ok((addr, Running::Thread(server_thread, stop_tx)))
}

/// Accepts connections until the future is dropped, each served by
/// `server` on its own task, with `TCP_NODELAY` set (for all servers alike).
pub(crate) async fn accept_loop(listener: TcpListener, server: ServerFn) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(server(tcp));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Starts the child process of `cmd` with CPU 0 as its only CPU (set
/// before `exec`, so every thread it starts inherits it), and reads the
/// port it prints.
pub(crate) fn start_process(mut cmd: Command) -> Result<(SocketAddr, Running), String> {
    let set = cpu_set(0);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    // SAFETY: between fork and exec the closure makes one system call,
    // which is async-signal-safe, on a set copied before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(set) = set {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            }
            Ok(())
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let port = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(p) = l.strip_prefix("LISTENING ") {
                        break p.trim().parse::<u16>().ok();
                    }
                }
                _ => break None,
            }
        };
        let _ = tx.send(port);
        // Keep draining, so that the child never blocks on a full pipe.
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Some(port)) => Ok((
            SocketAddr::from(([127, 0, 0, 1], port)),
            Running::Process(child),
        )),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("{program} did not print `LISTENING <port>`"))
        }
    }
}

impl Running {
    /// The child process, if the server runs in one.
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Running::Thread(..) => None,
            Running::Process(c) => Some(c.id()),
        }
    }

    /// Stops the server (kills its child process, if any).
    pub(crate) fn stop(self) {
        match self {
            Running::Thread(thread, stop) => {
                let _ = stop.send(());
                let _ = thread.join();
            }
            Running::Process(mut child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Runs `server` on CPU 0 and `cell.conns` connections of `client` on CPU 1;
/// returns the echo rate and wire bytes over the counting window (or the
/// first error any connection hit), and the share of one CPU (percent) that
/// other processes took during the window (a child server process counts as
/// part of this one).
pub(crate) fn run(
    server: Server,
    client: ClientFn,
    cell: Cell,
    timing: Timing,
) -> (Result<Measured, String>, f64) {
    let (addr, running) = match start(server) {
        Ok(x) => x,
        Err(e) => return (Err(e), 0.0),
    };
    let child = running.pid();
    let job = Arc::new(Job::new(cell));
    let client_thread = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            pin_to_cpu(1);
            let rt = runtime();
            rt.block_on(measure(addr, client, cell, job, timing, child))
        })
        .expect("spawn client thread");
    let result = client_thread
        .join()
        .unwrap_or_else(|_| Err("client thread panicked".into()));
    running.stop();
    match result {
        Ok((m, others)) => (Ok(m), others),
        Err(e) => (Err(e), 0.0),
    }
}

async fn measure(
    addr: SocketAddr,
    client: ClientFn,
    cell: Cell,
    job: Arc<Job>,
    timing: Timing,
    child: Option<u32>,
) -> Result<(Measured, f64), String> {
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
    let counters = || {
        (
            tally.echoed.load(Ordering::Relaxed),
            tally.sent.load(Ordering::Relaxed),
            tally.received.load(Ordering::Relaxed),
            Instant::now(),
        )
    };
    let cpu0 = CpuTicks::now_with(child);
    // The server thread's CPU time counts only when it runs in this process.
    let server_tid = match child {
        None => Some(SERVER_TID.load(Ordering::Relaxed)).filter(|&t| t != 0),
        Some(_) => None,
    };
    let client_tid = thread_id();
    let threads = || {
        (
            server_tid.and_then(thread_cpu_ns),
            client_tid.and_then(thread_cpu_ns),
        )
    };
    let (sv0, cl0) = threads();
    let (c0, s0, r0, t0) = counters();
    tokio::time::sleep(timing.measure).await;
    let (c1, s1, r1, t1) = counters();
    let (sv1, cl1) = threads();
    let secs = (t1 - t0).as_secs_f64();
    let others = match (cpu0, CpuTicks::now_with(child)) {
        (Some(b), Some(a)) => a.since(&b, secs).0,
        _ => 0.0,
    };
    if let Some(e) = tally.error() {
        return Err(e);
    }
    let per_msg = |bytes: u64| bytes as f64 / (c1 - c0).max(1) as f64;
    let ns = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if c1 > c0 => Some(b.saturating_sub(a) as f64 / (c1 - c0) as f64),
        _ => None,
    };
    Ok((
        Measured {
            rate: (c1 - c0) as f64 / secs,
            up: per_msg(s1 - s0),
            down: per_msg(r1 - r0),
            server_ns: ns(sv0, sv1),
            client_ns: ns(cl0, cl1),
        },
        others,
    ))
}
