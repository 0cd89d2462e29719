//! `tether serve`: an echo, broadcast or console server.
//!
//! - `serve.rs`: the options, and what each connection does (echo,
//!   broadcast, or only be shown);
//! - [`console`]: what is printed (`--print`, connection events) and what
//!   is typed (`--stdin`);
//! - [`routes`]: the answers to plain HTTP requests and the refusals of
//!   upgrades (`--health`, `--page`, `--static`, `--origin`), in the
//!   library's `process_request` hook;
//! - [`origin`], [`files`], [`page`]: the origin policy, the static files,
//!   the built-in console page.

mod console;
mod files;
mod origin;
mod page;
mod routes;

use crate::connect::EventsFormat;
use crate::input::{Encoding, Stdin};
use crate::output::{chain, Binary, Client, Format};
use crate::{socket_config, Limits, EXIT_ERROR, EXIT_USAGE};
use clap::Args;
use console::{Console, Ending};
use origin::Origins;
use routes::Routes;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tether::hub::{Hub, MemberId};
use tether::{ServerBuilder, WebSocket};

/// Examples shown by `tether serve --help`.
const EXAMPLES: &str = "\
Examples:
  An echo server (for tests, Autobahn):
    tether serve --echo 127.0.0.1:9001
  A chat room: every message to every client, shown here with its sender:
    tether serve --broadcast --print 127.0.0.1:9001
  Talk to the clients: lines typed here go to all of them, theirs show here:
    tether serve --stdin --print 127.0.0.1:9001
  Feed clients from a program (end of input does not stop the server):
    tail -f app.log | tether serve --stdin 127.0.0.1:9001
  Try it from a browser: a console page at http://127.0.0.1:9001/
    tether serve --echo --page 127.0.0.1:9001
  Serve a web app and its WebSocket on one port, with a health check:
    tether serve --broadcast --static ./public --health /healthz 0.0.0.0:8080
  Let only your front end's pages connect (other browsers' pages get 403):
    tether serve --echo --origin http://localhost:3000 127.0.0.1:9001
  What clients send, as JSON for jq:
    tether serve --print --jsonl 127.0.0.1:9001 | jq -c '.data'

Browser pages and --origin: a browser lets any page it shows open a
WebSocket to any server it can reach, and says which page in the Origin
header (RFC 6455 §10.2). Without --origin, a server with --page or --static
admits only its own pages; one without them admits every page, so a web page
open on this machine could join a server on 127.0.0.1 (and receive what
--stdin sends). Clients that are not browsers (tether connect, scripts) send
no Origin and are always let in: --origin is no authentication.

Ctrl-C or SIGTERM stops the server: every client gets close 1001 (going
away), and it exits 0.";

