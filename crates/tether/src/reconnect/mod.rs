//! Automatic reconnection: the Rust form of websockets'
//! `async for ws in connect(url)`, a persistent [`Session`], and the policy
//! that decides, for every failure, whether to retry and when.
//!
//! # The stream of connections
//!
//! [`ClientBuilder::reconnecting`](crate::ClientBuilder::reconnecting) turns a
//! client configuration into a [`Connections`] stream. Each `next()` opens a
//! connection, waiting first when the policy says so:
//!
//! ```no_run
//! # async fn run() -> tether::Result<()> {
//! use tether::{reconnect::ReconnectPolicy, ClientBuilder};
//! let mut connections = ClientBuilder::new("ws://127.0.0.1:9001/feed")
//!     .reconnecting(ReconnectPolicy::default());
//! while let Some(ws) = connections.next().await {
//!     let mut ws = ws?; // a fatal error (say HTTP 401) ends the loop here
//!     while let Some(Ok(msg)) = ws.recv().await {
//!         println!("{msg:?}");
//!     }
//!     // Dropped: the next turn reconnects, unless the way this
//!     // connection ended (close code 1008, say) is fatal.
//! }
//! # Ok(()) }
//! ```
//!
//! A retryable failure never reaches the loop: it is logged (`tracing`, with
//! the attempt number, the redacted URL, the cause, and the delay) and
//! retried. A fatal one is yielded once, then the stream ends.
//!
//! # The default classification
//!
//! | failure | default |
//! |---|---|
//! | connection refused, reset, aborted, unreachable; DNS failure; EOF or reset during the handshake | retry |
//! | open timeout (TCP and HTTP upgrade together) | retry |
//! | HTTP 500, 502, 503, 504 | retry; honour `Retry-After` (seconds or HTTP date) when it is longer than the backoff delay |
//! | HTTP 408, 429 | retry; the same `Retry-After` rule |
//! | HTTP 401, 403 | fatal at once, with the status and an excerpt of the body (with a credentials provider: one refresh and one immediate retry first) |
//! | other HTTP statuses (other 4xx, 1xx, 2xx, unfollowable 3xx) | fatal |
//! | 301, 302, 303, 307, 308 with a Location | followed inside the attempt (at most 10 hops, never `wss` to `ws`, credentials dropped across origins: every header that is redacted in logs, `X-Api-Key` and the names given to `sensitive_header` included); later reconnects keep the new URL only after 301 and 308 within the same origin (a cross-origin one is followed again each time, so credentials never go straight to the new origin) |
//! | invalid URL or unsupported scheme; a value that cannot be sent ([`ErrorKind::Config`]: a control character in the `Origin` or a header, a subprotocol that is not a token; see [`ClientBuilder::validate`](crate::ClientBuilder::validate)) | fatal, before any attempt |
//! | TLS certificate or host name failure | fatal |
//! | invalid handshake response (bad accept key, missing Upgrade, unoffered subprotocol or extension, malformed HTTP) | fatal |
//! | credentials provider error | retry |
//!
//! And for a connection that was open, by how it ended:
//!
//! | end | default |
//! |---|---|
//! | peer closed with 1000, 1001, 1005 (no code), 1006, 1011, 1012, 1013, 1014, other 3000-3999 | reconnect after the backoff delay; 1013 never resets the backoff |
//! | peer closed with 1002, 1003, 1007, 1008, 1009, 1010, 3000, 3003, 4000-4999 | stop, with an error naming the code and reason |
//! | dropped without a close frame (1006), keepalive timeout | reconnect |
//! | this end failed it because the peer broke the protocol (1002, 1007, 1009) | stop |
//! | closed or dropped by the user | reconnect (the user asked for the next one); a [`Session`] closed by the user never reconnects |
//!
//! The tables live in code in [`classify`]; [`crate::Error::is_retryable`]
//! applies the first one.
//!
//! # Retry-After
//!
//! A server's `Retry-After` (delta-seconds or an HTTP date, on any status
//! that is retried) can lengthen a wait, never shorten it: the delay is
//! `max(min(retry_after, max_retry_after), backoff delay)`, where the backoff
//! delay is drawn exactly as for a plain retry. So a `Retry-After: 2` is never
//! retried sooner than 2 s, an hour is cut to
//! [`ReconnectPolicy::max_retry_after`] (5 minutes), and a `Retry-After: 0`
//! or a date in the past (a clock skewed between server and client) cannot
//! drive a hot loop: the attempts follow the backoff schedule, which keeps
//! growing. The `Retry` event's [`DelaySource`] says which rule chose the
//! delay: `RetryAfter` when the server's delay won, `Backoff` otherwise.
//!
//! A [`Decision::RetryAfter`] from your own hook with a delay that is not
//! the server's is honoured as given (capped by `max_retry_after`), with the
//! source `Hook`: you asked for it, so a zero there is a hot loop of your own.
//! A hook that passes the server's value on (`Decision::RetryAfter(d)` with
//! `Some(d) == err.retry_after()`, as [`classify::default`] does) gets the
//! server's rule.
//!
//! # The hook
//!
//! [`ReconnectPolicy::classify`] replaces the tables with your own function.
//! It sees every failure (a failed attempt with its error, or the end of a
//! connection with its close code, initiator and uptime) and returns a
//! [`Decision`]. websockets' `process_exception(exc)` maps to it like this:
//!
//! | websockets `process_exception` | tether `Decision` |
//! |---|---|
//! | `return None` (retry) | `Decision::Retry` (backoff delay) |
//! | (no equivalent) | `Decision::RetryAfter(d)` |
//! | `return exc` (stop with this error) | `Decision::Stop` |
//! | `return OtherError(...)` or `raise OtherError(...)` | `Decision::StopWith(Box::new(other))` |
//!
//! websockets' documentation example, "stop on every 4xx", becomes:
//!
//! ```
//! use tether::reconnect::{classify, Decision, Failure, ReconnectPolicy};
//! use tether::ErrorKind;
//! let policy = ReconnectPolicy::default().classify(|failure, attempt| match failure {
//!     Failure::Attempt(e) if e.kind() == ErrorKind::HttpStatus
//!         && (400..500).contains(&e.status().unwrap_or(0)) => Decision::Stop,
//!     _ => classify::default(failure, attempt),
//! });
//! ```
//!
//! # Backoff
//!
//! [`Backoff`]: websockets' curve (first delay in [0, 5 s), then 3.1 s × 1.618
//! up to 90 s) with jitter on every delay, not only the first. The backoff
//! resets only after a connection stayed open for
//! [`ReconnectPolicy::reset_after`] (5 s), so a server that accepts and drops
//! at once cannot drive a hot loop. [`ReconnectPolicy::max_attempts`] and
//! [`ReconnectPolicy::max_elapsed`] cap the retries; when a cap is reached,
//! the stream yields an [`ErrorKind::Exhausted`]
//! error with the last failure and the number of attempts.

