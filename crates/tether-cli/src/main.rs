//! `tether`: a WebSocket client and server for the command line.

mod connect;
mod demo;
mod output;
mod serve;

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// Exit status after a normal close.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit status after any fatal error that is not one below.
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit status after a usage error (bad option, bad URL).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit status after the server refused the upgrade with an HTTP status.
pub(crate) const EXIT_HTTP: u8 = 3;
/// Exit status when `--reconnect` gave up (attempts or time exhausted).
pub(crate) const EXIT_EXHAUSTED: u8 = 4;
/// Exit status after Ctrl-C.
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A WebSocket client and server that stays connected, and says clearly when it cannot",
    after_help = "Exit status: 0 after a normal close; 1 fatal error; 2 usage error; \
3 the server refused the upgrade with an HTTP status; 4 --reconnect gave up; 130 interrupted."
)]
struct Cli {
    /// More diagnostics on standard error (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to a WebSocket server: send lines typed (or piped) as text
    /// messages, print messages received.
    Connect(Box<connect::ConnectArgs>),
    /// Run a WebSocket server.
    Serve(serve::ServeArgs),
    /// A scripted story of a connection that survives refusals, 503s,
    /// restarts, a dead peer and an expired token (about 30 s, loopback only).
    Demo(demo::DemoArgs),
}

/// Limits shared by client and server.
#[derive(Args, Clone)]
pub(crate) struct Limits {
    /// The largest message accepted, in bytes (0 or "none": unlimited).
    #[arg(long, value_name = "BYTES", default_value = "1048576", value_parser = parse_size)]
    max_size: Size,
    /// Close timeout in seconds (0 or "none": wait forever).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_duration)]
    close_timeout: Secs,
    /// Keepalive ping interval in seconds (0 or "none": no keepalive).
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_duration)]
    ping_interval: Secs,
    /// How long a keepalive ping waits for its pong, in seconds (0 or "none": forever).
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = parse_duration)]
    ping_timeout: Secs,
}

/// A size limit; `None` means unlimited.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Size(pub(crate) Option<usize>);

/// A duration; `None` means disabled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Secs(pub(crate) Option<Duration>);

fn parse_size(s: &str) -> Result<Size, String> {
    match s {
        "none" | "0" => Ok(Size(None)),
        _ => s
            .parse::<usize>()
            .map(|n| Size(Some(n)))
            .map_err(|e| format!("{s:?}: {e}")),
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Secs, String> {
    match s {
        "none" => Ok(Secs(None)),
        _ => {
            let secs: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
            if !(secs.is_finite() && secs >= 0.0) {
                return Err(format!("{s:?}: not a duration in seconds"));
            }
            Ok(Secs((secs > 0.0).then(|| Duration::from_secs_f64(secs))))
        }
    }
}

/// `base` with the limits of the command line applied: the library's
/// defaults stay unless a flag changes them.
pub(crate) fn socket_config(base: tether::WebSocketConfig, l: &Limits) -> tether::WebSocketConfig {
    let mut c = base;
    c.max_message_size = l.max_size.0;
    c.close_timeout = l.close_timeout.0;
    c.ping_interval = l.ping_interval.0;
    c.ping_timeout = l.ping_timeout.0;
    c
}

fn init_tracing(verbose: u8) {
    // Without -v the command's own output says what happens; -v adds the
    // library's events.
    let default = match verbose {
        0 => "off",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let code = rt.block_on(run());
    // A read of standard input may still be blocked in a runtime thread;
    // don't wait for it.
    rt.shutdown_background();
    code
}

async fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(cli.verbose);
    match cli.command {
        Command::Connect(args) => connect::run(*args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Demo(args) => demo::run(args).await,
    }
}
