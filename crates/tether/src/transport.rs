//! The byte stream under a WebSocket, and the TCP connection it starts from.

use crate::error::{Error, ErrorKind, Result};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The transport of a connection made by [`connect`](crate::connect) or
/// accepted by [`serve`](crate::serve): plain TCP (`ws://`), or TLS over TCP
/// (`wss://`, and servers given a certificate, with the `tls` feature).
///
/// The enum is non-exhaustive: match with a wildcard arm, or use
/// [`Stream::tcp`] and [`Stream::is_tls`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Stream {
    /// A plain TCP connection.
    Tcp(TcpStream),
    /// TLS over TCP: a `wss://` client connection
    /// ([`tokio_rustls::TlsStream::Client`]), or a connection accepted by a
    /// server with a certificate ([`tokio_rustls::TlsStream::Server`]). Its
    /// `get_ref()` gives the negotiated protocol version, ALPN protocol and
    /// the peer's certificates.
    #[cfg(feature = "rustls")]
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket under the stream (under TLS, for a TLS stream).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            #[cfg(feature = "rustls")]
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// True for a TLS stream.
    pub fn is_tls(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
            #[cfg(feature = "rustls")]
            Stream::Tls(_) => true,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "rustls")]
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "rustls")]
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "rustls")]
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "rustls")]
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "rustls")]
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Resolves `host` and tries every address in turn; sets TCP_NODELAY.
pub(crate) async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            Error::io(ErrorKind::Dns, e).with_message(format!("could not resolve {host}"))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Error::msg(ErrorKind::Dns, format!("{host} has no address")));
    }
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "TCP connect failed");
                last = Some(e);
            }
        }
    }
    let e = last.expect("at least one address");
    Err(Error::io(ErrorKind::Connect, e)
        .with_message(format!("could not connect to {host}:{port}")))
}
