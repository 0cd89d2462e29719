//! What the command prints: human lines, or one JSON object per line
//! (`--events json`), each with `"t"`, the seconds since start.

use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};
use tether::Message;

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

/// Where events go and in which format.
pub(crate) struct Out {
    json: bool,
    start: Instant,
    /// Outgoing lines are echoed with `> ` only when standard input is not a
    /// terminal (a terminal already shows what was typed).
    echo_outgoing: bool,
}

impl Out {
    pub(crate) fn new(json: bool, echo_outgoing: bool) -> Self {
        Out {
            json,
            start: Instant::now(),
            echo_outgoing,
        }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    fn emit(&self, mut v: Value) {
        v["t"] = json!((self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    }

    /// A status line for people: standard error, prefixed with `* `.
    pub(crate) fn note(&self, text: &str) {
        if !self.json {
            eprintln!("* {text}");
        }
    }

    pub(crate) fn connecting(&self, attempt: u32, url: &str) {
        if self.json {
            self.emit(json!({"event": "connecting", "attempt": attempt, "url": url}));
        } else {
            self.note(&format!("connecting to {url} (attempt {attempt})"));
        }
    }

    pub(crate) fn connected(&self, attempt: u32) {
        if self.json {
            self.emit(json!({"event": "connected", "attempt": attempt}));
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
        if self.json {
            let mut v = json!({"event": "retry", "attempt": attempt, "delay_s": delay.as_secs_f64(), "reason": reason, "source": source});
            if let Some(s) = status {
                v["status"] = json!(s);
            }
            self.emit(v);
        } else {
            self.note(&format!(
                "{reason}; waiting {:.1} s ({source}) before attempt {attempt}",
                delay.as_secs_f64()
            ));
        }
    }

    pub(crate) fn message(&self, msg: &Message) {
        match msg {
            Message::Text(t) => {
                if self.json {
                    self.emit(json!({"event": "message", "kind": "text", "data": t.as_str()}));
                } else {
                    println!("< {t}");
                }
            }
            Message::Binary(b) => {
                let data = base64::engine::general_purpose::STANDARD.encode(b);
                if self.json {
                    self.emit(json!({"event": "message", "kind": "binary", "data": data}));
                } else {
                    println!("< (binary, {} bytes, base64) {data}", b.len());
                }
            }
            _ => {}
        }
    }

    pub(crate) fn sent(&self, text: &str) {
        if self.json {
            self.emit(json!({"event": "sent", "kind": "text", "data": text}));
        } else if self.echo_outgoing {
            println!("> {text}");
        }
    }

    pub(crate) fn closed(&self, code: Option<u16>, reason: &str) {
        if self.json {
            let mut v = json!({"event": "closed", "reason": reason});
            if let Some(c) = code {
                v["code"] = json!(c);
            }
            self.emit(v);
        } else {
            match code {
                Some(c) => self.note(&format!(
                    "connection closed: {}{}",
                    tether::CloseCode(c),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                )),
                None => self.note(&format!("connection closed: {reason}")),
            }
        }
    }

    pub(crate) fn fatal(&self, reason: &str, status: Option<u16>, exhausted: bool) {
        if self.json {
            let mut v = json!({"event": "fatal", "reason": reason});
            if let Some(s) = status {
                v["status"] = json!(s);
            }
            if exhausted {
                v["exhausted"] = json!(true);
            }
            self.emit(v);
        } else {
            eprintln!("* stopped: {reason}");
        }
    }
}
