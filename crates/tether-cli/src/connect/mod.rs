//! `tether connect`: the interactive (or scripted, or daemon) client.
//!
//! - [`input`](crate::input) (shared with `tether serve --stdin`): what is
//!   sent, and what standard input is;
//! - [`once`]: one connection (without `--reconnect`);
//! - [`session`]: a reconnecting session (`--reconnect`).
//!
//! # When input ends
//!
//! | input | at its end |
//! |---|---|
//! | a pipe, a socket, a non-empty file, `--file` (without `--reconnect`) | close with 1000, print what arrives until the server's close |
//! | a terminal: Ctrl-D (without `--reconnect`) | the same |
//! | with `--reconnect`, or `--one` | stop sending; the connection stays |
//! | `/dev/null` or another non-terminal character device, an empty file, a closed descriptor | not read; the connection stays |
//! | `--no-stdin` (`--listen`), `--echo` | not read; the connection stays |
//! | `--close-on-eof` | close with 1000, whatever the input and options |
//!
//! A connection that stays ends when the server ends it (with `--reconnect`,
//! a fatal ending), or on SIGINT (close 1000, exit 130) or SIGTERM (close
//! 1001, exit 0).

mod once;
mod session;

use crate::input::{self, Encoding, Item, Stdin};
use crate::output::{chain, Binary, Format, Out};
use crate::{
    parse_duration, socket_config, Limits, Secs, EXIT_ERROR, EXIT_EXHAUSTED, EXIT_HTTP, EXIT_USAGE,
};
use clap::{Args, ValueEnum};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tether::reconnect::{classify, Backoff, Decision, Event, Failure, ReconnectPolicy};
use tether::{ClientBuilder, Error, ErrorKind};
use tokio::sync::mpsc;

/// The output format of `--events`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum EventsFormat {
    /// Lines for people (the default).
    Human,
    /// One JSON object per line on standard output.
    Json,
}

/// Examples shown by `tether connect --help`.
const EXAMPLES: &str = "\
Examples:
  Chat by hand (Ctrl-D closes, Ctrl-C quits):
    tether connect ws://127.0.0.1:9001/
  Send lines from a pipe, print the answers, close when the input ends:
    printf 'hello\\nworld\\n' | tether connect ws://127.0.0.1:9001/
  Read a feed with jq (message data only, one per line):
    tether connect --raw --no-stdin wss://example.com/feed | jq .price
  Every message as one JSON line, even when the server pretty-prints:
    tether connect --jsonl --no-stdin wss://example.com/feed
  Send a file as one binary message, print one reply, exit:
    tether connect -1 --file image.png ws://127.0.0.1:9001/upload
  Binary messages from hex or base64 lines (and binary replies shown so):
    echo 'deadbeef' | tether connect --hex ws://127.0.0.1:9001/
  Each line as a binary message, or the whole input as one:
    tether connect --binary --whole ws://127.0.0.1:9001/ < request.bin
  Request and reply (exit 0 with the reply, 1 if the connection ends first):
    echo '{\"op\":\"ping\"}' | tether connect -1 ws://127.0.0.1:9001/
  A daemon that stays connected and logs JSON events (stdin at /dev/null):
    tether connect --reconnect --events json wss://example.com/feed < /dev/null
  Frames, handshake and keepalive on standard error:
    tether -vv connect ws://127.0.0.1:9001/";