/// Options of `tether serve`.
#[derive(Args)]
#[command(after_help = EXAMPLES)]
// The options that put connections in a hub.
#[command(group(clap::ArgGroup::new("hub").args(["broadcast", "stdin"]).multiple(true)))]
pub(crate) struct ServeArgs {
    /// The address to listen on, host:port (port 0 picks a free one).
    pub(crate) addr: String,
    /// Echo every message back to its sender (text as text, binary as binary).
    #[arg(long, conflicts_with = "broadcast")]
    echo: bool,
    /// Send every message to every connected peer.
    #[arg(long)]
    broadcast: bool,
    /// Serve TLS (wss://) with this certificate chain (PEM, leaf first);
    /// needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// With --broadcast or --stdin: the most bytes queued for one peer. A
    /// peer that falls this far behind is closed with 1013 (try again
    /// later).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, requires = "hub")]
    pub(crate) max_queue_bytes: usize,
    /// With --broadcast: share the broadcast with every `tether serve
    /// --broadcast --redis` on the same Redis (redis://host:port). Each URL
    /// path is a topic; messages carry ids and clients that offer
    /// tether.resume.v1 resume with no message lost.
    // Topics have their own message loop: --print and --stdin are not
    // wired into it yet, so they are refused rather than ignored.
    #[arg(long, value_name = "URL", requires = "broadcast", conflicts_with_all = ["print", "stdin"])]
    pub(crate) redis: Option<String>,
    /// With --broadcast: the messages kept per topic for resuming clients
    /// (in Redis with --redis, else in memory); turns on topics and
    /// tether.resume.v1 without --redis too. Default 10000 with --redis,
    /// 1000 without.
    #[arg(long, value_name = "N", requires = "broadcast", conflicts_with_all = ["print", "stdin"])]
    pub(crate) history: Option<usize>,
    /// The most WebSocket connections open at once; beyond it an upgrade
    /// gets 503 with Retry-After: 5 (plain HTTP requests are still
    /// answered).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    #[command(flatten)]
    limits: Limits,
    /// Show each message a client sends, after its address (ADDRESS < text)
    /// on standard output; echo and broadcast are unchanged. Without
    /// --echo or --broadcast, messages are only shown.
    #[arg(long, help_heading = "Printing and typing")]
    print: bool,
    /// Send each line typed (or piped) on standard input to every client
    /// connected; the end of input does not stop the server.
    #[arg(long, help_heading = "Printing and typing")]
    stdin: bool,
    /// Output: human (default), or json: one event per line on standard
    /// output (listening, open, message, closed...), each with the
    /// connection's id and peer address.
    #[arg(
        long,
        value_enum,
        default_value = "human",
        help_heading = "Printing and typing"
    )]
    events: EventsFormat,
    /// With --print: write the data of each message and nothing else, one
    /// per line (binary as base64, or hex with --hex).
    #[arg(long, requires = "print", conflicts_with_all = ["jsonl", "events"], help_heading = "Printing and typing")]
    raw: bool,
    /// With --print: write each message as one line of JSON,
    /// {"id":N,"peer":"ADDRESS","data":...}, where data is the message's
    /// JSON value, or a string.
    #[arg(
        long,
        requires = "print",
        conflicts_with = "events",
        help_heading = "Printing and typing"
    )]
    jsonl: bool,
    /// With --stdin: send each line as a binary message.
    #[arg(long, requires = "stdin", help_heading = "Printing and typing")]
    binary: bool,
    /// With --stdin: lines are base64, each sent as the binary message it
    /// encodes.
    #[arg(
        long,
        requires = "stdin",
        conflicts_with = "hex",
        help_heading = "Printing and typing"
    )]
    base64: bool,
    /// Binary messages are shown in hex (not base64); with --stdin, lines
    /// are hex, each sent as the binary message it encodes.
    #[arg(long, help_heading = "Printing and typing")]
    hex: bool,
    /// Serve a console page at / for browsers: it connects back to this
    /// server, shows what arrives and sends what is typed. Off by default,
    /// so that a plain WebSocket endpoint answers plain GETs with 426.
    #[arg(long, help_heading = "HTTP")]
    page: bool,
    /// Serve the files under DIR for plain GETs (a directory as its
    /// index.html; nothing outside DIR and no hidden files: 404; a file
    /// over 8 MiB: 403). With --page, / is the console page.
    #[arg(long = "static", value_name = "DIR", help_heading = "HTTP")]
    static_dir: Option<std::path::PathBuf>,
    /// Answer GET PATH with 200 "ok" (a health check on the same port).
    #[arg(long, value_name = "PATH", help_heading = "HTTP")]
    health: Option<String>,
    /// Admit browser pages of this origin only, scheme://host[:port]
    /// (repeatable; * for any). Others get 403; clients that send no
    /// Origin (not browsers) are admitted. Default: with --page or
    /// --static, this server's own pages; otherwise any (see below).
    #[arg(long = "origin", value_name = "ORIGIN", help_heading = "HTTP")]
    origins: Vec<String>,
}

/// What a connection does with the messages of its client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Relay {
    /// Back to the sender.
    Echo,
    /// To every member of the hub.
    Broadcast,
    /// Nowhere (they are only shown, with --print).
    Keep,
}

