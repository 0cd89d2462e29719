//! `tether`: a WebSocket client and server for the command line.

mod connect;
mod demo;
mod input;
mod output;
mod serve;
mod serve_topics;
mod signals;

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
    after_help = "Exit status: 0 after a normal close (and after SIGTERM, which closes with 1001); \
1 fatal error; 2 usage error or invalid input; 3 the server refused the upgrade with an HTTP \
status; 4 --reconnect gave up; 130 interrupted (Ctrl-C, which closes with 1000).

Diagnostics (standard error): -v the handshake (credentials redacted), keepalive pings and \
their latency, reconnects; -vv also every frame's header (opcode, length, FIN, RSV, masked); \
-vvv also the first 64 bytes of each payload, which may hold secrets. RUST_LOG overrides."
)]
struct Cli {
    /// More diagnostics on standard error: -v the handshake, keepalive and
    /// reconnects; -vv also frames; -vvv also payloads (see tether --help).
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
    /// Run a WebSocket server: echo, broadcast, show what clients send,
    /// send what is typed; a console page, files and a health check on the
    /// same port.
    Serve(Box<serve::ServeArgs>),
    /// A scripted story of a connection that survives refusals, 503s,
    /// restarts, a dead peer and an expired token (about 30 s, loopback only).
    Demo(demo::DemoArgs),
    /// Print a completion script for a shell, to source or install:
    /// `tether completions bash > /etc/bash_completion.d/tether`,
    /// `tether completions zsh > "${fpath[1]}/_tether"`,
    /// `tether completions fish > ~/.config/fish/completions/tether.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
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

/// The `tracing` filter for `-v` repeated `verbose` times. Frames are TRACE
/// events of target `tether::frame`, payload excerpts of `tether::payload`
/// (see `tether_proto`'s crate docs), so each level adds one thing.
fn filter_for(verbose: u8) -> &'static str {
    match verbose {
        // The command's own output says what happens.
        0 => "off",
        // The handshake, keepalive pings, reconnect decisions.
        1 => "debug",
        // And every frame's header; payloads stay out.
        2 => "debug,tether::frame=trace",
        // And an excerpt of every payload.
        _ => "trace",
    }
}

fn init_tracing(verbose: u8) {
    let default = filter_for(verbose);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
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
        Command::Serve(args) => serve::run(*args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "tether", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}