/// Options of `tether connect`.
#[derive(Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ConnectArgs {
    /// The server's URL, ws://[user:password@]host[:port]/path (or wss:// for TLS).
    url: String,
    /// Send every message received back to the server, until it closes
    /// (for conformance tests such as Autobahn).
    #[arg(long)]
    echo: bool,
    /// An extra request header, 'Name: value' (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A header whose value is a secret, besides Authorization, Cookie and
    /// the names with auth, token, key, secret, session... (repeatable): its
    /// value is scrubbed from a refusal that echoes it.
    #[arg(long, value_name = "NAME")]
    sensitive_header: Vec<String>,
    /// A subprotocol to offer (repeatable).
    #[arg(long)]
    subprotocol: Vec<String>,
    /// The Origin header.
    #[arg(long)]
    origin: Option<String>,
    /// Do not offer permessage-deflate compression.
    #[arg(long)]
    no_compression: bool,
    /// Connect through this proxy: http://, socks5:// or socks5h://, with
    /// optional user:password@ (default: the proxy the environment names in
    /// ws_proxy, wss_proxy, socks_proxy, https_proxy, http_proxy, all_proxy,
    /// unless no_proxy matches).
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    proxy: Option<String>,
    /// Connect directly, ignoring the proxy environment variables.
    #[arg(long)]
    no_proxy: bool,
    /// wss://: also trust the CA certificates of this PEM file (besides the
    /// system's).
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// INSECURE, TESTS ONLY: accept any certificate (self-signed, expired,
    /// for another host). Anyone on the path can read and change the traffic.
    #[arg(long)]
    insecure: bool,
    /// Open timeout in seconds: DNS, TCP and the upgrade (0 or "none": no timeout).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_duration)]
    open_timeout: Secs,
    #[command(flatten)]
    limits: Limits,
    /// Reconnect automatically, with backoff, as long as failures are retryable.
    #[arg(long)]
    reconnect: bool,
    /// With --reconnect: resume after each reconnect with no message lost,
    /// when the server speaks tether.resume.v1 (`tether serve --broadcast
    /// --redis/--history`): the last id seen goes in the URL of each
    /// reconnect, and a gap the server reports is printed (a `gap` event
    /// with --events json). Any other server works as without it.
    #[arg(long, requires = "reconnect")]
    pub(super) resume: bool,
    /// With --reconnect: another URL of the same service, tried in turn
    /// after a failure (repeatable).
    #[arg(long, value_name = "URL", requires = "reconnect")]
    pub(super) fallback_url: Vec<String>,
    /// The first delay is uniform in [0, this) seconds (default 5).
    #[arg(long, value_name = "SECONDS", requires = "reconnect")]
    backoff_initial: Option<f64>,
    /// The second delay, in seconds (default 3.1).
    #[arg(long, value_name = "SECONDS", requires = "reconnect")]
    backoff_min: Option<f64>,
    /// The longest delay, in seconds (default 90).
    #[arg(long, value_name = "SECONDS", requires = "reconnect")]
    backoff_max: Option<f64>,
    /// The growth factor of the delay (default 1.618).
    #[arg(long, requires = "reconnect")]
    backoff_factor: Option<f64>,
    /// Give up after this many failed attempts in a row.
    #[arg(long, requires = "reconnect")]
    max_attempts: Option<u32>,
    /// HTTP statuses to retry (comma-separated), besides the defaults.
    #[arg(long, value_delimiter = ',', requires = "reconnect")]
    retry_status: Vec<u16>,
    /// HTTP statuses to treat as fatal (comma-separated), overriding the defaults.
    #[arg(long, value_delimiter = ',', requires = "reconnect")]
    fatal_status: Vec<u16>,
    /// Output format: human (default) or json (one event per line).
    #[arg(long, value_enum, default_value = "human", help_heading = "Output")]
    events: EventsFormat,
    /// Print the data of each message received and nothing else, one per
    /// line (binary as base64, or hex with --hex); notes go to standard
    /// error.
    #[arg(long, conflicts_with_all = ["jsonl", "events"], help_heading = "Output")]
    raw: bool,
    /// With --raw: write binary messages as their bytes, unchanged and with
    /// no line break.
    #[arg(
        long,
        requires = "raw",
        conflicts_with = "hex",
        help_heading = "Output"
    )]
    raw_bytes: bool,
    /// Print each message received as one line of JSON: a text message that
    /// is JSON as that value (compacted), any other as a JSON string (binary
    /// in base64, or hex with --hex).
    #[arg(long, conflicts_with = "events", help_heading = "Output")]
    jsonl: bool,
    /// With --jsonl: indent each value (for people; no longer one per line).
    #[arg(long, requires = "jsonl", help_heading = "Output")]
    pretty: bool,
    /// Print one message received, close, and exit: 0 with the message, 1
    /// when the connection ends first. Input is still sent; its end does not
    /// close.
    #[arg(short = '1', long, conflicts_with_all = ["reconnect", "echo", "close_on_eof"], help_heading = "Output")]
    one: bool,
    /// Send each line (or, with --whole, the whole input) as a binary
    /// message instead of text.
    #[arg(long, help_heading = "Input")]
    binary: bool,
    /// Send the whole input as one message, not one message a line.
    #[arg(long, help_heading = "Input")]
    whole: bool,
    /// Input lines are base64: each is sent as the binary message it
    /// encodes. Binary messages are shown in base64 (the default anyway).
    #[arg(long, conflicts_with = "hex", help_heading = "Input")]
    base64: bool,
    /// Input lines are hex (white space ignored): each is sent as the binary
    /// message it encodes. Binary messages received are shown in hex.
    #[arg(long, help_heading = "Input")]
    hex: bool,
    /// Send this file as one message (binary, unless --text), instead of
    /// reading standard input.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["binary", "whole", "base64", "hex"], help_heading = "Input")]
    file: Option<std::path::PathBuf>,
    /// With --file: send it as a text message (it must be UTF-8).
    #[arg(long, requires = "file", help_heading = "Input")]
    text: bool,
    /// Do not read standard input: only listen.
    #[arg(
        long,
        visible_alias = "listen",
        conflicts_with = "close_on_eof",
        help_heading = "Input"
    )]
    no_stdin: bool,
    /// Close the connection (1000) when the input ends, even with
    /// --reconnect or with standard input at /dev/null, as it does for
    /// a connection without --reconnect.
    #[arg(long, help_heading = "Input")]
    close_on_eof: bool,
}

