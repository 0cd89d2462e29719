//! `tether`: a WebSocket client and server for the command line.

use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use tether::{ClientBuilder, CloseCode, ErrorKind, Message, ServerBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Exit status after a usage error.
const EXIT_USAGE: u8 = 64;
/// Exit status after the server refused the upgrade with an HTTP status.
const EXIT_HTTP: u8 = 3;
/// Exit status after any other error.
const EXIT_ERROR: u8 = 1;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A WebSocket client and server that stays connected, and says clearly when it cannot"
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
    Connect(ConnectArgs),
    /// Run a WebSocket server.
    Serve(ServeArgs),
}

#[derive(Args)]
struct Limits {
    /// The largest message accepted, in bytes (0 or "none": unlimited).
    #[arg(long, value_name = "BYTES", default_value = "1048576", value_parser = parse_size)]
    max_size: Size,
    /// Close timeout in seconds (0 or "none": wait forever).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_duration)]
    close_timeout: Secs,
}

#[derive(Args)]
struct ConnectArgs {
    /// The server's URL, ws://host[:port]/path.
    url: String,
    /// Send every message received back to the server, until it closes
    /// (for conformance tests such as Autobahn).
    #[arg(long)]
    echo: bool,
    /// An extra request header, 'Name: value' (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A subprotocol to offer (repeatable).
    #[arg(long)]
    subprotocol: Vec<String>,
    /// The Origin header.
    #[arg(long)]
    origin: Option<String>,
    /// Open timeout in seconds (0 or "none": no timeout).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_duration)]
    open_timeout: Secs,
    #[command(flatten)]
    limits: Limits,
}

#[derive(Args)]
struct ServeArgs {
    /// The address to listen on, host:port.
    addr: String,
    /// Echo every message back to its sender (text as text, binary as binary).
    #[arg(long)]
    echo: bool,
    #[command(flatten)]
    limits: Limits,
}

/// A size limit; `None` means unlimited.
#[derive(Clone, Copy, Debug)]
struct Size(Option<usize>);

/// A duration; `None` means disabled.
#[derive(Clone, Copy, Debug)]
struct Secs(Option<Duration>);

fn parse_size(s: &str) -> Result<Size, String> {
    match s {
        "none" | "0" => Ok(Size(None)),
        _ => s
            .parse::<usize>()
            .map(|n| Size(Some(n)))
            .map_err(|e| format!("{s:?}: {e}")),
    }
}

fn parse_duration(s: &str) -> Result<Secs, String> {
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

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
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

#[tokio::main]
async fn main() -> ExitCode {
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
        Command::Connect(args) => connect(args).await,
        Command::Serve(args) => serve(args).await,
    }
}

fn socket_config(l: &Limits) -> tether::Config {
    let mut c = tether::Config::default();
    c.max_message_size = l.max_size.0;
    c.close_timeout = l.close_timeout.0;
    c
}

async fn connect(args: ConnectArgs) -> ExitCode {
    let mut builder = ClientBuilder::new(args.url.clone())
        .open_timeout(args.open_timeout.0)
        .config(socket_config(&args.limits));
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            eprintln!("tether: --header needs 'Name: value', got {h:?}");
            return ExitCode::from(EXIT_USAGE);
        };
        builder = match builder.header(name.trim(), value.trim()) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("tether: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
    }
    for p in &args.subprotocol {
        builder = builder.subprotocol(p.clone());
    }
    if let Some(o) = &args.origin {
        builder = builder.origin(o.clone());
    }
    let url = builder.url_redacted();
    let mut ws = match builder.connect().await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("tether: could not connect to {url}: {e}");
            return ExitCode::from(match e.kind() {
                ErrorKind::HttpStatus => EXIT_HTTP,
                ErrorKind::InvalidUrl => EXIT_USAGE,
                _ => EXIT_ERROR,
            });
        }
    };
    if args.echo {
        return echo_client(ws).await;
    }
    eprintln!("tether: connected to {url} (Ctrl-D to close)");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(line)) => {
                    if let Err(e) = ws.send(Message::text(line)).await {
                        eprintln!("tether: send failed: {e}");
                        return ExitCode::from(EXIT_ERROR);
                    }
                }
                _ => {
                    let _ = ws.close(CloseCode::NORMAL, "").await;
                    return ExitCode::SUCCESS;
                }
            },
            msg = ws.recv() => match msg {
                Some(Ok(Message::Text(t))) => println!("< {t}"),
                Some(Ok(Message::Binary(b))) => println!("< ({} bytes of binary data)", b.len()),
                Some(Ok(Message::Close(frame))) => {
                    match frame {
                        Some(f) => eprintln!("tether: server closed the connection: {f}"),
                        None => eprintln!("tether: server closed the connection"),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    eprintln!("tether: {e}");
                    return ExitCode::from(EXIT_ERROR);
                }
                None => return ExitCode::SUCCESS,
            },
            _ = tokio::signal::ctrl_c() => return ExitCode::from(130),
        }
    }
}

async fn echo_client(mut ws: tether::WebSocket) -> ExitCode {
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(m) if m.is_data() => {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(error = %e, "connection failed");
                break;
            }
        }
    }
    let _ = ws.flush().await;
    ExitCode::SUCCESS
}

async fn serve(args: ServeArgs) -> ExitCode {
    if !args.echo {
        eprintln!("tether: choose what the server does: --echo");
        return ExitCode::from(EXIT_USAGE);
    }
    let builder = ServerBuilder::new().config(socket_config(&args.limits));
    let server = builder
        .serve(args.addr.as_str(), |ws| async move {
            let peer = ws.get_ref().tcp().peer_addr().ok();
            tracing::info!(?peer, "connection open");
            echo(ws).await;
            tracing::info!(?peer, "connection closed");
        })
        .await;
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tether: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    println!("listening on ws://{}/", server.local_addr());
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("tether: shutting down (close 1001 to every client)");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Echoes data messages. `send` coalesces writes while more input is
/// buffered, so a burst of messages goes out in one write.
async fn echo(mut ws: tether::WebSocket) {
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(m) if m.is_data() => {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(error = %e, "connection failed");
                break;
            }
        }
    }
    let _ = ws.flush().await;
}
