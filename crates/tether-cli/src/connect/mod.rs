//! `tether connect`: the interactive (or scripted) client.

use crate::output::{chain, Out};
use crate::{
    parse_duration, socket_config, Limits, Secs, EXIT_ERROR, EXIT_EXHAUSTED, EXIT_HTTP,
    EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tether::reconnect::{
    classify, Backoff, Decision, Event, Failure, ReconnectPolicy, SessionState,
};
use tether::{ClientBuilder, CloseCode, Error, ErrorKind, Message};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The output format.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum EventsFormat {
    /// Lines for people (the default).
    Human,
    /// One JSON object per line on standard output.
    Json,
}

/// Options of `tether connect`.
#[derive(Args)]
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
    #[arg(long, value_enum, default_value = "human")]
    events: EventsFormat,
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
    let json = matches!(args.events, EventsFormat::Json);
    let stdin_tty = std::io::stdin().is_terminal();
    let out = Arc::new(Out::new(json, !stdin_tty));
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
    if args.reconnect {
        let policy = match policy(&args, out.clone()) {
            Ok(p) => p,
            Err(e) => return usage(e),
        };
        run_session(builder, policy, &args, out, &credentials).await
    } else {
        run_once(builder, &args, out, &credentials).await
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
            Event::Closed { code, reason, .. } => out.closed(code.map(|c| c.0), reason),
            // The final error is reported by the caller, with more context.
            _ => {}
        }))
}

async fn run_once(
    builder: ClientBuilder,
    args: &ConnectArgs,
    out: Arc<Out>,
    credentials: &[String],
) -> ExitCode {
    let url = builder.url_redacted();
    out.connecting(1, &url);
    let mut ws = match builder.connect().await {
        Ok(ws) => ws,
        Err(e) => {
            out.fatal(&describe(&e, credentials), e.status(), false);
            return ExitCode::from(exit_for(&e));
        }
    };
    out.connected(1);
    if !args.echo && !out.is_json() && std::io::stdin().is_terminal() {
        out.note("type messages and press Enter; Ctrl-D closes, Ctrl-C quits");
    }
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = !args.echo;
    let mut close_code = None;
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if let Err(e) = ws.send(Message::text(line.as_str())).await {
                        out.fatal(&chain(&e), None, false);
                        return ExitCode::from(EXIT_ERROR);
                    }
                    out.sent(&line);
                }
                _ => {
                    // End of input: close normally, keep printing what
                    // arrives until the server answers the close.
                    stdin_open = false;
                    let _ = ws.send(Message::Close(Some(tether::CloseFrame::new(CloseCode::NORMAL, "")))).await;
                }
            },
            msg = ws.recv() => match msg {
                Some(Ok(Message::Close(frame))) => {
                    close_code = Some(frame.as_ref().map_or(1005, |f| f.code.0));
                    out.closed(close_code, frame.as_ref().map_or("", |f| f.reason.as_str()));
                }
                Some(Ok(m)) if m.is_data() => {
                    out.message(&m);
                    if args.echo && ws.send(m).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    out.fatal(&chain(&e), None, false);
                    return ExitCode::from(EXIT_ERROR);
                }
                None => break,
            },
            _ = tokio::signal::ctrl_c() => return ExitCode::from(EXIT_INTERRUPTED),
        }
    }
    match close_code {
        Some(1000 | 1001 | 1005) | None => ExitCode::from(EXIT_OK),
        Some(_) => ExitCode::from(EXIT_ERROR),
    }
}

async fn run_session(
    builder: ClientBuilder,
    policy: ReconnectPolicy,
    args: &ConnectArgs,
    out: Arc<Out>,
    credentials: &[String],
) -> ExitCode {
    let mut session = builder.session(policy).start();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let stdin_open = !args.echo;
    loop {
        tokio::select! {
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if session.send(Message::text(line.as_str())).await.is_ok() {
                        out.sent(&line);
                    }
                }
                _ => {
                    // End of input: let the queued lines go out once
                    // connected, then close normally. If the session stops
                    // first, report why.
                    let mut watch = session.watch();
                    let _ = watch
                        .wait_for(|s| matches!(s, SessionState::Open { .. } | SessionState::Stopped { .. }))
                        .await;
                    if let SessionState::Stopped { error: Some(e) } = session.state() {
                        out.fatal(&describe(&e, credentials), e.status(), e.kind() == ErrorKind::Exhausted);
                        return ExitCode::from(exit_for(&e));
                    }
                    let left = session.close(CloseCode::NORMAL, "").await;
                    if !left.is_empty() {
                        out.note(&format!("{} message(s) were never delivered", left.len()));
                    }
                    return ExitCode::from(EXIT_OK);
                }
            },
            msg = session.recv() => match msg {
                Some(m) => {
                    out.message(&m);
                    if args.echo {
                        let _ = session.send(m).await;
                    }
                }
                None => {
                    return match session.state() {
                        SessionState::Stopped { error: Some(e) } => {
                            out.fatal(&describe(&e, credentials), e.status(), e.kind() == ErrorKind::Exhausted);
                            ExitCode::from(exit_for(&e))
                        }
                        _ => ExitCode::from(EXIT_OK),
                    };
                }
            },
            _ = tokio::signal::ctrl_c() => return ExitCode::from(EXIT_INTERRUPTED),
        }
    }
}
