//! What `tether connect` sends (and `tether serve --stdin` broadcasts):
//! standard input (lines or the whole of it, as text, bytes, base64 or hex)
//! or a file, and what kind of thing standard input is, which decides what
//! its end means.

use base64::Engine;
use tether::Message;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// The most bytes one line (or, with `--whole`, the whole input) may hold:
/// an input without line breaks (a device, a mistaken file) must not grow
/// the memory without bound.
pub(crate) const MAX_INPUT: usize = 64 << 20;

/// What standard input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stdin {
    /// A terminal: someone types.
    Terminal,
    /// A pipe, a socket, or a regular file that is not empty: data to send.
    /// Its end means "nothing more to send".
    Data,
    /// Anything else: a character device that is not a terminal
    /// (`/dev/null`, as under systemd, `docker run` without `-i`, or
    /// `nohup`), an empty regular file, a closed descriptor. Not read: there
    /// is nothing to send, and its end says nothing about the connection.
    Nothing,
}

impl Stdin {
    /// Looks at file descriptor 0 (`fstat`) without reading it.
    #[cfg(unix)]
    pub(crate) fn detect() -> Stdin {
        use std::io::IsTerminal;
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileTypeExt;
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            return Stdin::Terminal;
        }
        // A duplicate of the descriptor, to ask for its metadata safely.
        let meta = stdin
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata());
        match meta {
            Ok(m) if m.file_type().is_fifo() || m.file_type().is_socket() => Stdin::Data,
            Ok(m) if m.is_file() && m.len() > 0 => Stdin::Data,
            _ => Stdin::Nothing,
        }
    }

    /// Without `fstat`: a terminal, or data.
    #[cfg(not(unix))]
    pub(crate) fn detect() -> Stdin {
        use std::io::IsTerminal;
        if std::io::stdin().is_terminal() {
            Stdin::Terminal
        } else {
            Stdin::Data
        }
    }
}

/// How input bytes become a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// A text message; the bytes must be UTF-8.
    Text,
    /// A binary message of the bytes as they are.
    Binary,
    /// A binary message of the base64 the input holds.
    Base64,
    /// A binary message of the hex the input holds.
    Hex,
}

impl Encoding {
    /// The message `bytes` make; `Err` says what is wrong with them.
    pub(crate) fn decode(self, bytes: Vec<u8>) -> Result<Message, String> {
        match self {
            Encoding::Text => match String::from_utf8(bytes) {
                Ok(s) => Ok(Message::text(s)),
                Err(e) => Err(format!(
                    "not valid UTF-8 (at byte {}); send bytes with --binary",
                    e.utf8_error().valid_up_to() + 1
                )),
            },
            Encoding::Binary => Ok(Message::binary(bytes)),
            Encoding::Base64 => {
                let clean: Vec<u8> = bytes
                    .into_iter()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(&clean)
                    .map(Message::binary)
                    .map_err(|e| format!("not base64: {e}"))
            }
            Encoding::Hex => decode_hex(&bytes).map(Message::binary),
        }
    }
}

/// Hex digits, two a byte, any case; ASCII white space between them is
/// ignored (`xxd -p` output, `de ad be ef`).
fn decode_hex(input: &[u8]) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if digits.len() % 2 != 0 {
        return Err(format!(
            "not hex: an odd number of digits ({})",
            digits.len()
        ));
    }
    let value = |d: u8| match d {
        b'0'..=b'9' => Ok(d - b'0'),
        b'a'..=b'f' => Ok(d - b'a' + 10),
        b'A'..=b'F' => Ok(d - b'A' + 10),
        _ => Err(format!("not hex: {:?}", char::from(d))),
    };
    digits
        .chunks(2)
        .map(|p| Ok(value(p[0])? << 4 | value(p[1])?))
        .collect()
}

/// What the reader hands over: a message to send, or why the input is
/// invalid (the reading stops there). The channel closes at the end.
pub(crate) type Item = Result<Message, String>;

/// Reads standard input on a task of its own, so that a blocked read never
/// holds up the connection: each line (without its `\n` or `\r\n`), or the
/// whole input with `whole`, becomes one message.
pub(crate) fn spawn_stdin(encoding: Encoding, whole: bool) -> mpsc::Receiver<Item> {
    // A few messages ahead: the reader waits when the connection is slower.
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let stdin = tokio::io::stdin();
        if whole {
            read_whole(stdin, encoding, tx).await
        } else {
            read_lines(stdin, encoding, tx).await
        }
    });
    rx
}