/// What the options decide about input and output, in one place.
pub(crate) struct Plan {
    /// What to send, if anything; `None`: nothing is read.
    input: Option<mpsc::Receiver<Item>>,
    /// The end of input closes the connection (1000).
    close_on_eof: bool,
    /// Print one message, then close and exit.
    one: bool,
    /// Echo every message back.
    echo: bool,
}

impl Plan {
    /// Reads the options; `Err` is a usage error (a `--file` that cannot be
    /// read). Starts the reader of standard input when there is one.
    fn new(args: &ConnectArgs, stdin: Stdin, out: &Out) -> Result<Plan, String> {
        let file = match &args.file {
            Some(path) => Some(input::read_file(path, args.text)?),
            None => None,
        };
        let encoding = if args.hex {
            Encoding::Hex
        } else if args.base64 {
            Encoding::Base64
        } else if args.binary {
            Encoding::Binary
        } else {
            Encoding::Text
        };
        let input = if let Some(msg) = file {
            Some(input::one_message(msg))
        } else if args.no_stdin || args.echo {
            None
        } else if stdin == Stdin::Nothing && !args.close_on_eof {
            out.note("standard input has nothing to read (not a terminal, a pipe or a file with data): listening only");
            None
        } else {
            Some(input::spawn_stdin(encoding, args.whole))
        };
        // The end of input closes only where it means "done": piped data or
        // Ctrl-D, without --reconnect; or when asked to.
        let close_on_eof = args.close_on_eof || !(args.reconnect || args.one);
        Ok(Plan {
            input,
            close_on_eof,
            one: args.one,
            echo: args.echo,
        })
    }
}

fn usage(msg: String) -> ExitCode {
    eprintln!("tether: {msg}");
    ExitCode::from(EXIT_USAGE)
}

/// The exit status for an error that ended the command.
fn exit_for(e: &Error) -> u8 {
    match e.kind() {
        ErrorKind::Exhausted => EXIT_EXHAUSTED,
        ErrorKind::HttpStatus => EXIT_HTTP,
        ErrorKind::InvalidUrl | ErrorKind::Config => EXIT_USAGE,
        _ => EXIT_ERROR,
    }
}

/// The error in plain words; for a refusal of credentials, which credential
/// headers were sent (values redacted).
fn describe(e: &Error, credentials: &[String]) -> String {
    // A proxy's refusal already names the proxy URL's credentials.
    let by_server = |e: &Error| e.is_auth_refused() && !e.is_proxy();
    let refused = by_server(e) || e.last_error().is_some_and(by_server);
    if !refused {
        return chain(e);
    }
    let sent = if credentials.is_empty() {
        "no credentials were sent (add one with --header 'Authorization: ...')".to_string()
    } else {
        let list: Vec<String> = credentials
            .iter()
            .map(|h| format!("{h}: <redacted>"))
            .collect();
        format!("check the credentials: sent {}", list.join(", "))
    };
    format!("{}; {sent}", chain(e))
}

