//! Errors of the protocol core.

use crate::close::CloseCode;
use crate::http_message::Response;
use std::fmt;

/// A violation of RFC 6455 by the peer, or a limit it crossed. Each maps to
/// the close code sent to the peer ([`ProtocolError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An RSV bit was set without an extension that defines it.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// The opcode is reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A 64-bit length with its most significant bit set.
    #[error("invalid frame length")]
    InvalidLength,
    /// A client sent an unmasked frame.
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A server sent a masked frame.
    #[error("server frame is masked")]
    MaskedFrame,
    /// A control frame longer than 125 bytes.
    #[error("control frame of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A continuation frame outside a fragmented message.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new data frame before the fragmented message ended.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A text message or close reason that is not valid UTF-8.
    #[error("invalid UTF-8 in text")]
    InvalidUtf8,
    /// A close frame with a code that may not be sent.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close frame with a one-byte payload.
    #[error("invalid close frame payload")]
    InvalidClosePayload,
    /// A message larger than `max_message_size`.
    #[error("message of at least {size} bytes exceeds the limit of {limit}")]
    MessageTooBig {
        /// The size seen so far (the message may be larger still).
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A frame larger than `max_frame_size`.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooBig {
        /// The frame's declared length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A compressed message could not be inflated (RFC 7692).
    #[error("permessage-deflate: {0}")]
    Deflate(&'static str),
}

impl ProtocolError {
    /// The close code to send for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            ProtocolError::MessageTooBig { .. } | ProtocolError::FrameTooBig { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// A failed opening handshake.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server answered with a status other than 101. The response keeps
    /// the status, the headers and up to [`crate::handshake::MAX_BODY_KEPT`]
    /// bytes of body. On a server, the response to send instead of the 101
    /// (a hook refused the upgrade); [`ServerHandshake::reject`] returns it
    /// as it is.
    ///
    /// [`ServerHandshake::reject`]: crate::handshake::ServerHandshake::reject
    #[error("server answered HTTP {} instead of switching protocols", .0.status)]
    Status(Box<Response>),
    /// A required header is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header has a value that is not allowed.
    #[error("invalid {0} header")]
    InvalidHeader(&'static str),
    /// `Sec-WebSocket-Accept` does not match the key.
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// The server chose a subprotocol the client did not offer.
    #[error("server chose a subprotocol the client did not offer")]
    UnofferedSubprotocol,
    /// The server accepted an extension the client did not offer.
    #[error("server accepted an extension the client did not offer")]
    UnofferedExtension,
    /// The HTTP message could not be parsed.
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    /// The request line or a header line is longer than the limit (HTTP 414
    /// for the request line).
    #[error("request line too long")]
    LineTooLong,
    /// A header line is too long or there are too many headers (HTTP 431).
    #[error("header fields too large")]
    HeadersTooLarge,
    /// The method is not GET (HTTP 405).
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    /// The HTTP version is not 1.1 (HTTP 505).
    #[error("HTTP version not supported")]
    VersionNotSupported,
    /// `Sec-WebSocket-Version` is not 13 (HTTP 426).
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// The request is not a WebSocket upgrade at all: its `Upgrade` header
    /// is missing or does not name `websocket` (a plain `GET`, a browser
    /// opening the URL, a health check). HTTP 426 Upgrade Required, as
    /// websockets answers.
    #[error("not a WebSocket upgrade request (no Upgrade: websocket header)")]
    NotWebSocket,
    /// The connection closed before the handshake completed.
    #[error("connection closed during the handshake")]
    UnexpectedEof,
    /// The client's own request cannot be sent as it is: a value with a
    /// control character, a subprotocol that is not a token
    /// ([`ClientRequest::validate`](crate::handshake::ClientRequest::validate)).
    #[error("{0}")]
    InvalidRequest(String),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with: for
    /// [`HandshakeError::Status`], the status of that response.
    pub fn http_status(&self) -> u16 {
        match self {
            HandshakeError::Status(r) => r.status,
            HandshakeError::LineTooLong => 414,
            HandshakeError::HeadersTooLarge => 431,
            HandshakeError::MethodNotAllowed(_) => 405,
            HandshakeError::VersionNotSupported => 505,
            HandshakeError::UnsupportedVersion | HandshakeError::NotWebSocket => 426,
            _ => 400,
        }
    }
}

/// What kind of [`Error`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer broke the protocol or crossed a limit.
    Protocol,
    /// The opening handshake failed.
    Handshake,
    /// The connection is closing or closed: nothing more can be sent.
    Closed,
    /// The caller passed an invalid argument (a close code that may not be
    /// sent, a control payload over 125 bytes).
    InvalidInput,
}

/// The error type of `tether-proto`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ProtocolError`].
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// See [`HandshakeError`].
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The connection is closing or closed.
    #[error("connection is closed")]
    Closed,
    /// An invalid argument.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The transport ended without a close frame (reported as code 1006).
    #[error("connection closed without a close frame (1006)")]
    AbnormalClosure,
    /// The I/O layer failed the connection with this close code (for
    /// example 1011 after a keepalive timeout).
    #[error("connection failed locally with close code {0}")]
    Failed(CloseCode),
}

impl Error {
    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Protocol(_) => ErrorKind::Protocol,
            Error::Handshake(_) => ErrorKind::Handshake,
            Error::Closed => ErrorKind::Closed,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::AbnormalClosure | Error::Failed(_) => ErrorKind::Closed,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Handshake => "handshake error",
            ErrorKind::Closed => "connection closed",
            ErrorKind::InvalidInput => "invalid input",
        })
    }
}
