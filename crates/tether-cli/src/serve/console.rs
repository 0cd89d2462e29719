//! What `tether serve` shows and what it is told: connections opening and
//! closing (with the client's address and the close code), the messages
//! clients send (`--print`), and lines typed on standard input sent to
//! every client (`--stdin`).
//!
//! Formats are those of `tether connect` ([`Out`]): lines for people, where
//! messages go to standard output as `ADDRESS < text` and notes to standard
//! error as `* ...`; `--events json`, one JSON object per line on standard
//! output, each with `id` (the connection's number) and `peer` (its
//! address); `--jsonl` (`{"id":..,"peer":..,"data":..}` per message);
//! `--raw` (the data alone).

use crate::input::Item;
use crate::output::{chain, close_text, Binary, Client, Format, Out};
use serde_json::json;
use std::net::SocketAddr;
use tether::hub::{BroadcastReport, Hub};
use tether::{Error, Message};
use tokio::sync::mpsc;

/// The server's output.
pub(crate) struct Console {
    out: Out,
    format: Format,
    /// How binary data is written (`--hex` or base64).
    binary: Binary,
    /// `--print`: show the messages clients send.
    print: bool,
}

impl Console {
    pub(crate) fn new(format: Format, binary: Binary, print: bool) -> Self {
        Console {
            out: Out::new(format, binary, false),
            format,
            binary,
            print,
        }
    }

    /// A note for people (standard error); nothing with `--events json`.
    pub(crate) fn note(&self, text: &str) {
        self.out.note(text);
    }

    /// The server listens at `url`. People and `--events json` read it on
    /// standard output (scripts take the port from there); with `--raw` and
    /// `--jsonl`, standard output carries messages only, so it is a note.
    pub(crate) fn listening(&self, url: &str) {
        match self.format {
            Format::Events => {
                let _ = self.out.emit(json!({"event": "listening", "url": url}));
            }
            Format::Human => println!("listening on {url}"),
            Format::Raw | Format::Jsonl { .. } => self.note(&format!("listening on {url}")),
        }
    }

    /// An upgrade refused by the origin check.
    pub(crate) fn refused(&self, why: &str) {
        if self.out.is_json() {
            let _ = self
                .out
                .emit(json!({"event": "refused", "status": 403, "reason": why}));
        } else {
            self.note(&format!("refused an upgrade with 403: {why}"));
        }
    }

    /// A connection opened, for `path` (without its query, which may hold
    /// a token).
    pub(crate) fn open(&self, c: &Client, path: Option<&str>) {
        if self.out.is_json() {
            let mut v = json!({"event": "open", "id": c.id, "peer": c.peer});
            if let Some(p) = path {
                v["path"] = json!(p);
            }
            let _ = self.out.emit(v);
        } else {
            self.note(&format!("connection {} from {}", c.id, c.peer));
        }
    }

    /// A message from a client: shown with `--print`.
    pub(crate) fn received(&self, c: &Client, msg: &Message) {
        if self.print && msg.is_data() {
            // Standard output gone (its reader exited): the server goes on.
            let _ = self.out.message_from(Some(c), msg);
        }
    }

    /// A connection ended as `end` says.
    pub(crate) fn closed(&self, c: &Client, end: &Ending) {
        if self.out.is_json() {
            let mut v =
                json!({"event": "closed", "id": c.id, "peer": c.peer, "reason": end.reason});
            if let Some(code) = end.code {
                v["code"] = json!(code);
            }
            if let Some(e) = &end.error {
                v["error"] = json!(e);
            }
            let _ = self.out.emit(v);
        } else {
            let how = match (end.code, &end.error) {
                (None, None) => String::new(),
                (Some(code), None) => format!(": {}", close_text(Some(code), &end.reason)),
                (_, Some(e)) => format!(": {e}"),
            };
            self.note(&format!("connection {} from {} closed{how}", c.id, c.peer));
        }
    }

