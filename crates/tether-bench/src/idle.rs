//! The idle-memory cells: how much a server's resident memory grows per
//! upgraded connection that then sits idle (issue #9).
//!
//! Each server runs alone in a child process, so that its RSS is only the
//! server's: the Rust servers are this binary run again with
//! `--idle-server <label>` (the same connection handlers as the throughput
//! cells, on a current-thread runtime), Python websockets and Node ws are
//! the compressed cells' echo servers. The load side opens connections
//! with the load generator's own upgrade ([`raw::idle_conn`]).
//!
//! Method, the same for every server: open [`WARMUP`] connections, let the
//! server settle, read its `VmRSS`; open `n` more, settle, read it again;
//! the growth divided by `n` is the memory per connection.

use crate::harness::{self, Cell, Job, Kind, Server};
use crate::raw::{self, IdleUse};
use crate::report;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Connections opened before the baseline is read, so that the runtime,
/// the allocator and the kernel's tables are warm.
pub(crate) const WARMUP: usize = 200;
/// File descriptors kept free beyond the connections (standard streams,
/// epoll, pipes, the listener, the interpreter's own files).
const FD_MARGIN: usize = 64;
/// Handshakes in flight at a time while opening (far below the listen
/// backlog, so no SYN is dropped and retried).
pub(crate) const OPENING: usize = 64;
/// Time the server gets to settle before its RSS is read.
const SETTLE: Duration = Duration::from_secs(1);
/// After [`SETTLE`], the RSS is read every [`SETTLE_STEP`] until two reads
/// agree within [`SETTLE_SLACK_KIB`] (at most [`SETTLE_STEPS`] times).
const SETTLE_STEP: Duration = Duration::from_millis(250);
const SETTLE_SLACK_KIB: u64 = 64;
const SETTLE_STEPS: usize = 20;
/// Longest time opening one batch of connections may take.
const OPEN_LIMIT: Duration = Duration::from_secs(180);

/// The cells, in table order.
pub(crate) const USES: &[IdleUse] = &[
    IdleUse::Plain,
    IdleUse::DeflateIdle,
    IdleUse::DeflateOneMessage,
];

/// The label of a cell (matched by `--cells`).
pub(crate) fn label(what: IdleUse) -> &'static str {
    match what {
        IdleUse::Plain => "idle, no compression",
        IdleUse::DeflateIdle => "idle, deflate negotiated",
        IdleUse::DeflateOneMessage => "deflate, after one 1 KiB message",
    }
}

/// Raises the soft limit on open files to the hard limit; returns the
/// limit in force afterwards.
pub(crate) fn raise_nofile() -> u64 {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
        lim.rlim_cur
    }
}

/// How many connections to measure: `wanted`, or as many as the limit on
/// open files leaves room for (with the warm-up and a margin).
pub(crate) fn fit(wanted: usize, nofile: u64) -> usize {
    let room = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(WARMUP + FD_MARGIN);
    wanted.min(room)
}

/// The child process of a Rust server (`--idle-server <label>`): serves
/// `label`'s connection handler on 127.0.0.1, an ephemeral port, on a
/// current-thread runtime, printing `LISTENING <port>`, until killed.
pub(crate) fn serve(label: &str, servers: &[(&str, Server)]) -> Result<(), String> {
    let handler = servers.iter().find_map(|(name, s)| match s {
        Server::Local(f) if *name == label => Some(*f),
        _ => None,
    });
    let Some(handler) = handler else {
        return Err(format!("no Rust server labelled {label:?}"));
    };
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag of this process:
    // if the benchmark dies, so does this server.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    raise_nofile();
    harness::runtime().block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let mut out = std::io::stdout();
        let _ = writeln!(out, "LISTENING {port}");
        let _ = out.flush();
        harness::accept_loop(listener, handler).await;
        Ok(())
    })
}

