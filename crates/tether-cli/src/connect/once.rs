//! One connection, without `--reconnect`: send the input, print what
//! arrives, and end with one `closed` event however the connection ends.

use super::{describe, exit_for, Plan};
use crate::output::{chain, Out};
use crate::signals::{Signals, Stop};
use crate::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use std::process::ExitCode;
use std::sync::Arc;
use tether::{ClientBuilder, CloseCode, CloseFrame, Initiator, Message, WebSocket};

/// `--one` without its message.
const NO_REPLY: &str = "the connection ended before a message arrived (--one)";

/// Why this end closes.
#[derive(Clone, Copy, Debug)]
enum Closing {
    /// The input ended (or `--one` got its message).
    Done,
    /// The input was invalid: exit 2 once closed.
    BadInput,
    /// SIGINT or SIGTERM.
    Signal(Stop),
    /// Standard output is gone (`| head -1` exited).
    OutputGone,
}

/// How the connection ended, as far as the exit status cares.
struct Ending {
    /// The close code of the closing handshake (ours, echoed, or the
    /// server's), `None` when there was none.
    code: Option<u16>,
    /// Whether a `closed` event was emitted.
    reported: bool,
}

pub(super) async fn run(
    builder: ClientBuilder,
    mut plan: Plan,
    out: Arc<Out>,
    credentials: &[String],
) -> ExitCode {
    let mut signals = Signals::new();
    let url = builder.url_redacted();
    out.connecting(1, &url);
    let mut ws = tokio::select! {
        r = builder.connect() => match r {
            Ok(ws) => ws,
            Err(e) => {
                out.fatal(&describe(&e, credentials), e.status(), false);
                return ExitCode::from(exit_for(&e));
            }
        },
        stop = signals.recv() => return ExitCode::from(stop.exit_status()),
    };
    out.connected(1);
    let mut closing: Option<Closing> = None;
    let mut replied = false;
    let mut ending = Ending {
        code: None,
        reported: false,
    };
    loop {
        tokio::select! {
            item = super::input::next(&mut plan.input), if plan.input.is_some() && closing.is_none() => match item {
                Some(Ok(msg)) => {
                    let shown = msg.clone();
                    if let Err(e) = ws.send(msg).await {
                        // The connection ended under us: recv reports how.
                        tracing::debug!(error = %e, "send failed");
                        plan.input = None;
                        continue;
                    }
                    out.sent(&shown);
                }
                Some(Err(why)) => {
                    eprintln!("tether: {why}");
                    plan.input = None;
                    closing = Some(Closing::BadInput);
                    start_close(&mut ws, CloseCode::NORMAL).await;
                }
                None => {
                    plan.input = None;
                    if plan.close_on_eof {
                        // Keep printing what arrives until the server
                        // answers the close.
                        closing = Some(Closing::Done);
                        start_close(&mut ws, CloseCode::NORMAL).await;
                    } else if !plan.one {
                        out.note("end of input: nothing more to send; the connection stays open");
                    }
                }
            },
            msg = ws.recv() => match msg {
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map_or(1005, |f| f.code.0);
                    let by = if closing.is_some() { Initiator::Local } else { Initiator::Remote };
                    out.closed(Some(code), frame.as_ref().map_or("", |f| f.reason.as_str()), Some(by));
                    ending = Ending { code: Some(code), reported: true };
                }
                Some(Ok(m)) if m.is_data() => {
                    if plan.one && replied {
                        continue; // one message was asked for
                    }
                    if out.message(&m).is_err() && closing.is_none() {
                        closing = Some(Closing::OutputGone);
                        start_close(&mut ws, CloseCode::NORMAL).await;
                        continue;
                    }
                    if plan.one {
                        replied = true;
                        if closing.is_none() {
                            closing = Some(Closing::Done);
                            start_close(&mut ws, CloseCode::NORMAL).await;
                        }
                    } else if plan.echo && closing.is_none() {
                        // An error means it ended under us: recv says how.
                        let _ = ws.send(m).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if !ending.reported {
                        report_error(&out, &e);
                        ending = Ending { code: Some(e.close_code().map_or(1006, |c| c.0)), reported: true };
                    }
                    // After a close this end asked for, a failed handshake
                    // is still the end that was wanted.
                    if closing.is_none() {
                        if plan.one {
                            out.fatal(NO_REPLY, None, false);
                        } else if out.is_json() {
                            // People just read why on the `closed` line.
                            out.fatal(&chain(&e), None, false);
                        }
                        return ExitCode::from(EXIT_ERROR);
                    }
                }
                None => break,
            },
            stop = signals.recv() => {
                if closing.is_some() {
                    // A second signal: stop waiting for the server.
                    out.note(&format!("{}: not waiting for the server's close", stop.name()));
                    return ExitCode::from(stop.exit_status());
                }
                closing = Some(Closing::Signal(stop));
                start_close(&mut ws, stop.close_code()).await;
            }
        }
    }
    if !ending.reported {
        // The transport ended without the closing handshake completing.
        match closing {
            Some(_) => out.closed(
                Some(CloseCode::NORMAL.0),
                "the server did not answer the close",
                Some(Initiator::Local),
            ),
            None => out.closed(
                Some(CloseCode::ABNORMAL.0),
                "dropped without a close frame",
                None,
            ),
        }
    }
    exit_status(closing, &ending, plan.one, replied, &out)
}

/// The `closed` event of a connection that an error ended: dropped (1006,
/// with the transport's cause), or failed by either end with a close code.
fn report_error(out: &Out, e: &tether::Error) {
    match e.close_code() {
        Some(c) if c != CloseCode::ABNORMAL => out.closed(Some(c.0), &chain(e), e.initiator()),
        _ => {
            let why = match std::error::Error::source(e) {
                Some(cause) => format!("dropped without a close frame: {cause}"),
                None => "dropped without a close frame".to_string(),
            };
            out.closed(Some(CloseCode::ABNORMAL.0), &why, None)
        }
    }
}

/// Sends the close frame; the closing handshake goes on in `recv`, bounded
/// by the close timeout.
async fn start_close(ws: &mut WebSocket, code: CloseCode) {
    let frame = CloseFrame::new(code, "");
    if let Err(e) = ws.send(Message::Close(Some(frame))).await {
        tracing::debug!(error = %e, "could not send the close frame");
    }
}

fn exit_status(
    closing: Option<Closing>,
    ending: &Ending,
    one: bool,
    replied: bool,
    out: &Out,
) -> ExitCode {
    match closing {
        Some(Closing::Signal(stop)) => return ExitCode::from(stop.exit_status()),
        Some(Closing::BadInput) => return ExitCode::from(EXIT_USAGE),
        Some(Closing::OutputGone) => return ExitCode::from(EXIT_OK),
        _ => {}
    }
    if one {
        if replied {
            return ExitCode::from(EXIT_OK);
        }
        out.fatal(NO_REPLY, None, false);
        return ExitCode::from(EXIT_ERROR);
    }
    match ending.code {
        Some(1000 | 1001 | 1005) | None => ExitCode::from(EXIT_OK),
        Some(_) => ExitCode::from(EXIT_ERROR),
    }
}