async fn read_lines<R: AsyncRead + Unpin>(r: R, encoding: Encoding, tx: mpsc::Sender<Item>) {
    let mut r = BufReader::new(r);
    let mut number = 0u64;
    loop {
        let line = match read_line(&mut r).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(why) => {
                let _ = tx.send(Err(format!("standard input: {why}"))).await;
                return;
            }
        };
        number += 1;
        let item = encoding
            .decode(line)
            .map_err(|why| format!("standard input, line {number}: {why}"));
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// One line without its terminator; `None` at the end of input. A line
/// longer than [`MAX_INPUT`] is an error.
async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Result<Option<Vec<u8>>, String> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await.map_err(|e| e.to_string())?;
        if buf.is_empty() {
            // The end: a last line without a line break still counts.
            return Ok((!line.is_empty()).then_some(line));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > MAX_INPUT {
            return Err(format!("a line is longer than {} MiB", MAX_INPUT >> 20));
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

async fn read_whole<R: AsyncRead + Unpin>(r: R, encoding: Encoding, tx: mpsc::Sender<Item>) {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    // One byte more than allowed, to tell "exactly the limit" from "over".
    let item = match r.take(MAX_INPUT as u64 + 1).read_to_end(&mut all).await {
        Err(e) => Err(format!("standard input: {e}")),
        Ok(_) if all.len() > MAX_INPUT => Err(format!(
            "standard input is longer than {} MiB (send a file with --file)",
            MAX_INPUT >> 20
        )),
        Ok(_) => encoding
            .decode(all)
            .map_err(|why| format!("standard input: {why}")),
    };
    let _ = tx.send(item).await;
}

/// Reads `path` for `--file`: one message, text when `text` (it must be
/// UTF-8), binary otherwise.
pub(crate) fn read_file(path: &std::path::Path, text: bool) -> Result<Message, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let encoding = if text {
        Encoding::Text
    } else {
        Encoding::Binary
    };
    encoding.decode(bytes).map_err(|why| {
        format!(
            "{}: {}",
            path.display(),
            why.replace(
                "send bytes with --binary",
                "drop --text to send it as binary"
            )
        )
    })
}

/// The next input item; `None` at the end (or when there is no input).
///
/// # Cancel safety
/// Cancel-safe (`mpsc::Receiver::recv`).
pub(crate) async fn next(input: &mut Option<mpsc::Receiver<Item>>) -> Option<Item> {
    match input {
        Some(rx) => rx.recv().await,
        None => None,
    }
}

/// A receiver that yields `msg`, then ends: `--file`'s input.
pub(crate) fn one_message(msg: Message) -> mpsc::Receiver<Item> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Ok(msg));
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], encoding: Encoding) -> Vec<Item> {
        let (tx, mut rx) = mpsc::channel(64);
        read_lines(input, encoding, tx).await;
        let mut out = Vec::new();
        while let Some(i) = rx.recv().await {
            out.push(i);
        }
        out
    }

    #[tokio::test]
    async fn lines_lose_their_terminator_and_a_last_line_counts() {
        let got = lines(b"a\r\nb\n\nc", Encoding::Text).await;
        let want: Vec<Item> = ["a", "b", "", "c"]
            .into_iter()
            .map(|s| Ok(Message::text(s)))
            .collect();
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn invalid_utf8_names_the_line_and_stops() {
        let got = lines(b"ok\n\xff\xfe bad\nafter\n", Encoding::Text).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], Ok(Message::text("ok")));
        let err = got[1].clone().unwrap_err();
        assert!(
            err.starts_with("standard input, line 2: not valid UTF-8 (at byte 1)"),
            "{err}"
        );
        // As bytes, the same input is fine.
        let got = lines(b"ok\n\xff\xfe bad\n", Encoding::Binary).await;
        assert_eq!(got[1], Ok(Message::binary(&b"\xff\xfe bad"[..])));
    }

    #[test]
    fn base64_and_hex_decode_and_name_what_is_wrong() {
        assert_eq!(
            Encoding::Base64.decode(b"aGk=\n".to_vec()),
            Ok(Message::binary(&b"hi"[..]))
        );
        assert_eq!(
            Encoding::Hex.decode(b"DE ad\tbe ef".to_vec()),
            Ok(Message::binary(&[0xde, 0xad, 0xbe, 0xef][..]))
        );
        assert!(Encoding::Hex
            .decode(b"abc".to_vec())
            .unwrap_err()
            .contains("odd"));
        assert!(Encoding::Hex
            .decode(b"zz".to_vec())
            .unwrap_err()
            .contains("'z'"));
        assert!(Encoding::Base64
            .decode(b"!!".to_vec())
            .unwrap_err()
            .starts_with("not base64"));
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_an_error_not_an_allocation() {
        let big = vec![b'x'; MAX_INPUT + 10];
        let got = lines(&big, Encoding::Binary).await;
        assert_eq!(got.len(), 1);
        assert!(got[0].clone().unwrap_err().contains("longer than"));
    }
}
