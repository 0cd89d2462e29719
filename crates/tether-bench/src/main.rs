//! `tether-bench`: echo throughput of tether against tokio-tungstenite,
//! fastwebsockets and tokio-websockets, as a server and as a client.
//!
//! - Server side: one neutral, hand-written load generator (raw tokio TCP,
//!   pre-encoded masked frames, `N` connections with `k` messages in flight
//!   each) drives each library's echo server in turn.
//! - Client side: each library's client drives one neutral, hand-written
//!   echo server.
//!
//! The server runs on a current-thread tokio runtime in its own thread
//! pinned to one CPU, the load on another pinned to the other CPU. Every
//! cell is repeated (libraries interleaved) and the median is reported.
//!
//! Run: `cargo run --release -p tether-bench -- [--quick]`. The tables go to
//! stdout and to `target/bench-results.md`.

mod clients;
mod harness;
mod raw;
mod report;
mod servers;

use clap::Parser;
use harness::{Cell, ServerFn, Timing};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Echo benchmark of tether against other Rust WebSocket libraries")]
struct Args {
    /// Short runs, one repetition (under a minute).
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
    /// Which side to measure: server, client or both.
    #[arg(long, default_value = "both")]
    side: String,
    /// Only the cells whose label contains this (e.g. "16 B").
    #[arg(long)]
    cells: Option<String>,
    /// Only the libraries whose label contains this (the raw ceiling always runs).
    #[arg(long)]
    libs: Option<String>,
    /// Where to write the markdown report.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The servers under test: label and connection handler.
const SERVERS: &[(&str, ServerFn)] = &[
    ("tether", servers::tether),
    (
        "tokio-tungstenite (split+forward)",
        servers::tungstenite_forward,
    ),
    (
        "tokio-tungstenite (next/send)",
        servers::tungstenite_next_send,
    ),
    ("fastwebsockets", servers::fastwebsockets),
    ("tokio-websockets", servers::tokio_websockets),
];

/// Share of one CPU (percent) that other processes may take during a
/// counting window before the run is repeated.
const MAX_OTHERS: f64 = 10.0;
/// Attempts per run before a disturbed result is kept anyway.
const MAX_TRIES: usize = 4;

/// The cells: 16 B and 1 KiB with 16 in flight, 64 KiB and 1 MiB with 1.
const CELLS: &[Cell] = &[
    Cell {
        payload: 16,
        conns: 64,
        inflight: 16,
    },
    Cell {
        payload: 16,
        conns: 1,
        inflight: 16,
    },
    Cell {
        payload: 1024,
        conns: 64,
        inflight: 16,
    },
    Cell {
        payload: 1024,
        conns: 1,
        inflight: 16,
    },
    Cell {
        payload: 64 << 10,
        conns: 64,
        inflight: 1,
    },
    Cell {
        payload: 64 << 10,
        conns: 1,
        inflight: 1,
    },
    Cell {
        payload: 1 << 20,
        conns: 64,
        inflight: 1,
    },
    Cell {
        payload: 1 << 20,
        conns: 1,
        inflight: 1,
    },
];

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

fn main() {
    let args = Args::parse();
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
    let do_server = args.side != "client";
    let do_client = args.side != "server";
    let cells: Vec<Cell> = CELLS
        .iter()
        .copied()
        .filter(|c| args.cells.as_deref().is_none_or(|f| c.label().contains(f)))
        .collect();

    let cpu_before = harness::CpuTicks::now();
    let mut retried = 0usize;
    let mut kept_disturbed = 0usize;
    let wanted = |name: &str| args.libs.as_deref().is_none_or(|f| name.contains(f));
    let started = Instant::now();
    let mut ceiling = vec![Vec::new(); cells.len()];
    let mut server = vec![vec![Vec::new(); SERVERS.len()]; cells.len()];
    let mut client = vec![vec![Vec::new(); clients::CLIENTS.len()]; cells.len()];
    for (ci, &cell) in cells.iter().enumerate() {
        for rep in 1..=reps {
            let mut one = |what: &str, server_fn: ServerFn, client_fn: harness::ClientFn| {
                // A run during which other processes took a real share of
                // the CPUs is not a measurement of the libraries: redo it.
                let mut tries = 0;
                loop {
                    tries += 1;
                    let (r, others) = harness::run(server_fn, client_fn, cell, timing);
                    let label = cell.label();
                    match &r {
                        Ok(x) if others > MAX_OTHERS && tries < MAX_TRIES => {
                            retried += 1;
                            eprintln!(
                                "[{label}] run {rep}/{reps} {what}: {}/s, but other processes \
                                 used {others:.0}% of a CPU meanwhile; again",
                                report::rate(*x)
                            );
                            harness::wait_quiet(MAX_OTHERS, Duration::from_secs(60));
                            continue;
                        }
                        Ok(x) => {
                            if others > MAX_OTHERS {
                                kept_disturbed += 1;
                            }
                            eprintln!(
                                "[{label}] run {rep}/{reps} {what}: {}/s (others {others:.0}%)",
                                report::rate(*x)
                            )
                        }
                        Err(e) => eprintln!("[{label}] run {rep}/{reps} {what}: ERROR {e}"),
                    }
                    return r;
                }
            };
            ceiling[ci].push(one(
                "raw generator -> raw server",
                raw::echo_server,
                raw::loadgen,
            ));
            if do_server {
                for (li, (name, f)) in SERVERS.iter().enumerate().filter(|(_, (n, _))| wanted(n)) {
                    server[ci][li].push(one(&format!("server {name}"), *f, raw::loadgen));
                }
            }
            if do_client {
                for (li, (name, f)) in clients::CLIENTS
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _))| wanted(n))
                {
                    client[ci][li].push(one(&format!("client {name}"), raw::echo_server, *f));
                }
            }
        }
    }

    let mut doc = format!(
        "# tether echo benchmark\n\n\
         Versions: {}.\n\n\
         Loopback echo. The server runs on a current-thread tokio runtime in its own thread pinned to \
         one CPU, the load on another current-thread runtime pinned to the other CPU. Messages per second \
         = echoed messages counted over {:.1} s after {:.2} s of warm-up; median of {reps} run(s), the \
         libraries interleaved within each repetition. Cells: payload, connections x messages in flight \
         per connection. Ratios above 1 mean tether is faster. Total time {:.0} s; during it {} \
         (anything else running on the machine skews the numbers; {} run(s) during which other \
         processes took over {MAX_OTHERS:.0}% of a CPU were discarded and repeated after the machine \
         was quiet again; {} disturbed run(s) kept after {MAX_TRIES} tries).\n\n",
        versions(),
        timing.measure.as_secs_f64(),
        timing.warmup.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        disturbance(cpu_before, started.elapsed().as_secs_f64()),
        retried,
        kept_disturbed
    );
    let mut appendix = String::new();
    let with_ceiling = |libs: Vec<Vec<report::Samples>>| -> Vec<Vec<report::Samples>> {
        libs.into_iter()
            .zip(ceiling.iter())
            .map(|(mut row, c)| {
                row.push(c.clone());
                row
            })
            .collect()
    };
    if do_server {
        let side = report::Side {
            title: "Server side (library echo servers, one neutral load generator)".into(),
            note: "The load generator is hand-written on raw tokio TCP: a fixed-key upgrade, then pre-encoded \
                   masked binary frames, checking that every echo is binary, unmasked and of the sent length \
                   (and content). Ceiling: the same generator against a hand-written raw echo server."
                .into(),
            libs: SERVERS.iter().map(|(n, _)| n.to_string()).collect(),
            ceiling: "raw (ceiling)".into(),
            samples: with_ceiling(server),
        };
        doc.push_str(&side.table(&cells));
        doc.push('\n');
        appendix.push_str(&side.samples_table(&cells));
        appendix.push('\n');
    }
    if do_client {
        let side = report::Side {
            title: "Client side (library clients, one neutral echo server)".into(),
            note: format!(
                "The echo server is hand-written on raw tokio TCP (unmasks, echoes unmasked, one write per \
                 read). Clients: {}. Ceiling: the raw load generator against the same server.",
                clients::STYLE
            ),
            libs: clients::CLIENTS.iter().map(|(n, _)| n.to_string()).collect(),
            ceiling: "raw (ceiling)".into(),
            samples: with_ceiling(client),
        };
        doc.push_str(&side.table(&cells));
        doc.push('\n');
        appendix.push_str(&side.samples_table(&cells));
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
