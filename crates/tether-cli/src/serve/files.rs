//! `--static DIR`: files under one directory for plain GETs, and nothing
//! outside it.
//!
//! - A path is percent-decoded, then split on `/`; a segment that starts
//!   with `.` (`..`, `.git`, `.env`), or holds `\`, `:` or NUL, is a 404:
//!   no way up, no hidden files.
//! - The file found is resolved through its symbolic links and must still
//!   be under DIR (itself resolved once, at start): a link inside DIR that
//!   points outside it is a 404, one that stays inside is followed.
//! - A directory is served as its `index.html`; without the trailing `/`
//!   it is redirected to it (so that the page's relative links work).
//! - A file over [`MAX_FILE`] is refused (403), and all responses being
//!   sent at once hold at most [`MAX_IN_FLIGHT`] bytes of files: memory
//!   stays bounded whatever the clients ask (a response lives at most the
//!   open timeout).
//!
//! (A link swapped between the check and the read by someone who can
//! write in DIR is out of scope: that person can already change what is
//! served.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tether::{Bytes, Response};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest file served: 8 MiB. A debugging server serves pages and
/// their scripts, not downloads.
pub(crate) const MAX_FILE: usize = 8 << 20;

/// The most bytes of files held by responses at once: 64 MiB.
pub(crate) const MAX_IN_FLIGHT: usize = 64 << 20;

/// The files of one directory.
pub(crate) struct Files {
    /// The directory, resolved (no symbolic links, absolute).
    root: PathBuf,
    /// One permit per byte of file held by a response.
    budget: Arc<Semaphore>,
}

impl Files {
    /// Serves `dir`; `Err` when it is not a readable directory.
    pub(crate) fn new(dir: &Path) -> Result<Files, String> {
        let root =
            std::fs::canonicalize(dir).map_err(|e| format!("--static {}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!("--static {}: not a directory", dir.display()));
        }
        Ok(Files {
            root,
            budget: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    /// The directory served.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The answer to a GET (or HEAD) of `path` (the request target without
    /// its query).
    pub(crate) async fn answer(&self, path: &str) -> Response {
        let Some(segments) = segments(path) else {
            return not_found();
        };
        let wants_dir = segments.is_empty() || path.ends_with('/');
        let mut candidate = self.root.clone();
        candidate.extend(&segments);
        let Some((found, meta)) = self.resolve(&candidate).await else {
            return not_found();
        };
        let (file, len) = if meta.is_dir() {
            if !wants_dir {
                // Built from the checked segments, never from the raw
                // target: `//evil.example` cannot become the Location.
                let location = format!("/{}/", encode(&segments.join("/")));
                return Response::with_body(301, "moved\n").header("location", &location);
            }
            match self.resolve(&found.join("index.html")).await {
                Some((f, m)) if m.is_file() => (f, m.len()),
                _ => return not_found(),
            }
        } else if meta.is_file() && !wants_dir {
            (found, meta.len())
        } else {
            return not_found();
        };
        if len > MAX_FILE as u64 {
            return Response::with_body(
                403,
                format!("file larger than {} MiB: not served\n", MAX_FILE >> 20),
            );
        }
        match self.read(&file, len as usize).await {
            Some(body) => {
                let mut r = Response::new(200);
                r.body = body;
                r.header("content-type", content_type(&file))
                    .header("x-content-type-options", "nosniff")
                    // A debugging server: the files change while it runs.
                    .header("cache-control", "no-cache")
            }
            None => not_found(),
        }
    }

    /// `path` with its symbolic links resolved, and its metadata, if it
    /// exists and is under the root.
    async fn resolve(&self, path: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
        let real = tokio::fs::canonicalize(path).await.ok()?;
        if !real.starts_with(&self.root) {
            tracing::info!(path = %path.display(), "--static: refusing a path that leads outside the directory");
            return None;
        }
        let meta = tokio::fs::metadata(&real).await.ok()?;
        Some((real, meta))
    }

    /// At most `len` bytes of `file` (its size when it was looked at: a file
    /// that grew since is served as it was), held against the budget until
    /// the response is dropped.
    async fn read(&self, file: &Path, len: usize) -> Option<Bytes> {
        // `len` is at most MAX_FILE, which fits in u32.
        let permits = u32::try_from(len).ok()?;
        let permit = self.budget.clone().acquire_many_owned(permits).await.ok()?;
        let f = tokio::fs::File::open(file).await.ok()?;
        let mut data = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut data).await.ok()?;
        Some(Bytes::from_owner(Held {
            data,
            _permit: permit,
        }))
    }
}

/// A file's bytes and their share of the budget, released together.
struct Held {
    data: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

fn not_found() -> Response {
    Response::with_body(404, "not found\n")
}

/// The path's segments, percent-decoded; `None` for a path that may not be
/// served (see the module's docs). Empty segments (`//`) are skipped.
fn segments(path: &str) -> Option<Vec<String>> {
    if !path.starts_with('/') {
        return None;
    }
    let decoded = String::from_utf8(percent_decode(path)?).ok()?;
    let mut out = Vec::new();
    for seg in decoded.split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg.starts_with('.') || seg.contains(['\\', ':', '\0']) {
            return None;
        }
        out.push(seg.to_string());
    }
    Some(out)
}

/// `%XX` sequences decoded; `None` for a `%` not followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `s` with every byte but unreserved characters (RFC 3986 §2.3) and `/`
/// percent-encoded, for a Location header.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The media type for a file name's extension; other files are bytes.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_or_hide_are_refused() {
        assert_eq!(segments("/a/b.txt"), Some(vec!["a".into(), "b.txt".into()]));
        assert_eq!(segments("//a///b"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(segments("/"), Some(vec![]));
        assert_eq!(segments("/with%20space"), Some(vec!["with space".into()]));
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/a/..%2f..%2fx",
            "/.git/config",
            "/.env",
            "/a%5c..%5cx",
            "/c:/x",
            "/%00",
            "/%zz",
            "/%2",
            "relative",
            "*",
        ] {
            assert_eq!(segments(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        for (name, want) in [
            ("index.HTML", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("s.css", "text/css; charset=utf-8"),
            ("d.json", "application/json"),
            ("i.png", "image/png"),
            ("i.svg", "image/svg+xml"),
            ("n.txt", "text/plain; charset=utf-8"),
            ("x.bin", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), want, "{name}");
        }
    }

    #[test]
    fn locations_are_encoded() {
        assert_eq!(encode("a b/ü"), "a%20b/%C3%BC");
    }
}