    /// Connection `id` closed with 1013 for falling behind a broadcast.
    pub(crate) fn too_slow(&self, id: Option<u64>, max_queue: usize) {
        tracing::warn!(peer = id, max_queue, "peer too slow: closing it with 1013");
        let id = id.map_or("?".into(), |n| n.to_string());
        if self.out.is_json() {
            let _ = self
                .out
                .emit(json!({"event": "too_slow", "id": id, "max_queue_bytes": max_queue}));
        } else {
            self.note(&format!(
                "connection {id} too slow (over {max_queue} bytes queued): closing with 1013"
            ));
        }
    }

    /// A line of standard input went to `delivered` clients.
    fn typed(&self, msg: &Message, delivered: usize) {
        if self.out.is_json() {
            let mut v = json!({"event": "sent", "clients": delivered});
            match msg {
                Message::Text(t) => {
                    v["kind"] = json!("text");
                    v["data"] = json!(t.as_str());
                }
                _ => {
                    v["kind"] = json!("binary");
                    v["encoding"] = json!(self.binary.name());
                    v["data"] = json!(self.binary.encode(msg.as_payload()));
                }
            }
            let _ = self.out.emit(v);
        } else if delivered == 0 {
            self.note("no client is connected: the line went nowhere");
        }
    }

    /// Standard input ended (`error`: at an invalid line); the server goes
    /// on.
    fn stdin_ended(&self, error: Option<&str>) {
        if self.out.is_json() {
            let mut v = json!({"event": "stdin_closed"});
            if let Some(e) = error {
                v["error"] = json!(e);
            }
            let _ = self.out.emit(v);
        } else {
            match error {
                Some(e) => self.note(&format!("{e}; standard input is no longer read")),
                None => self.note("end of standard input; still serving (Ctrl-C stops)"),
            }
        }
    }
}

/// How a connection ended, from what its reader returned.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    /// The close code received (or sent, after a failure of the client).
    code: Option<u16>,
    reason: String,
    /// What went wrong, when the connection failed.
    error: Option<String>,
}

impl Ending {
    /// Notes what one `recv` returned.
    pub(crate) fn see(&mut self, item: &Result<Message, Error>) {
        match item {
            Ok(Message::Close(frame)) => {
                // RFC 6455 §7.1.5: a close frame without a code is 1005.
                self.code = Some(frame.as_ref().map_or(1005, |f| f.code.0));
                self.reason = frame
                    .as_ref()
                    .map_or(String::new(), |f| f.reason.to_string());
            }
            Ok(_) => {}
            Err(e) => {
                self.code = e.close_code().map(|c| c.0);
                self.error = Some(chain(e));
            }
        }
    }
}

/// The client's address as printed: `ip:port`, or `?`.
pub(crate) fn client(id: u64, peer: Option<SocketAddr>) -> Client {
    Client {
        id,
        peer: peer.map_or("?".into(), |p| p.to_string()),
    }
}

/// `--stdin`: sends each item of `input` to every member of `hub`, until
/// the input ends or is invalid; the server goes on either way.
/// `numbers` maps a member to its connection number, for the notes.
pub(crate) async fn stdin_to_all(
    hub: Hub,
    mut input: mpsc::Receiver<Item>,
    console: std::sync::Arc<Console>,
    number_of: impl Fn(tether::hub::MemberId) -> Option<u64>,
) {
    while let Some(item) = input.recv().await {
        match item {
            Ok(msg) => {
                let report = hub
                    .broadcast(msg.clone())
                    .unwrap_or_else(|_| BroadcastReport::default());
                for slow in &report.closed_slow {
                    console.too_slow(number_of(*slow), hub.max_queue_bytes());
                }
                console.typed(&msg, report.delivered);
            }
            Err(why) => {
                console.stdin_ended(Some(&why));
                return;
            }
        }
    }
    console.stdin_ended(None);
}