pub(crate) async fn run(args: ConnectArgs) -> ExitCode {
    let format = match (args.events, args.raw, args.jsonl) {
        (EventsFormat::Json, _, _) => Format::Events,
        (_, true, _) => Format::Raw,
        (_, _, true) => Format::Jsonl {
            pretty: args.pretty,
        },
        _ => Format::Human,
    };
    let binary = if args.hex {
        Binary::Hex
    } else if args.raw_bytes {
        Binary::Bytes
    } else {
        Binary::Base64
    };
    let stdin = Stdin::detect();
    let out = Arc::new(Out::new(format, binary, stdin != Stdin::Terminal));
    let mut builder = ClientBuilder::new(args.url.clone())
        .open_timeout(args.open_timeout.0)
        .config(socket_config(
            tether::WebSocketConfig::default(),
            &args.limits,
        ));
    // Which credential headers go out, for the message after a 401/403.
    let mut credentials = Vec::new();
    if args
        .url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .is_some_and(|a| a.contains('@'))
    {
        credentials.push("Authorization (from the URL)".to_string());
    }
    let mut sensitive = tether::tether_proto::redact::SensitiveHeaders::new();
    for name in &args.sensitive_header {
        sensitive.add(name);
        builder = builder.sensitive_header(name);
    }
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return usage(format!("--header needs 'Name: value', got {h:?}"));
        };
        let name = name.trim();
        if sensitive.contains(name) {
            credentials.retain(|c| {
                !c.starts_with("Authorization (from") || !name.eq_ignore_ascii_case("authorization")
            });
            credentials.push(name.to_string());
        }
        builder = match builder.header(name, value.trim()) {
            Ok(b) => b,
            Err(e) => return usage(chain(&e)),
        };
    }
    for p in &args.subprotocol {
        builder = builder.subprotocol(p.clone());
    }
    if args.no_compression {
        builder = builder.compression(None);
    }
    if let Some(o) = &args.origin {
        builder = builder.origin(o.clone());
    }
    if let Some(p) = &args.proxy {
        builder = builder.proxy(p.clone());
    } else if args.no_proxy {
        builder = builder.no_proxy();
    }
    if let Some(ca) = &args.ca {
        builder = match builder.add_root_certificate_pem_file(ca) {
            Ok(b) => b,
            Err(e) => return usage(chain(&e)),
        };
    }
    // A CR or LF in --origin or --subprotocol would inject header lines:
    // refused here, before anything is sent. (An invalid URL is reported as
    // a connection's fatal error, as before.)
    if let Err(e) = builder.validate() {
        if e.kind() == ErrorKind::Config {
            return usage(chain(&e));
        }
    }
    if args.insecure {
        // On standard error even with --events json: never silent.
        eprintln!("* WARNING: --insecure: the server's certificate is NOT verified (tests only)");
        builder = builder.danger_accept_invalid_certs(true);
    }
    let policy = match args.reconnect.then(|| policy(&args, out.clone())) {
        Some(Err(e)) => return usage(e),
        Some(Ok(p)) => Some(p),
        None => None,
    };
    // After every check that can refuse the options: the reader of
    // standard input starts here.
    let plan = match Plan::new(&args, stdin, &out) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    if stdin == Stdin::Terminal && plan.input.is_some() && !out.is_json() {
        let eof = if plan.close_on_eof {
            "Ctrl-D closes"
        } else {
            "Ctrl-D stops sending"
        };
        out.note(&format!(
            "type messages and press Enter; {eof}, Ctrl-C quits"
        ));
    }
    match policy {
        Some(policy) => {
            let opts = session::ResumeOpts {
                resume: args.resume,
                fallback_urls: args.fallback_url.clone(),
            };
            session::run(builder, policy, plan, out, &credentials, opts).await
        }
        None => once::run(builder, plan, out, &credentials).await,
    }
}

fn policy(args: &ConnectArgs, out: Arc<Out>) -> Result<ReconnectPolicy, String> {
    let secs = |v: Option<f64>, default: Duration, name: &str| -> Result<Duration, String> {
        match v {
            None => Ok(default),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
            Some(s) => Err(format!("--{name} {s}: not a duration in seconds")),
        }
    };
    let d = Backoff::default();
    let backoff = Backoff {
        initial_max: secs(args.backoff_initial, d.initial_max, "backoff-initial")?,
        min: secs(args.backoff_min, d.min, "backoff-min")?,
        max: secs(args.backoff_max, d.max, "backoff-max")?,
        factor: match args.backoff_factor {
            Some(f) if f >= 1.0 && f.is_finite() => f,
            Some(f) => return Err(format!("--backoff-factor {f}: must be at least 1")),
            None => d.factor,
        },
        ..d
    };
    let retry = args.retry_status.clone();
    let fatal = args.fatal_status.clone();
    Ok(ReconnectPolicy::default()
        .backoff(backoff)
        .max_attempts(args.max_attempts)
        .classify(move |failure, attempt| match failure {
            Failure::Attempt(e) if e.status().is_some_and(|s| fatal.contains(&s)) => Decision::Stop,
            Failure::Attempt(e) if e.status().is_some_and(|s| retry.contains(&s)) => e
                .retry_after()
                .map_or(Decision::Retry, Decision::RetryAfter),
            _ => classify::default(failure, attempt),
        })
        .on_event(move |ev| match ev {
            Event::Connecting { attempt, url } => out.connecting(*attempt, url),
            Event::Connected { attempt } => out.connected(*attempt),
            Event::Retry {
                attempt,
                delay,
                source,
                reason,
                status,
            } => out.retry(*attempt, *delay, reason, *status, &source.to_string()),
            Event::Closed {
                code,
                reason,
                initiator,
                ..
            } => out.closed(code.map(|c| c.0), reason, *initiator),
            // The final error is reported by the caller, with more context.
            _ => {}
        }))
}