pub mod backoff;
pub mod classify;
mod connections;
mod policy;
mod session;

pub use backoff::Backoff;
pub use connections::Connections;
pub use policy::{DelaySource, Event, ReconnectPolicy};
pub use session::{Session, SessionBuilder, SessionSender, SessionState};

use crate::client::ClientBuilder;
use crate::error::{BoxError, Error, ErrorKind, Initiator};
use std::time::Duration;
use tether_proto::{CloseCode, CloseFrame};

/// Reconnecting clients (here, so that `client` does not depend on
/// `reconnect`: the dependency goes one way).
impl ClientBuilder {
    /// Turns this configuration into a [`Connections`] stream that
    /// reconnects as `policy` says: the Rust form of websockets'
    /// `async for ws in connect(url)`.
    pub fn reconnecting(self, policy: ReconnectPolicy) -> Connections {
        Connections::new(self, policy)
    }

    /// A persistent [`Session`] builder: one logical connection that
    /// reconnects by itself.
    pub fn session(self, policy: ReconnectPolicy) -> SessionBuilder {
        SessionBuilder::new(self, policy)
    }
}

/// What to do about a failure.
#[derive(Debug)]
pub enum Decision {
    /// Retry after the backoff delay.
    Retry,
    /// Retry after this delay. When it is the server's `Retry-After`
    /// ([`crate::Error::retry_after`]), the backoff delay is a floor;
    /// any other delay is honoured as given, so a zero here retries at once
    /// (see [Retry-After](self#retry-after)).
    RetryAfter(Duration),
    /// Stop, and report the failure's error.
    Stop,
    /// Stop, and report this error instead.
    StopWith(BoxError),
}

