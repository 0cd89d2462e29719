//! What the command prints.
//!
//! Standard output carries the messages received (and, with `--events
//! json`, every event), in one of four [`Format`]s; notes for people
//! (connecting, closed, retrying) go to standard error, prefixed with `* `,
//! so that `tether connect --raw URL | jq` reads data only.

use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tether::{Initiator, Message};

/// An error and its causes, `": "`-separated. A library error's `Display`
/// shows one level (its cause is its `source()`), and a person needs all of
/// them. A cause whose text the line already ends with is not repeated.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.ends_with(&text) {
            line = format!("{line}: {text}");
        }
        cause = c.source();
    }
    line
}

/// A close code and reason in words, each said once:
/// `1001 (going away): server shutting down`.
pub(crate) fn close_text(code: Option<u16>, reason: &str) -> String {
    match (code, reason.is_empty()) {
        (Some(c), true) => tether::CloseCode(c).to_string(),
        (Some(c), false) => format!("{}: {reason}", tether::CloseCode(c)),
        (None, _) => reason.to_string(),
    }
}

/// How messages and events are written on standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `< received`, `> sent` (the default).
    Human,
    /// One JSON object per event (`--events json`), messages included.
    Events,
    /// The data of each message received, one per line (`--raw`).
    Raw,
    /// Each message received as one JSON value (`--jsonl`); indented with
    /// `pretty`.
    Jsonl { pretty: bool },
}

/// How binary data is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binary {
    Base64,
    Hex,
    /// The bytes unchanged, with no separator (`--raw --raw-bytes`).
    Bytes,
}

impl Binary {
    pub(crate) fn encode(self, b: &[u8]) -> String {
        match self {
            Binary::Hex => hex(b),
            _ => base64::engine::general_purpose::STANDARD.encode(b),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Binary::Hex => "hex",
            _ => "base64",
        }
    }
}