/// The broadcast hub, and the connection number of each member (the
/// numbers this command prints).
#[derive(Clone)]
struct Broadcast {
    hub: Hub,
    numbers: Arc<Mutex<HashMap<MemberId, u64>>>,
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("tether: {msg}");
    ExitCode::from(EXIT_USAGE)
}

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    if !(args.echo || args.broadcast || args.print || args.stdin) {
        return usage(
            "choose what the server does: --echo, --broadcast, --print (show what clients \
             send) or --stdin (send what is typed)",
        );
    }
    let relay = if args.echo {
        Relay::Echo
    } else if args.broadcast {
        Relay::Broadcast
    } else {
        Relay::Keep
    };
    let format = match (args.events, args.raw, args.jsonl) {
        (EventsFormat::Json, _, _) => Format::Events,
        (_, true, _) => Format::Raw,
        (_, _, true) => Format::Jsonl { pretty: false },
        _ => Format::Human,
    };
    let binary = if args.hex {
        Binary::Hex
    } else {
        Binary::Base64
    };
    let console = Arc::new(Console::new(format, binary, args.print));
    if let Some(h) = &args.health {
        if !h.starts_with('/') {
            return usage(format!("--health {h:?}: a path starts with /"));
        }
    }
    let files = match args.static_dir.as_deref().map(files::Files::new) {
        Some(Err(e)) => return usage(e),
        Some(Ok(f)) => Some(f),
        None => None,
    };
    let origins = match Origins::from_args(&args.origins, args.page || files.is_some()) {
        Ok(o) => o,
        Err(e) => return usage(e),
    };
    let mut builder = ServerBuilder::new()
        .config(socket_config(
            tether::WebSocketConfig::server(),
            &args.limits,
        ))
        .max_connections(args.max_connections.map(|n| n as usize));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        builder = match builder.tls_pem(cert, key) {
            Ok(b) => b,
            Err(e) => return usage(chain(&e)),
        };
    }
    let tls = args.tls_cert.is_some();
    let root = files.as_ref().map(|f| f.root().to_path_buf());
    let policy = origins.clone();
    builder = Routes {
        health: args.health.clone(),
        page: args.page,
        files,
        origins,
        console: console.clone(),
    }
    .install(builder);
    if args.redis.is_some() || args.history.is_some() {
        // Topics (and resume): the same routes, health check and origin
        // policy, then the topic server.
        let scheme = if tls { "wss" } else { "ws" };
        return crate::serve_topics::run(builder, scheme, &args).await;
    }

    // Listening for SIGINT and SIGTERM from here on: a signal sent as soon
    // as `listening` is printed is not lost (it would kill the process).
    let mut signals = crate::signals::Signals::new();
    let ids = Arc::new(AtomicU64::new(0));
    // --stdin reaches every client through the hub, whatever they do with
    // their own messages.
    let broadcast = (args.broadcast || args.stdin).then(|| Broadcast {
        hub: Hub::builder().max_queue_bytes(args.max_queue_bytes).build(),
        numbers: Arc::default(),
    });
    let for_stdin = broadcast.clone();
    let shown = console.clone();
    let server = builder
        .serve(args.addr.as_str(), move |ws: WebSocket| {
            let broadcast = broadcast.clone();
            let console = shown.clone();
            let id = ids.fetch_add(1, Ordering::Relaxed);
            async move {
                let peer = ws.get_ref().tcp().peer_addr().ok();
                tracing::info!(?peer, id, "connection open");
                let client = console::client(id, peer);
                let end = match broadcast {
                    Some(b) => member(ws, &client, b, relay, &console).await,
                    None => alone(ws, &client, relay, &console).await,
                };
                console.closed(&client, &end);
            }
        })
        .await;
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tether: {}", chain(&e));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let addr = server.local_addr();
    console.listening(&format!("{}://{addr}/", if tls { "wss" } else { "ws" }));
    let http = format!("{}://{addr}", if tls { "https" } else { "http" });
    for note in startup_notes(&args, &http, root.as_deref(), &policy) {
        console.note(&note);
    }
    if let Some(b) = for_stdin.filter(|_| args.stdin) {
        start_stdin(&args, b, console.clone());
    }
    let stop = signals.recv().await;
    console.note(&format!(
        "{}: shutting down (close 1001 to every client)",
        stop.name()
    ));
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// What the server says after `listening on`; `http` is its http:// or
/// https:// address, `root` the directory of `--static`.
fn startup_notes(
    args: &ServeArgs,
    http: &str,
    root: Option<&std::path::Path>,
    origins: &Origins,
) -> Vec<String> {
    let mut notes = Vec::new();
    if args.page {
        notes.push(format!("console page: {http}/"));
    }
    if let Some(r) = root {
        notes.push(format!("serving the files of {} at {http}/", r.display()));
    }
    if let Some(h) = &args.health {
        notes.push(format!("health check: {http}{h}"));
    }
    match origins {
        Origins::Any if args.stdin => notes.push(
            "any web page a browser shows can connect and receive what is sent here; \
             restrict with --origin"
                .to_string(),
        ),
        Origins::Any => {}
        o => notes.push(format!("browser pages admitted: {}", o.describe())),
    }
    notes
}