impl Decision {
    /// True for `Retry` and `RetryAfter`.
    pub fn is_retry(&self) -> bool {
        matches!(self, Decision::Retry | Decision::RetryAfter(_))
    }
}

impl PartialEq for Decision {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Decision::Retry, Decision::Retry) | (Decision::Stop, Decision::Stop) => true,
            (Decision::RetryAfter(a), Decision::RetryAfter(b)) => a == b,
            (Decision::StopWith(a), Decision::StopWith(b)) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

/// A failure for the policy to judge.
#[derive(Debug)]
pub enum Failure<'a> {
    /// A connection attempt failed.
    Attempt(&'a Error),
    /// An established connection ended.
    Ended(&'a Ended),
}

/// How an established connection ended.
#[derive(Debug)]
#[non_exhaustive]
pub struct Ended {
    /// The close frame that ended it: received from the peer, or sent by
    /// this end. `None` when it dropped without one (1006).
    pub close: Option<CloseFrame>,
    /// Who sent the close frame (or failed the connection).
    pub initiator: Option<Initiator>,
    /// The kind of the error that ended it, if one did.
    pub error_kind: Option<ErrorKind>,
    /// The error that ended it, if one did (its text).
    pub error: Option<String>,
    /// How long it was open.
    pub open_for: Duration,
    /// The user closed it (a close frame sent through the API), or dropped
    /// the socket while it was open.
    pub user_closed: bool,
}

impl Ended {
    /// The close code: the frame's, 1005 for a frame without one, 1006 when
    /// there was no frame at all.
    pub fn close_code(&self) -> Option<CloseCode> {
        match (&self.close, self.initiator) {
            (Some(f), _) => Some(f.code),
            (None, Some(_)) => Some(CloseCode::NO_STATUS),
            (None, None) => Some(CloseCode::ABNORMAL),
        }
    }

    /// The error reported when the policy stops because of this end.
    pub fn to_error(&self) -> Error {
        let by = match self.initiator {
            Some(Initiator::Remote) => "the server",
            _ => "this end",
        };
        let what = match &self.close {
            Some(f) => format!("{by} closed the connection with {f}"),
            None if self.user_closed => "the connection was dropped by the application".to_string(),
            None => "the connection dropped without a close frame (1006)".to_string(),
        };
        Error::msg(ErrorKind::Closed, format!("{what}; not reconnecting")).with_close(
            self.close.clone(),
            self.initiator.unwrap_or(Initiator::Remote),
        )
    }
}

/// Where the reconnect logic stands when it asks the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The number of the attempt that failed (1 for the first), counted over
    /// the whole life of the stream.
    pub number: u32,
    /// Consecutive failures since the backoff last reset (including this one).
    pub failures: u32,
    /// Time since this run of failures began.
    pub elapsed: Duration,
}

impl Error {
    /// Whether the default classification retries this error (one table:
    /// [`classify::for_error`]).
    pub fn is_retryable(&self) -> bool {
        classify::for_error(self).is_retry()
    }
}