/// One measurement: the server's RSS (KiB) after the warm-up and after
/// `conns` more connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Growth {
    pub(crate) baseline_kib: u64,
    pub(crate) after_kib: u64,
    pub(crate) conns: usize,
    /// Seconds it took to open the `conns` connections.
    pub(crate) open_secs: f64,
    /// Connections to which the server had sent a frame by the end (a
    /// keepalive ping: tether and Python websockets send one after 20 s),
    /// so not quite idle.
    pub(crate) sent_frames: usize,
}

impl Growth {
    /// KiB per connection (negative if the RSS shrank).
    pub(crate) fn per_conn(&self) -> f64 {
        (self.after_kib as f64 - self.baseline_kib as f64) / self.conns.max(1) as f64
    }
}

/// Starts `server` (labelled `label`) in a child process pinned to the
/// first CPU, and measures its RSS growth over `conns` connections used as
/// `what` says, from a load thread pinned to the other CPU. Every
/// connection is closed and the child killed before it returns.
pub(crate) fn measure(
    label: &str,
    server: Server,
    what: IdleUse,
    conns: usize,
) -> Result<Growth, String> {
    let cmd = match server {
        Server::Local(_) => {
            let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
            let mut cmd = Command::new(exe);
            cmd.args(["--idle-server", label]);
            cmd
        }
        Server::External(f) => f()?,
    };
    let (addr, running) = harness::start_process(cmd)?;
    let Some(pid) = running.pid() else {
        running.stop();
        return Err("the server has no process of its own".into());
    };
    let load = std::thread::Builder::new()
        .name("bench-idle-load".into())
        .spawn(move || {
            harness::pin_to_cpu(1);
            harness::runtime().block_on(load(addr, pid, what, conns))
        })
        .map_err(|e| format!("spawn load thread: {e}"));
    let result = load.and_then(|t| {
        t.join()
            .unwrap_or_else(|_| Err("load thread panicked".into()))
    });
    running.stop();
    result
}

/// The load side of one measurement (the connections close when it returns).
async fn load(addr: SocketAddr, pid: u32, what: IdleUse, conns: usize) -> Result<Growth, String> {
    // The message of the one-message cell: JSON, 1 KiB, the first of the job's.
    let job = Arc::new(Job::new(Cell {
        kind: Kind::JsonDeflate,
        payload: 1024,
        conns: 1,
        inflight: 1,
    }));
    let mut open = Vec::with_capacity(WARMUP + conns);
    open_more(addr, what, &job, WARMUP, &mut open).await?;
    let baseline_kib = settled_rss(pid).await?;
    let start = Instant::now();
    open_more(addr, what, &job, conns, &mut open).await?;
    let open_secs = start.elapsed().as_secs_f64();
    let after_kib = settled_rss(pid).await?;
    let (closed, sent_frames) = poll_idle(&open);
    if closed > 0 {
        return Err(format!(
            "{closed} of {} connections were closed by the server while idle",
            open.len()
        ));
    }
    Ok(Growth {
        baseline_kib,
        after_kib,
        conns,
        open_secs,
        sent_frames,
    })
}

/// Opens `n` more connections into `open`, [`OPENING`] handshakes at a time.
async fn open_more(
    addr: SocketAddr,
    what: IdleUse,
    job: &Arc<Job>,
    n: usize,
    open: &mut Vec<TcpStream>,
) -> Result<(), String> {
    let opening = async {
        let mut tasks = JoinSet::new();
        let mut started = 0;
        let mut done = 0;
        while done < n {
            while started < n && tasks.len() < OPENING {
                let job = job.clone();
                tasks.spawn(async move { raw::idle_conn(addr, what, &job).await });
                started += 1;
            }
            match tasks.join_next().await {
                Some(Ok(Ok(tcp))) => {
                    open.push(tcp);
                    done += 1;
                }
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(format!("connection task: {e}")),
                None => return Err("no connection task left".into()),
            }
        }
        Ok(())
    };
    tokio::time::timeout(OPEN_LIMIT, opening)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{n} connections did not open within {} s",
                OPEN_LIMIT.as_secs()
            ))
        })
}

