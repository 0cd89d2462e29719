//! `tether-bench`: echo throughput of tether against tokio-tungstenite,
//! fastwebsockets and tokio-websockets, as a server and as a client.
//!
//! - Server side: one neutral, hand-written load generator (raw tokio TCP,
//!   pre-encoded masked frames, `N` connections with `k` messages in flight
//!   each) drives each library's echo server in turn.
//! - Client side: each library's client drives one neutral, hand-written
//!   echo server.
//! - Compressed (server side): the same load generator, offering
//!   permessage-deflate and sending JSON text, drives tether's server and
//!   the Python websockets and Node ws servers (child processes); no other
//!   Rust library here supports permessage-deflate (tungstenite 0.30, under
//!   tokio-tungstenite 0.30, has no such feature and rejects RSV1).
//!
//! The server runs on a current-thread tokio runtime in its own thread
//! pinned to one CPU, the load on another pinned to the other CPU. Every
//! cell is repeated (libraries interleaved) and the median is reported.
//!
//! - Handshakes: `N` clients each opening, upgrading and closing
//!   connections in a loop against each server; upgrades per second (see
//!   [`handshakes`]).
//!
//! - Client idioms: each library's client in one task, split in two tasks
//!   with one `send(..).await` per message, and split with the messages
//!   forwarded into its `Sink` (see [`idioms`]).
//!
//! - Idle memory: each server alone in a child process, the server's RSS
//!   growth per upgraded connection left idle (see [`idle`]).
//!
//! - Fan-out (`--fanout`, a separate run): one message to 1,000
//!   connections, deliveries per second, tether's `Hub` against
//!   tokio-tungstenite's chat-server idiom and Python websockets'
//!   `broadcast()` (see [`fanout`]).
//! - Scale-out (`--scale`, a separate run): fan-out through Redis across 3
//!   `tether serve` processes against the in-process backend on one, with
//!   latency and each process's CPU time (see [`scale`]).
//!
//! Run: `cargo run --release -p tether-bench -- [--quick]` (`--quick`: the
//! cells the hot path is judged by, one run each, in under two minutes; `--idle` for the
//! idle-memory cells only, `--fanout` for the fan-out cells only). The
//! tables go to stdout and to `target/bench-results.md`
//! (`target/bench-fanout.md` for `--fanout`).

mod clients;
mod deflate;
mod fanout;
mod handshakes;
mod harness;
mod idioms;
mod idle;
mod peers;
mod raw;
mod report;
mod scale;
mod servers;

