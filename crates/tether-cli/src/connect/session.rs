//! `--reconnect`: a [`tether::reconnect::Session`] that outlives its
//! connections. The end of input stops sending (unless `--close-on-eof`);
//! the session ends when the policy stops it, or on SIGINT or SIGTERM.
//! Every connection's end is reported by the policy's `Closed` event, a
//! close this end started included.

use super::{describe, exit_for, Plan};
use crate::output::Out;
use crate::signals::Signals;
use crate::{EXIT_OK, EXIT_USAGE};
use std::process::ExitCode;
use std::sync::Arc;
use tether::reconnect::{ReconnectPolicy, Session, SessionState};
use tether::resume::Received;
use tether::{ClientBuilder, CloseCode, ErrorKind};

/// How this end closes the session.
struct Close {
    code: CloseCode,
    /// The exit status once closed.
    status: u8,
    /// Wait for a connection first, so that the input queued while
    /// disconnected goes out (the end of piped input).
    deliver: bool,
}

/// `--resume` and `--fallback-url`.
pub(super) struct ResumeOpts {
    pub(super) resume: bool,
    pub(super) fallback_urls: Vec<String>,
}

pub(super) async fn run(
    builder: ClientBuilder,
    policy: ReconnectPolicy,
    mut plan: Plan,
    out: Arc<Out>,
    credentials: &[String],
    opts: ResumeOpts,
) -> ExitCode {
    let mut signals = Signals::new();
    let mut session = builder
        .session(policy)
        .resume(opts.resume)
        .fallback_urls(opts.fallback_urls)
        .start();
    let close = loop {
        tokio::select! {
            item = super::input::next(&mut plan.input), if plan.input.is_some() => match item {
                Some(Ok(msg)) => {
                    let shown = msg.clone();
                    // An error means the session stopped: recv says why.
                    if session.send(msg).await.is_ok() {
                        out.sent(&shown);
                    }
                }
                Some(Err(why)) => {
                    eprintln!("tether: {why}");
                    // The lines before the bad one go out, as without --reconnect.
                    break Close { code: CloseCode::NORMAL, status: EXIT_USAGE, deliver: true };
                }
                None => {
                    plan.input = None;
                    if plan.close_on_eof {
                        break Close { code: CloseCode::NORMAL, status: EXIT_OK, deliver: true };
                    }
                    out.note("end of input: nothing more to send; staying connected");
                }
            },
            msg = session.recv_or_gap() => match msg {
                Some(Received::Gap(gap)) => {
                    if out.gap(&gap).is_err() {
                        break Close { code: CloseCode::NORMAL, status: EXIT_OK, deliver: false };
                    }
                }
                Some(Received::Message(m)) => {
                    if out.message(&m).is_err() {
                        // Standard output is gone: nobody reads any more.
                        break Close { code: CloseCode::NORMAL, status: EXIT_OK, deliver: false };
                    }
                    if plan.echo {
                        let _ = session.send(m).await;
                    }
                }
                None => return stopped(&session, &out, credentials),
            },
            stop = signals.recv() => break Close { code: stop.close_code(), status: stop.exit_status(), deliver: false },
        }
    };
    if close.deliver {
        let mut watch = session.watch();
        tokio::select! {
            _ = watch.wait_for(|s| matches!(s, SessionState::Open { .. } | SessionState::Stopped { .. })) => {}
            stop = signals.recv() => return ExitCode::from(stop.exit_status()),
        }
        if matches!(session.state(), SessionState::Stopped { .. }) {
            return stopped(&session, &out, credentials);
        }
    }
    tokio::select! {
        left = session.close(close.code, "") => {
            if !left.is_empty() {
                out.note(&format!("{} message(s) were never delivered", left.len()));
            }
        }
        stop = signals.recv() => {
            out.note(&format!("{}: not waiting for the server's close", stop.name()));
            return ExitCode::from(stop.exit_status());
        }
    }
    ExitCode::from(close.status)
}

/// The session stopped by itself: say why, exit with its status.
fn stopped(session: &Session, out: &Out, credentials: &[String]) -> ExitCode {
    match session.state() {
        SessionState::Stopped { error: Some(e) } => {
            let reason = match e.close_code() {
                // The `closed` line just above gave the code and reason.
                Some(code) if e.kind() == ErrorKind::Closed && !out.is_json() => {
                    format!("not reconnecting after {code}")
                }
                _ => describe(&e, credentials),
            };
            out.fatal(&reason, e.status(), e.kind() == ErrorKind::Exhausted);
            ExitCode::from(exit_for(&e))
        }
        _ => ExitCode::from(EXIT_OK),
    }
}
