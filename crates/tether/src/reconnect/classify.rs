//! The default classification: which failures a retry can fix.
//!
//! Pure: no tokio. One `match` on [`ErrorKind`] for failed attempts, one on
//! the close code for connections that ended. The same table is in the
//! module documentation of [`crate::reconnect`]; each row has a test below.

use super::{Attempt, Decision, Ended, Failure};
use crate::error::{Error, ErrorKind, Initiator};

/// The default decision for a failure: the table in [`crate::reconnect`].
pub fn default(failure: &Failure<'_>, _attempt: &Attempt) -> Decision {
    match failure {
        Failure::Attempt(e) => for_error(e),
        Failure::Ended(ended) => for_ended(ended),
    }
}

/// The default decision for a failed connection attempt.
pub fn for_error(e: &Error) -> Decision {
    match e.kind() {
        // A retry can fix these: the network, the server starting up.
        ErrorKind::Dns | ErrorKind::Connect | ErrorKind::Timeout | ErrorKind::Io => Decision::Retry,
        ErrorKind::KeepaliveTimeout | ErrorKind::Closed => Decision::Retry,
        // A token service that failed may be back later.
        ErrorKind::Credentials => Decision::Retry,
        // A hub backend (Redis) that was down may be back later.
        ErrorKind::Backend => Decision::Retry,
        ErrorKind::HttpStatus => match e.status() {
            // Server trouble, and "too many requests" / "request timeout":
            // wait as long as the server asks, when it says.
            Some(500 | 502 | 503 | 504 | 408 | 429) => match e.retry_after() {
                Some(d) => Decision::RetryAfter(d),
                None => Decision::Retry,
            },
            // 401, 403 and every other status: the same request would get
            // the same answer.
            _ => Decision::Stop,
        },
        // Certificates, bad URLs, refused redirects, invalid handshakes,
        // protocol violations: retrying cannot help.
        ErrorKind::Tls
        | ErrorKind::InvalidUrl
        | ErrorKind::Redirect
        | ErrorKind::Handshake
        | ErrorKind::Protocol
        | ErrorKind::Config
        | ErrorKind::Exhausted
        | ErrorKind::Stopped => Decision::Stop,
    }
}

/// The default decision for an established connection that ended.
///
/// - closed by the peer with 1000, 1001, 1005 (no code), 1006, 1011, 1012,
///   1013, 1014, or 3000-3999 other than 3000 and 3003: reconnect, after the
///   backoff delay (1013, "try again later", never resets the backoff);
/// - 1002, 1003, 1007, 1008, 1009, 1010, 3000 (unauthorized), 3003
///   (forbidden), 4000-4999 (application codes): stop;
/// - dropped without a close frame, keepalive timeout, I/O error: reconnect;
/// - a protocol violation by the peer that this end detected (this end sent
///   1002, 1007 or 1009): stop;
/// - closed by this end, or the socket dropped by the user: reconnect (the
///   user asked for the next connection by polling again).
pub fn for_ended(ended: &Ended) -> Decision {
    if let Some(code) = ended.close_code() {
        let by_peer = ended.initiator == Some(Initiator::Remote);
        let by_us_for_violation = ended.error_kind == Some(ErrorKind::Protocol);
        if by_peer || by_us_for_violation {
            return match code.0 {
                1002 | 1003 | 1007 | 1008 | 1009 | 1010 | 3000 | 3003 | 4000..=4999 => {
                    Decision::Stop
                }
                _ => Decision::Retry,
            };
        }
    }
    Decision::Retry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Response;
    use std::time::Duration;
    use tether_proto::{CloseCode, CloseFrame};

    fn status(code: u16, retry_after: Option<&str>) -> Error {
        let mut r = Response::new(code);
        if let Some(ra) = retry_after {
            r = r.header("retry-after", ra);
        }
        Error::new(ErrorKind::HttpStatus).with_response(r)
    }

    fn ended_by_peer(code: u16) -> Ended {
        Ended {
            close: Some(CloseFrame::new(code, "why")),
            initiator: Some(Initiator::Remote),
            error_kind: None,
            error: None,
            open_for: Duration::from_secs(60),
            user_closed: false,
        }
    }

    #[test]
    fn row_network_errors_retry() {
        for k in [ErrorKind::Connect, ErrorKind::Dns, ErrorKind::Io] {
            assert!(for_error(&Error::new(k)).is_retry(), "{k:?}");
        }
    }

    #[test]
    fn row_open_timeout_retries() {
        assert!(for_error(&Error::new(ErrorKind::Timeout)).is_retry());
    }

    #[test]
    fn row_server_errors_retry_honouring_retry_after() {
        for s in [500, 502, 503, 504] {
            assert_eq!(for_error(&status(s, None)), Decision::Retry);
        }
        assert_eq!(
            for_error(&status(503, Some("2"))),
            Decision::RetryAfter(Duration::from_secs(2))
        );
    }

    #[test]
    fn row_408_429_retry_honouring_retry_after() {
        assert_eq!(
            for_error(&status(429, Some("7"))),
            Decision::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(for_error(&status(408, None)), Decision::Retry);
    }

    #[test]
    fn row_401_403_are_fatal() {
        assert_eq!(for_error(&status(401, None)), Decision::Stop);
        assert_eq!(for_error(&status(403, Some("5"))), Decision::Stop);
    }

    #[test]
    fn row_other_statuses_are_fatal() {
        for s in [100, 200, 204, 300, 304, 400, 404, 405, 426, 501, 505] {
            assert_eq!(for_error(&status(s, None)), Decision::Stop, "{s}");
        }
    }

    #[test]
    fn row_invalid_url_tls_redirect_handshake_are_fatal() {
        for k in [
            ErrorKind::InvalidUrl,
            ErrorKind::Tls,
            ErrorKind::Redirect,
            ErrorKind::Handshake,
        ] {
            assert_eq!(for_error(&Error::new(k)), Decision::Stop, "{k:?}");
        }
    }

    #[test]
    fn close_codes_that_reconnect() {
        for c in [1000, 1001, 1006, 1011, 1012, 1013, 1014, 3008] {
            assert_eq!(for_ended(&ended_by_peer(c)), Decision::Retry, "{c}");
        }
        let mut no_code = ended_by_peer(1000);
        no_code.close = None;
        assert_eq!(for_ended(&no_code), Decision::Retry);
    }

    #[test]
    fn close_codes_that_stop() {
        for c in [
            1002, 1003, 1007, 1008, 1009, 1010, 3000, 3003, 4000, 4001, 4999,
        ] {
            assert_eq!(for_ended(&ended_by_peer(c)), Decision::Stop, "{c}");
        }
    }

    #[test]
    fn local_close_and_drops_reconnect() {
        let mut e = ended_by_peer(1008);
        e.initiator = Some(Initiator::Local);
        e.user_closed = true;
        assert_eq!(for_ended(&e), Decision::Retry);
        let mut e = ended_by_peer(1002);
        e.initiator = Some(Initiator::Local);
        e.error_kind = Some(ErrorKind::Protocol);
        assert_eq!(
            for_ended(&e),
            Decision::Stop,
            "we failed it because the peer broke the protocol"
        );
        let mut e = ended_by_peer(1011);
        e.initiator = Some(Initiator::Local);
        e.error_kind = Some(ErrorKind::KeepaliveTimeout);
        assert_eq!(for_ended(&e), Decision::Retry);
        assert_eq!(e.close_code(), Some(CloseCode::INTERNAL_ERROR));
    }
}