/// The `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for process {pid} (did the server exit?)"))
}

/// The server's RSS once it has settled: after [`SETTLE`], and then once two
/// reads in a row agree.
async fn settled_rss(pid: u32) -> Result<u64, String> {
    tokio::time::sleep(SETTLE).await;
    let mut last = rss_kib(pid)?;
    for _ in 0..SETTLE_STEPS {
        tokio::time::sleep(SETTLE_STEP).await;
        let now = rss_kib(pid)?;
        let steady = now.abs_diff(last) <= SETTLE_SLACK_KIB;
        last = now;
        if steady {
            break;
        }
    }
    Ok(last)
}

/// How many of the connections the server has closed (end of stream or an
/// error on a read that does not wait), and how many it has sent anything
/// (read and dropped; a keepalive ping) since they were opened.
fn poll_idle(open: &[TcpStream]) -> (usize, usize) {
    let mut buf = [0u8; 512];
    let (mut closed, mut sent) = (0, 0);
    for tcp in open {
        let mut got = false;
        loop {
            match tcp.try_read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => got = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
        sent += usize::from(got);
    }
    (closed, sent)
}

/// The servers of the idle-memory cells, each with whether it supports
/// permessage-deflate (the deflate cells).
pub(crate) const SERVERS: &[(&str, Server, bool)] = &[
    ("tether", Server::Local(crate::servers::tether), true),
    (
        "tokio-tungstenite (split+forward)",
        Server::Local(crate::servers::tungstenite_forward),
        false,
    ),
    (
        "tokio-tungstenite (next/send)",
        Server::Local(crate::servers::tungstenite_next_send),
        false,
    ),
    (
        "fastwebsockets",
        Server::Local(crate::servers::fastwebsockets),
        false,
    ),
    (
        "tokio-websockets",
        Server::Local(crate::servers::tokio_websockets),
        false,
    ),
    (
        "Python websockets",
        Server::External(crate::peers::python),
        true,
    ),
    ("Node ws", Server::External(crate::peers::node), true),
];

/// Runs the idle-memory cells picked by `--cells` for the servers picked
/// by `--libs`, the cells in turn and the servers within each cell.
pub(crate) fn run(
    cells: Option<&str>,
    quick: bool,
    idle_conns: Option<usize>,
    wanted: &dyn Fn(&str) -> bool,
) -> Option<report::Idle> {
    let uses: Vec<raw::IdleUse> = USES
        .iter()
        .copied()
        .filter(|u| match cells {
            Some(f) => label(*u).contains(f),
            // --quick: the uncompressed cell only.
            None => !quick || *u == raw::IdleUse::Plain,
        })
        .collect();
    // A peer that is not installed is left out, with one line saying so.
    let mut not_run = Vec::new();
    let servers: Vec<&(&str, Server, bool)> = SERVERS
        .iter()
        .filter(|(n, ..)| wanted(n))
        .filter(|(n, s, _)| match s {
            Server::External(f) => f()
                .map_err(|e| not_run.push(format!("{n}: not run ({e})")))
                .is_ok(),
            Server::Local(_) => true,
        })
        .collect();
    for n in &not_run {
        eprintln!("[idle] {n}");
    }
    if uses.is_empty() || (servers.is_empty() && not_run.is_empty()) {
        return None;
    }
    let nofile = raise_nofile();
    let asked = idle_conns.unwrap_or(if quick { 2_000 } else { 10_000 });
    let conns = fit(asked, nofile);
    let lowered = if conns < asked {
        eprintln!("[idle] the open-file limit ({nofile}) leaves room for {conns} connections, not {asked}");
        format!(
            " (lowered from {asked}: the open-file limit is {nofile}, and the warm-up and a margin \
             need the rest)"
        )
    } else {
        String::new()
    };
    let mut results = vec![vec![None; uses.len()]; servers.len()];
    for (ui, &what) in uses.iter().enumerate() {
        for (si, &&(name, server, deflate)) in servers.iter().enumerate() {
            if what != raw::IdleUse::Plain && !deflate {
                continue;
            }
            let r = if conns == 0 {
                Err("the open-file limit leaves no room for connections".into())
            } else {
                measure(name, server, what, conns)
            };
            match &r {
                Ok(g) => eprintln!(
                    "[idle] {name}, {}: {} KiB after {} warm-up connections, {} KiB after {conns} \
                     more (opened in {:.1} s): {:.1} KiB/conn{}",
                    label(what),
                    g.baseline_kib,
                    WARMUP,
                    g.after_kib,
                    g.open_secs,
                    g.per_conn(),
                    if g.sent_frames > 0 {
                        format!(" (the server sent frames to {} of them)", g.sent_frames)
                    } else {
                        String::new()
                    }
                ),
                Err(e) => eprintln!("[idle] {name}, {}: ERROR {e}", label(what)),
            }
            results[si][ui] = Some(r);
        }
    }
    let note = format!(
        "Each server runs alone in a child process pinned to one CPU, so that its resident memory is only \
         the server's: the Rust servers are this binary run again with `--idle-server <label>`, serving \
         with the throughput cells' connection handlers on a current-thread tokio runtime (tether: \
         `ServerBuilder::new()`, which accepts permessage-deflate with a 12-bit server window and context \
         takeover, plus `max_message_size(16 MiB)`); Python websockets and Node ws are the compressed \
         cells' echo servers. The load side, on the other CPU, opens connections with the load \
         generator's raw upgrade ({OPENING} handshakes at a time) and waits for every 101: without an \
         extension offer for *idle, no compression*, with `{}` (what browsers send) for the deflate \
         cells. It opens {warmup} connections first (so that runtime, allocator and tables are warm), \
         lets the server settle (1 s, then until two reads 250 ms apart agree within 64 KiB) and reads \
         its `VmRSS` from `/proc/<pid>/status`; then opens N = {conns} more{lowered}, lets it settle \
         and reads it again. **KiB/conn = RSS growth / N.** *deflate, after one 1 KiB message*: each \
         connection first sends one 1 KiB JSON text message, compressed (masked, RSV1), and waits for \
         its compressed echo (inflated and compared). The connections stay open and silent (a check \
         afterwards finds none closed by the server, and warns of any the server sent a frame to, such \
         as a keepalive ping); all are closed and the server killed between cells. Socket buffers \
         are the kernel's, not in RSS. **peer / tether**: the peer's KiB/conn divided by tether's; \
         above 1 means tether is leaner. n/a: the library has no permessage-deflate.",
        crate::deflate::BROWSER_OFFER,
        OPENING = OPENING,
        warmup = WARMUP,
    );
    Some(report::Idle {
        note,
        libs: servers.iter().map(|(n, ..)| n.to_string()).collect(),
        cells: uses.iter().map(|u| label(*u).to_string()).collect(),
        results,
        not_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_per_connection() {
        let g = Growth {
            baseline_kib: 10_000,
            after_kib: 10_000 + 95_000,
            conns: 10_000,
            open_secs: 1.0,
            sent_frames: 0,
        };
        assert!((g.per_conn() - 9.5).abs() < 1e-9);
    }

    #[test]
    fn connections_fit_the_descriptor_limit() {
        assert_eq!(fit(10_000, 1 << 20), 10_000);
        assert_eq!(fit(10_000, 4096), 4096 - WARMUP - FD_MARGIN);
        assert_eq!(fit(10_000, 100), 0);
    }

    #[test]
    fn own_rss_is_read() {
        let kib = rss_kib(std::process::id()).unwrap();
        assert!(kib > 0);
    }
}