use clap::Parser;
use harness::{Cell, Kind, Measured, Server, Timing};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Echo benchmark of tether against other Rust WebSocket libraries")]
struct Args {
    /// Short runs, one repetition, the main cells only, a disturbed run kept
    /// (and counted) rather than repeated: under two minutes.
    #[arg(long)]
    quick: bool,
    /// Repetitions per cell, median reported (default 5; 1 with --quick).
    #[arg(long)]
    reps: Option<usize>,
    /// Warm-up seconds before counting (default 0.2; 0.15 with --quick).
    #[arg(long)]
    warmup: Option<f64>,
    /// Counting window in seconds (default 0.55; 0.4 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Which side to measure: server, client, both, or idle (the compressed
    /// cells are server side; both also runs the idle-memory cells).
    #[arg(long, default_value = "both")]
    side: String,
    /// Only the idle-memory cells (as `--side idle`).
    #[arg(long)]
    idle: bool,
    /// Connections measured in each idle-memory cell, after a warm-up of 200
    /// (default 10000; 2000 with --quick).
    #[arg(long)]
    idle_conns: Option<usize>,
    /// Only the fan-out cells: one message to 1,000 connections, tether's
    /// Hub against tokio-tungstenite and Python websockets' broadcast().
    #[arg(long)]
    fanout: bool,
    /// Connections in each fan-out cell (default 1000).
    #[arg(long)]
    fanout_conns: Option<usize>,
    /// Only the scale-out cells: fan-out through Redis across 3
    /// `tether serve` processes, against the in-process backend on one
    /// (needs `redis-server` and `cargo build --release -p tether-cli`).
    #[arg(long)]
    scale: bool,
    /// Clients on each server process in the Redis cell (default 300; the
    /// in-process cell has 3 times as many on its one process).
    #[arg(long)]
    scale_conns: Option<usize>,
    /// Internal: serve this library's echo handler in this process (the
    /// server of an idle-memory cell).
    #[arg(long, hide = true, value_name = "LABEL")]
    idle_server: Option<String>,
    /// Only the cells whose label contains this (e.g. "16 B", or "deflate"
    /// for the compressed cells).
    #[arg(long)]
    cells: Option<String>,
    /// Only the libraries whose label contains this, or (`=label`) is
    /// exactly this (the raw ceiling always runs).
    #[arg(long)]
    libs: Option<String>,
    /// Skip the raw ceiling in the echo cells (for profiling one library
    /// alone; the ratio columns then show `-`).
    #[arg(long)]
    no_ceiling: bool,
    /// Where to write the markdown report.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The servers under test: label and connection handler.
const SERVERS: &[(&str, Server)] = &[
    ("tether", Server::Local(servers::tether)),
    (
        "tokio-tungstenite (split+forward)",
        Server::Local(servers::tungstenite_forward),
    ),
    (
        "tokio-tungstenite (next/send)",
        Server::Local(servers::tungstenite_next_send),
    ),
    ("fastwebsockets", Server::Local(servers::fastwebsockets)),
    ("tokio-websockets", Server::Local(servers::tokio_websockets)),
];

/// The servers of the compressed cells, each with its default
/// permessage-deflate settings.
const DEFLATE_SERVERS: &[(&str, Server)] = &[
    ("tether", Server::Local(servers::tether)),
    ("Python websockets", Server::External(peers::python)),
    ("Node ws", Server::External(peers::node)),
];

/// Share of one CPU (percent) that other processes may take during a
/// counting window before the run is repeated.
const MAX_OTHERS: f64 = 10.0;
/// Attempts per run before a disturbed result is kept anyway.
const MAX_TRIES: usize = 4;

/// The cells: 16 B and 1 KiB with 16 in flight, 64 KiB and 1 MiB with 1,
/// and 16 B with 1 in flight on one connection (latency).
const CELLS: &[Cell] = &[
    Cell {
        kind: Kind::Pattern,
        payload: 16,
        conns: 64,
        inflight: 16,
    },
    Cell {
        kind: Kind::Pattern,
        payload: 16,
        conns: 1,
        inflight: 16,
    },
    Cell {
        kind: Kind::Pattern,
        payload: 16,
        conns: 1,
        inflight: 1,
    },
    Cell {
        kind: Kind::Pattern,
        payload: 1024,
        conns: 64,
        inflight: 16,
    },
    Cell {
        kind: Kind::Pattern,
        payload: 1024,
        conns: 1,
        inflight: 16,
    },
    Cell {
        kind: Kind::Pattern,
        payload: 64 << 10,
        conns: 64,
        inflight: 1,
    },
    Cell {
        kind: Kind::Pattern,
        payload: 64 << 10,
        conns: 1,
        inflight: 1,
    },
    Cell {
        kind: Kind::Pattern,
        payload: 1 << 20,
        conns: 64,
        inflight: 1,
    },
    Cell {
        kind: Kind::Pattern,
        payload: 1 << 20,
        conns: 1,
        inflight: 1,
    },
];

/// The cells `--quick` keeps (when `--cells` does not pick): the ones the
/// hot path is judged by, so that a quick run takes under two minutes.
const QUICK: &[&str] = &[
    "16 B, 64x16",
    "16 B, 1x1",
    "1 KiB, 64x16",
    "1 MiB, 64x1",
    "JSON 1 KiB deflate, 64x16",
    "handshakes",
];

/// The compressed cells (server side): JSON text, 1 KiB with 16 in flight,
/// 64 KiB with 1.
const DEFLATE_CELLS: &[Cell] = &[
    Cell {
        kind: Kind::JsonDeflate,
        payload: 1024,
        conns: 64,
        inflight: 16,
    },
    Cell {
        kind: Kind::JsonDeflate,
        payload: 1024,
        conns: 1,
        inflight: 16,
    },
    Cell {
        kind: Kind::JsonDeflate,
        payload: 64 << 10,
        conns: 64,
        inflight: 1,
    },
    Cell {
        kind: Kind::JsonDeflate,
        payload: 64 << 10,
        conns: 1,
        inflight: 1,
    },
];

/// The handshake cell: clients opening, upgrading and closing connections
/// one after another, each server in turn.
const HANDSHAKE_CELLS: &[Cell] = &[Cell {
    kind: Kind::Handshake,
    payload: 0,
    conns: 32,
    inflight: 1,
}];

/// The resolved versions of the libraries compared, from the lock file.
fn versions() -> String {
    let lock = include_str!("../../../Cargo.lock");
    let version = |name: &str| {
        let key = format!("name = \"{name}\"\nversion = \"");
        lock.find(&key)
            .and_then(|i| lock[i + key.len()..].split('"').next())
            .unwrap_or("?")
            .to_string()
    };
    [
        "tether",
        "tokio-tungstenite",
        "fastwebsockets",
        "tokio-websockets",
        "hyper",
        "tokio",
    ]
    .iter()
    .map(|n| format!("{n} {}", version(n)))
    .collect::<Vec<_>>()
    .join(", ")
}

/// How much CPU other processes (and the hypervisor) took during the run.
fn disturbance(before: Option<harness::CpuTicks>, secs: f64) -> String {
    match (before, harness::CpuTicks::now()) {
        (Some(b), Some(a)) => {
            let (others, steal) = a.since(&b, secs);
            format!("other processes used {others:.0}% of one CPU on average, steal {steal:.0}%")
        }
        _ => "CPU use of other processes unknown".into(),
    }
}

/// Runs one measurement, repeating it (after waiting for the machine to
/// be quiet) when other processes took a real share of the CPUs meanwhile.
struct Runner {
    timing: Timing,
    reps: usize,
    /// Attempts per run ([`MAX_TRIES`]; 1 with `--quick`).
    tries: usize,
    /// Runs discarded and repeated.
    retried: usize,
    /// Disturbed runs kept after [`MAX_TRIES`].
    kept_disturbed: usize,
}

impl Runner {
    fn one(
        &mut self,
        what: &str,
        server: Server,
        client: harness::ClientFn,
        cell: Cell,
        rep: usize,
    ) -> Result<Measured, String> {
        let reps = self.reps;
        let label = cell.label();
        let mut tries = 0;
        loop {
            tries += 1;
            let (r, others) = harness::run(server, client, cell, self.timing);
            match &r {
                Ok(x) if others > MAX_OTHERS && tries < self.tries => {
                    self.retried += 1;
                    eprintln!(
                        "[{label}] run {rep}/{reps} {what}: {}/s, but other processes \
                         used {others:.0}% of a CPU meanwhile; again",
                        report::rate(x.rate)
                    );
                    harness::wait_quiet(MAX_OTHERS, Duration::from_secs(60));
                    continue;
                }
                Ok(x) => {
                    if others > MAX_OTHERS {
                        self.kept_disturbed += 1;
                    }
                    eprintln!(
                        "[{label}] run {rep}/{reps} {what}: {}/s (others {others:.0}%)",
                        report::rate(x.rate)
                    )
                }
                Err(e) => eprintln!("[{label}] run {rep}/{reps} {what}: ERROR {e}"),
            }
            return r;
        }
    }
}

/// The runs of one library in one cell.
type Runs = Vec<Result<Measured, String>>;

/// How the CPU-efficiency tables are measured.
const CPU_NOTE: &str = "The same runs as the table above, measured differently: echoed messages \
    divided by the CPU time that the measured side's thread used over the counting window (the \
    scheduler's count from `/proc/self/task/<tid>/schedstat`, user and system time, so kernel \
    work on the socket is included, and time the hypervisor stole is not). A saturated thread's \
    throughput is this figure (in the many-connection cells the server thread is saturated, and \
    the two tables agree); in the latency-bound cells (1x1) it shows what each message costs, \
    which messages per second hide behind the wait for the peer. Above 1: tether does the same \
    work with less CPU. (It is no steadier than messages per second here: run to run, the CPU \
    cost of the same work moves with the machine.)";

/// Appends `side`'s table to the report, and its every-run table to the
/// appendix.
fn add(doc: &mut String, appendix: &mut String, side: &report::Side, cells: &[Cell]) {
    doc.push_str(&side.table(cells));
    doc.push('\n');
    appendix.push_str(&side.samples_table(cells));
    appendix.push('\n');
}

/// The CPU-efficiency table that follows `side`'s, from the same runs.
fn cpu_side(side: &report::Side, title: &str, samples: Vec<Vec<report::Samples>>) -> report::Side {
    report::Side {
        title: title.into(),
        note: CPU_NOTE.into(),
        libs: side.libs.clone(),
        ceiling: side.ceiling.clone(),
        samples,
    }
}

/// The messages-per-second samples of each library in each cell.
fn rates(rows: &[Vec<Runs>]) -> Vec<Vec<report::Samples>> {
    rows.iter()
        .map(|row| {
            row.iter()
                .map(|runs| runs.iter().map(|r| r.clone().map(|m| m.rate)).collect())
                .collect()
        })
        .collect()
}

/// Messages per second of one thread's CPU time (`ns`: its nanoseconds per
/// message), for each library in each cell.
fn per_cpu_second(
    rows: &[Vec<Runs>],
    ns: impl Fn(&Measured) -> Option<f64>,
) -> Vec<Vec<report::Samples>> {
    rows.iter()
        .map(|row| {
            row.iter()
                .map(|runs| {
                    runs.iter()
                        .map(|r| {
                            let m = r.as_ref().map_err(Clone::clone)?;
                            match ns(m) {
                                Some(n) if n > 0.0 => Ok(1e9 / n),
                                _ => Err("no CPU time measured".into()),
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn main() {
    let args = Args::parse();
    if let Some(label) = &args.idle_server {
        if let Err(e) = idle::serve(label, SERVERS) {
            eprintln!("idle server {label}: {e}");
            std::process::exit(1);
        }
        return;
    }
    // Short windows and more repetitions: on a shared machine, disturbances
    // come in bursts of a few seconds, which the median of 5 rides out better.
    let (reps, warmup, measure) = if args.quick {
        (1, 0.15, 0.4)
    } else {
        (5, 0.2, 0.55)
    };
    let reps = args.reps.unwrap_or(reps).max(1);
    let timing = Timing {
        warmup: Duration::from_secs_f64(args.warmup.unwrap_or(warmup)),
        measure: Duration::from_secs_f64(args.duration.unwrap_or(measure)),
    };
    if args.scale {
        scale::main(args.scale_conns, args.out.clone());
        return;
    }
    if args.fanout || args.side == "fanout" {
        let only = args.cells.as_deref();
        fanout::main(
            only,
            args.fanout_conns,
            timing,
            reps,
            args.out.clone(),
            &versions(),
        );
        return;
    }
    let idle_only = args.idle || args.side == "idle";
    let do_server = !idle_only && args.side != "client";
    let do_client = !idle_only && args.side != "server";
    let do_idle = idle_only || args.side == "both";
    let pick = |all: &[Cell]| -> Vec<Cell> {
        all.iter()
            .copied()
            .filter(|c| match args.cells.as_deref() {
                Some(f) => match f.strip_prefix('=') {
                    Some(exact) => c.label() == exact,
                    None => c.label().contains(f),
                },
                None => !args.quick || QUICK.iter().any(|q| c.label().starts_with(q)),
            })
            .collect()
    };
    let cells = if idle_only { Vec::new() } else { pick(CELLS) };
    let dcells = if do_server {
        pick(DEFLATE_CELLS)
    } else {
        Vec::new()
    };
    let hcells = if do_server {
        pick(HANDSHAKE_CELLS)
    } else {
        Vec::new()
    };

    let cpu_before = harness::CpuTicks::now();
    let mut runner = Runner {
        timing,
        reps,
        tries: if args.quick { 1 } else { MAX_TRIES },
        retried: 0,
        kept_disturbed: 0,
    };
    // `=label` picks one library exactly; otherwise a substring.
    let wanted = |name: &str| {
        args.libs
            .as_deref()
            .is_none_or(|f| match f.strip_prefix('=') {
                Some(exact) => name == exact,
                None => name.contains(f),
            })
    };
    let rate = |r: Result<Measured, String>| r.map(|m| m.rate);
    let started = Instant::now();
    let mut ceiling = vec![Vec::new(); cells.len()];
    let mut server = vec![vec![Vec::new(); SERVERS.len()]; cells.len()];
    let mut client = vec![vec![Vec::new(); clients::CLIENTS.len()]; cells.len()];
    for (ci, &cell) in cells.iter().enumerate() {
        for rep in 1..=reps {
            if !args.no_ceiling {
                ceiling[ci].push(runner.one(
                    "raw generator -> raw server",
                    Server::Local(raw::echo_server),
                    raw::loadgen,
                    cell,
                    rep,
                ));
            }
            if do_server {
                for (li, (name, s)) in SERVERS.iter().enumerate().filter(|(_, (n, _))| wanted(n)) {
                    server[ci][li].push(runner.one(
                        &format!("server {name}"),
                        *s,
                        raw::loadgen,
                        cell,
                        rep,
                    ));
                }
            }
            if do_client {
                for (li, (name, f)) in clients::CLIENTS
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _))| wanted(n))
                {
                    client[ci][li].push(runner.one(
                        &format!("client {name}"),
                        Server::Local(raw::echo_server),
                        *f,
                        cell,
                        rep,
                    ));
                }
            }
        }
    }
    // The compressed cells: the ceiling is the last column.
    let mut compressed = vec![vec![Vec::new(); DEFLATE_SERVERS.len() + 1]; dcells.len()];
    for (ci, &cell) in dcells.iter().enumerate() {
        for rep in 1..=reps {
            let ceiling = (
                "raw generator -> raw server",
                Server::Local(raw::echo_server_deflate),
            );
            for (li, (name, s)) in DEFLATE_SERVERS
                .iter()
                .chain([&ceiling])
                .enumerate()
                .filter(|(li, (n, _))| *li == DEFLATE_SERVERS.len() || wanted(n))
            {
                let what = if li == DEFLATE_SERVERS.len() {
                    name.to_string()
                } else {
                    format!("server {name}")
                };
                compressed[ci][li].push(runner.one(&what, *s, raw::loadgen, cell, rep));
            }
        }
    }

    // The handshake cells: the ceiling is the last column.
    let mut handshakes = vec![vec![Vec::new(); SERVERS.len() + 1]; hcells.len()];
    for (ci, &cell) in hcells.iter().enumerate() {
        for rep in 1..=reps {
            let ceiling = ("raw server", Server::Local(handshakes::raw_server));
            for (li, (name, s)) in SERVERS
                .iter()
                .chain([&ceiling])
                .enumerate()
                .filter(|(li, (n, _))| *li == SERVERS.len() || wanted(n))
            {
                handshakes[ci][li].push(runner.one(
                    &format!("handshakes {name}"),
                    *s,
                    handshakes::client,
                    cell,
                    rep,
                ));
            }
        }
    }

    let idle = do_idle
        .then(|| idle::run(args.cells.as_deref(), args.quick, args.idle_conns, &wanted))
        .flatten();

    // Python or Node measured (a peer not installed is not among the libs).
    let peers_ran = !dcells.is_empty()
        || idle.as_ref().is_some_and(|i| {
            idle::SERVERS
                .iter()
                .any(|(n, s, _)| matches!(s, Server::External(_)) && i.libs.iter().any(|l| l == n))
        });
    let peer_versions = if peers_ran {
        format!(" Python and Node peers: {}.", peers::versions())
    } else {
        String::new()
    };
    let mut doc = if idle_only {
        format!(
            "# tether idle-memory benchmark\n\nVersions: {}.{peer_versions} Total time {:.0} s.\n\n",
            versions(),
            started.elapsed().as_secs_f64()
        )
    } else {
        format!(
        "# tether echo benchmark\n\n\
         Versions: {}.{peer_versions}\n\n\
         Loopback echo. The server runs on a current-thread tokio runtime in its own thread pinned to \
         one CPU, the load on another current-thread runtime pinned to the other CPU. Messages per second \
         = echoed messages counted over {:.1} s after {:.2} s of warm-up; median of {reps} run(s), the \
         libraries interleaved within each repetition. Cells: payload, connections x messages in flight \
         per connection. Ratios above 1 mean tether is faster. Total time {:.0} s; during it {} \
         (anything else running on the machine skews the numbers; {} run(s) during which other \
         processes took over {MAX_OTHERS:.0}% of a CPU were discarded and repeated after the machine \
         was quiet again; {} disturbed run(s) kept after {} tries).\n\n",
        versions(),
        timing.measure.as_secs_f64(),
        timing.warmup.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        disturbance(cpu_before, started.elapsed().as_secs_f64()),
        runner.retried,
        runner.kept_disturbed,
        runner.tries
    )
    };
    let mut appendix = String::new();
    let with_ceiling = |libs: &[Vec<Runs>]| -> Vec<Vec<Runs>> {
        libs.iter()
            .zip(ceiling.iter())
            .map(|(row, c)| {
                let mut row = row.clone();
                row.push(c.clone());
                row
            })
            .collect()
    };
    if do_server && !cells.is_empty() {
        let side = report::Side {
            title: "Server side (library echo servers, one neutral load generator)".into(),
            note: "The load generator is hand-written on raw tokio TCP: a fixed-key upgrade, then pre-encoded \
                   masked binary frames, checking that every echo is binary, unmasked and of the sent length \
                   (and content). Ceiling: the same generator against a hand-written raw echo server."
                .into(),
            libs: SERVERS.iter().map(|(n, _)| n.to_string()).collect(),
            ceiling: "raw (ceiling)".into(),
            samples: rates(&with_ceiling(&server)),
        };
        add(&mut doc, &mut appendix, &side, &cells);
        let cpu = cpu_side(
            &side,
            "Server side, CPU efficiency: echoes per second of server CPU time",
            per_cpu_second(&with_ceiling(&server), |m| m.server_ns),
        );
        add(&mut doc, &mut appendix, &cpu, &cells);
    }
    if !dcells.is_empty() {
        let libs: Vec<String> = DEFLATE_SERVERS.iter().map(|(n, _)| n.to_string()).collect();
        let side = report::Side {
            title: "Compressed, server side (permessage-deflate, JSON text)".into(),
            note: format!(
                "The same load generator sends JSON text (arrays of order lines: ids, SKUs, names, prices, \
                 timestamps, tags; deterministic), cycling through distinct messages so that no message \
                 repeats within 128 KiB (no server window holds an earlier copy of what it compresses). \
                 It offers `{}`, so it can compress each message once, ahead of the run (level 6, with the \
                 client window the server asks for), and send it masked with RSV1 set; it checks that every \
                 echo is a compressed (RSV1) text message, inflates it (keeping the server's context unless \
                 the server resets it), and compares it with what was sent. Each server runs with its \
                 library's default compression settings: tether `ServerBuilder::new()` (level 6, 12-bit \
                 server window, context takeover), Python websockets `serve(..., compression=\"deflate\")` \
                 (12-bit windows both ways, memLevel 5, zlib's default level; one asyncio process, \
                 `async for message in ws: await ws.send(message)`), Node ws `perMessageDeflate: true` \
                 (15-bit window, zlib defaults, context takeover; one process, zlib on libuv's worker \
                 threads). Python and Node run as child processes pinned to the server CPU like the Rust \
                 servers (CPU affinity set before `exec`, so all their threads are on it); their CPU time \
                 counts as the benchmark's own in the disturbance check. No other Rust library compared \
                 here implements permessage-deflate (tokio-tungstenite 0.30 uses tungstenite 0.30, which \
                 has no deflate feature and fails on RSV1). Ceiling: a raw server that agrees to \
                 `server_no_context_takeover` and echoes the compressed frames as they are (no inflating \
                 or deflating on the server), i.e. the load generator's own limit.",
                deflate::OFFER
            ),
            libs: libs.clone(),
            ceiling: "raw (ceiling)".into(),
            samples: compressed
                .iter()
                .map(|row| row.iter().map(|s| s.iter().cloned().map(rate).collect()).collect())
                .collect(),
        };
        doc.push_str(&side.table(&dcells));
        doc.push('\n');
        doc.push_str(&report::wire_table(
            &dcells,
            &libs,
            "raw (ceiling)",
            &compressed,
        ));
        doc.push('\n');
        appendix.push_str(&side.samples_table(&dcells));
        appendix.push('\n');
    }
    if !hcells.is_empty() {
        let side = report::Side {
            title: "Handshakes per second (server side)".into(),
            note:
                "N clients on the load CPU, each opening connections one after another: TCP connect, \
                 the load generator's fixed-key upgrade request (101 and accept key checked; counted \
                 here), a masked close frame, then reading until the server closes the TCP connection; \
                 the client then closes with `SO_LINGER` 0 so that no TIME_WAIT socket is left (which \
                 would use up the loopback's ephemeral ports). Upgrades per second over the counting \
                 window. Every server is the echo server of the throughput cells. Ceiling: a raw \
                 server (hand-written 101 answer, then the close frame answered; no echo buffers)."
                .into(),
            libs: SERVERS.iter().map(|(n, _)| n.to_string()).collect(),
            ceiling: "raw (ceiling)".into(),
            samples: rates(&handshakes),
        };
        add(&mut doc, &mut appendix, &side, &hcells);
        let cpu = cpu_side(
            &side,
            "Handshakes, CPU efficiency: upgrades per second of server CPU time",
            per_cpu_second(&handshakes, |m| m.server_ns),
        );
        add(&mut doc, &mut appendix, &cpu, &hcells);
    }
    if do_client && !cells.is_empty() {
        let side = report::Side {
            title: "Client side (library clients, one neutral echo server)".into(),
            note: format!(
                "The echo server is hand-written on raw tokio TCP (unmasks, echoes unmasked, one write per \
                 read). Clients: {}. Ceiling: the raw load generator against the same server.",
                clients::STYLE
            ),
            libs: clients::CLIENTS.iter().map(|(n, _)| n.to_string()).collect(),
            ceiling: "raw (ceiling)".into(),
            samples: rates(&with_ceiling(&client)),
        };
        add(&mut doc, &mut appendix, &side, &cells);
        let cpu = cpu_side(
            &side,
            "Client side, CPU efficiency: echoes per second of client CPU time",
            per_cpu_second(&with_ceiling(&client), |m| m.client_ns),
        );
        add(&mut doc, &mut appendix, &cpu, &cells);
    }
    if let Some(idle) = &idle {
        doc.push_str(&idle.table());
        doc.push('\n');
        appendix.push_str(&idle.samples_table());
    }
    print!("{doc}");
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/bench-results.md"
        ))
    });
    let file = format!("{doc}\n## Appendix: every run\n\n{appendix}");
    match std::fs::write(&out, file) {
        Ok(()) => eprintln!("wrote {}", out.display()),
        Err(e) => eprintln!("could not write {}: {e}", out.display()),
    }
}