/// `t` with its control characters but tab escaped (`\n`, `\r`,
/// `\u{1b}`...), so that it prints as one line and cannot drive a terminal.
pub(crate) fn one_line(t: &str) -> std::borrow::Cow<'_, str> {
    if !t.chars().any(|c| c.is_control() && c != '\t') {
        return t.into();
    }
    let mut s = String::with_capacity(t.len() + 8);
    for c in t.chars() {
        if c.is_control() && c != '\t' {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    s.into()
}

/// Lower-case hex, two digits a byte.
pub(crate) fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// The client a message came from, as `tether serve` numbers and prints it.
pub(crate) struct Client {
    /// The connection's number (from 0, in the order they opened).
    pub(crate) id: u64,
    /// The client's address, `ip:port` (`?` when unknown).
    pub(crate) peer: String,
}

/// A sent message longer than this is summed up in the human format: the
/// terminal need not show a whole file back.
const SHOWN_SENT: usize = 1024;

/// Where events go and in which format.
pub(crate) struct Out {
    format: Format,
    binary: Binary,
    start: Instant,
    /// Outgoing lines are echoed with `> ` only when standard input is not a
    /// terminal (a terminal already shows what was typed).
    echo_outgoing: bool,
    /// The last note was the end of a connection: the retry that follows
    /// need not say why again.
    just_closed: AtomicBool,
}

impl Out {
    pub(crate) fn new(format: Format, binary: Binary, echo_outgoing: bool) -> Self {
        Out {
            format,
            binary,
            start: Instant::now(),
            echo_outgoing,
            just_closed: AtomicBool::new(false),
        }
    }

    /// `--events json`.
    pub(crate) fn is_json(&self) -> bool {
        self.format == Format::Events
    }

    /// Writes `v` as one line, with its time (`"t"`, seconds since start).
    pub(crate) fn emit(&self, mut v: Value) -> std::io::Result<()> {
        v["t"] = json!((self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        write_out(format!("{v}\n").as_bytes())
    }

    /// A status line for people: standard error, prefixed with `* `.
    pub(crate) fn note(&self, text: &str) {
        if !self.is_json() {
            eprintln!("* {text}");
        }
    }

    pub(crate) fn connecting(&self, attempt: u32, url: &str) {
        self.just_closed.store(false, Ordering::Relaxed);
        if self.is_json() {
            let _ = self.emit(json!({"event": "connecting", "attempt": attempt, "url": url}));
        } else {
            self.note(&format!("connecting to {url} (attempt {attempt})"));
        }
    }

    pub(crate) fn connected(&self, attempt: u32) {
        if self.is_json() {
            let _ = self.emit(json!({"event": "connected", "attempt": attempt}));
        } else {
            self.note(&format!("connected (attempt {attempt})"));
        }
    }

    pub(crate) fn retry(
        &self,
        attempt: u32,
        delay: Duration,
        reason: &str,
        status: Option<u16>,
        source: &str,
    ) {
        let after_close = self.just_closed.swap(false, Ordering::Relaxed);
        if self.is_json() {
            let mut v = json!({"event": "retry", "attempt": attempt, "delay_s": delay.as_secs_f64(), "reason": reason, "source": source});
            if let Some(s) = status {
                v["status"] = json!(s);
            }
            let _ = self.emit(v);
        } else {
            // After a close, its line already said why.
            let why = if after_close {
                String::new()
            } else {
                format!("{reason}; ")
            };
            self.note(&format!(
                "{why}waiting {:.1} s ({source}) before attempt {attempt}",
                delay.as_secs_f64()
            ));
        }
    }

    /// A gap the server reported (`--resume`): messages may be lost there.
    pub(crate) fn gap(&self, gap: &tether::resume::Gap) -> std::io::Result<()> {
        if self.is_json() {
            let before = gap.before.map(|b| b.to_string());
            return self
                .emit(json!({"event": "gap", "after": gap.after.to_string(), "before": before}));
        }
        // Standard error, where people look for trouble, and never mixed
        // into the data on standard output.
        eprintln!("* GAP: {gap} (the server's history no longer reaches back)");
        Ok(())
    }

    /// A message received.
    ///
    /// # Errors
    /// When standard output is gone (the reader of a pipe exited): the
    /// caller ends the connection.
    pub(crate) fn message(&self, msg: &Message) -> std::io::Result<()> {
        self.message_from(None, msg)
    }

    /// A message received from `client` (`tether serve --print`): the
    /// human format prefixes it with the client's address, `--events json`
    /// and `--jsonl` carry the address and connection number as fields,
    /// `--raw` writes the data alone.
    ///
    /// # Errors
    /// As [`Out::message`].
    pub(crate) fn message_from(
        &self,
        client: Option<&Client>,
        msg: &Message,
    ) -> std::io::Result<()> {
        let (text, bytes) = match msg {
            Message::Text(t) => (Some(t.as_str()), &[][..]),
            Message::Binary(b) => (None, &b[..]),
            _ => return Ok(()),
        };
        let prefix = client.map_or(String::new(), |c| format!("{} ", c.peer));
        let tag = |mut v: Value| {
            if let Some(c) = client {
                v["id"] = json!(c.id);
                v["peer"] = json!(c.peer);
            }
            v
        };
        match (self.format, text) {
            // Text is one line, its control characters escaped: a message
            // with a line break must not pass for a line of another client
            // (or of this program), and a peer's escape sequences must not
            // drive the terminal. (`--raw` writes the data as it is.)
            (Format::Human, Some(t)) => {
                write_out(format!("{prefix}< {}\n", one_line(t)).as_bytes())
            }
            (Format::Human, None) => write_out(
                format!(
                    "{prefix}< (binary, {} bytes, {}) {}\n",
                    bytes.len(),
                    self.binary.name(),
                    self.binary.encode(bytes)
                )
                .as_bytes(),
            ),
            (Format::Events, Some(t)) => {
                self.emit(tag(json!({"event": "message", "kind": "text", "data": t})))
            }
            (Format::Events, None) => self.emit(tag(json!({"event": "message", "kind": "binary", "encoding": self.binary.name(), "data": self.binary.encode(bytes)}))),
            (Format::Raw, Some(t)) => write_out(format!("{t}\n").as_bytes()),
            (Format::Raw, None) if self.binary == Binary::Bytes => write_out(bytes),
            (Format::Raw, None) => write_out(format!("{}\n", self.binary.encode(bytes)).as_bytes()),
            (Format::Jsonl { pretty }, _) => {
                // A text message that is JSON is written as that value, on
                // one line; any other message as a JSON string, so that
                // every line parses.
                let mut v = match text {
                    Some(t) => serde_json::from_str::<Value>(t).unwrap_or_else(|_| Value::from(t)),
                    None => Value::from(self.binary.encode(bytes)),
                };
                // From a client: the message under "data", beside who sent
                // it, rather than fields mixed into the client's own JSON.
                if client.is_some() {
                    v = tag(json!({ "data": v }));
                }
                let line = if pretty {
                    serde_json::to_string_pretty(&v)
                } else {
                    serde_json::to_string(&v)
                }
                .unwrap_or_default();
                write_out(format!("{line}\n").as_bytes())
            }
        }
    }

    /// A message sent.
    pub(crate) fn sent(&self, msg: &Message) {
        let (kind, text, bytes) = match msg {
            Message::Text(t) => ("text", Some(t.as_str()), &[][..]),
            Message::Binary(b) => ("binary", None, &b[..]),
            _ => return,
        };
        match self.format {
            Format::Events => {
                let mut v = json!({"event": "sent", "kind": kind});
                match text {
                    Some(t) => v["data"] = json!(t),
                    None => {
                        v["encoding"] = json!(self.binary.name());
                        v["data"] = json!(self.binary.encode(bytes));
                    }
                }
                let _ = self.emit(v);
            }
            Format::Human if self.echo_outgoing => {
                let line = match text {
                    Some(t) if t.len() <= SHOWN_SENT => format!("> {}\n", one_line(t)),
                    Some(t) => format!("> (text, {} bytes)\n", t.len()),
                    None if bytes.len() <= SHOWN_SENT => format!(
                        "> (binary, {} bytes, {}) {}\n",
                        bytes.len(),
                        self.binary.name(),
                        self.binary.encode(bytes)
                    ),
                    None => format!("> (binary, {} bytes)\n", bytes.len()),
                };
                let _ = write_out(line.as_bytes());
            }
            // Raw and JSON lines carry what was received, nothing else.
            _ => {}
        }
    }

    /// A connection ended: `code` and `reason` as received or sent,
    /// `initiator` the end that sent the close frame (`None`: it dropped
    /// without one).
    pub(crate) fn closed(&self, code: Option<u16>, reason: &str, initiator: Option<Initiator>) {
        self.just_closed.store(true, Ordering::Relaxed);
        let by = match initiator {
            Some(Initiator::Local) => Some("client"),
            Some(Initiator::Remote) => Some("server"),
            None => None,
        };
        if self.is_json() {
            let mut v = json!({"event": "closed", "reason": reason});
            if let Some(c) = code {
                v["code"] = json!(c);
            }
            if let Some(b) = by {
                v["by"] = json!(b);
            }
            let _ = self.emit(v);
        } else {
            let by = match by {
                Some("client") => " by this end",
                Some(_) => " by the server",
                None => "",
            };
            self.note(&format!(
                "connection closed{by}: {}",
                close_text(code, reason)
            ));
        }
    }

    pub(crate) fn fatal(&self, reason: &str, status: Option<u16>, exhausted: bool) {
        if self.is_json() {
            let mut v = json!({"event": "fatal", "reason": reason});
            if let Some(s) = status {
                v["status"] = json!(s);
            }
            if exhausted {
                v["exhausted"] = json!(true);
            }
            let _ = self.emit(v);
        } else {
            eprintln!("* stopped: {reason}");
        }
    }
}

/// Writes `bytes` to standard output and flushes, so that a reader at the
/// other end of a pipe (`jq`, `grep --line-buffered`) sees each message as it
/// arrives. An error means standard output is gone.
fn write_out(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_text_says_each_thing_once() {
        assert_eq!(
            close_text(Some(1001), "server shutting down"),
            "1001 (going away): server shutting down"
        );
        assert_eq!(close_text(Some(1000), ""), "1000 (normal closure)");
        assert_eq!(close_text(None, "dropped"), "dropped");
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }

    #[test]
    fn one_line_escapes_line_breaks_and_terminal_controls() {
        assert_eq!(one_line("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            one_line("a\n1.2.3.4:5 < fake\r\u{1b}[2J\u{9b}"),
            "a\\n1.2.3.4:5 < fake\\r\\u{1b}[2J\\u{9b}"
        );
    }
}