/// Starts reading standard input for `--stdin`, if there is anything to
/// read.
fn start_stdin(args: &ServeArgs, b: Broadcast, console: Arc<Console>) {
    let encoding = if args.hex {
        Encoding::Hex
    } else if args.base64 {
        Encoding::Base64
    } else if args.binary {
        Encoding::Binary
    } else {
        Encoding::Text
    };
    match Stdin::detect() {
        Stdin::Nothing => {
            console.note("--stdin: standard input has nothing to read (not a terminal, a pipe or a file with data)");
            return;
        }
        Stdin::Terminal => console.note("type lines to send them to every client"),
        Stdin::Data => {}
    }
    let input = crate::input::spawn_stdin(encoding, false);
    let numbers = b.numbers.clone();
    tokio::spawn(console::stdin_to_all(b.hub, input, console, move |m| {
        lock(&numbers).get(&m).copied()
    }));
}

/// A connection outside any hub: echoes data messages (`Relay::Echo`) or
/// only shows them. `send` coalesces writes while more input is buffered,
/// so a burst of messages goes out in one write.
async fn alone(mut ws: WebSocket, client: &Client, relay: Relay, console: &Console) -> Ending {
    console.open(client, ws.request().map(|r| r.path()));
    let mut end = Ending::default();
    while let Some(msg) = ws.recv().await {
        end.see(&msg);
        match msg {
            Ok(m) if m.is_data() => {
                console.received(client, &m);
                if relay == Relay::Echo && ws.send(m).await.is_err() {
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
    end
}

/// A connection in the hub (`--broadcast`, `--stdin`): relays every data
/// message of this peer to all peers, itself included
/// (`Relay::Broadcast`), echoes it, or only shows it.
///
/// What one peer can make the server hold is bounded by bytes: each peer's
/// queue (its connection's unsent bytes) holds at most `--max-queue-bytes`.
/// A peer that falls that far behind (it stopped reading, or reads slower
/// than the others publish) is closed with 1013 "try again later" rather
/// than slowing the others or silently losing messages: the client learns
/// that it missed messages, and a reconnecting client (tether's retries
/// 1013 with backoff) comes back.
async fn member(
    ws: WebSocket,
    client: &Client,
    b: Broadcast,
    relay: Relay,
    console: &Console,
) -> Ending {
    let path = ws.request().map(|r| r.path().to_string());
    let mut member = b.hub.join(ws);
    lock(&b.numbers).insert(member.id(), client.id);
    // Once in the hub: a line typed after this note reaches the client.
    console.open(client, path.as_deref());
    let mut end = Ending::default();
    while let Some(msg) = member.recv().await {
        end.see(&msg);
        let Ok(m) = msg else { break };
        if !m.is_data() {
            continue;
        }
        console.received(client, &m);
        match relay {
            Relay::Broadcast => {
                let Ok(report) = b.hub.broadcast(m) else {
                    continue;
                };
                for slow in report.closed_slow {
                    let n = lock(&b.numbers).get(&slow).copied();
                    console.too_slow(n, b.hub.max_queue_bytes());
                }
            }
            Relay::Echo => {
                if member.send(m).await.is_err() {
                    break;
                }
            }
            Relay::Keep => {}
        }
    }
    lock(&b.numbers).remove(&member.id());
    end
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
