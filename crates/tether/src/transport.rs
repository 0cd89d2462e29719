//! The byte stream under a WebSocket, and the TCP connection it starts from.

use crate::error::{Error, ErrorKind, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The transport of a connection made by [`connect`](crate::connect) or
/// accepted by [`serve`](crate::serve): plain TCP (`ws://`), or TLS over TCP
/// (`wss://`, and servers given a certificate, with the `tls` feature).
///
/// The enum is non-exhaustive: match with a wildcard arm, or use
/// [`MaybeTlsStream::tcp`] and [`MaybeTlsStream::is_tls`].
#[derive(Debug)]
#[non_exhaustive]
pub enum MaybeTlsStream {
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

impl MaybeTlsStream {
    /// The TCP socket under the stream (under TLS, for a TLS stream).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTlsStream::Tcp(s) => s,
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Tls(s) => s.get_ref().0,
        }
    }

    /// True for a TLS stream.
    pub fn is_tls(&self) -> bool {
        match self {
            MaybeTlsStream::Tcp(_) => false,
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Tls(_) => true,
        }
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "rustls")]
            MaybeTlsStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How long a connection attempt runs alone before the next address is
/// tried alongside it (RFC 8305 §5 recommends 250 ms).
const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Resolves `host` and connects to one of its addresses, racing them as
/// Happy Eyeballs does (RFC 8305); sets TCP_NODELAY.
///
/// The addresses keep the resolver's order (RFC 6724), with the two families
/// interleaved (§4). The first attempt starts at once; each next one starts
/// when the previous attempt fails, or after [`CONNECTION_ATTEMPT_DELAY`]
/// (§5). The first connection made wins and the other attempts are dropped;
/// when all fail, the last error is returned. The name is resolved by one
/// `getaddrinfo` call that asks for both families, so §3 (separate AAAA and
/// A queries, the Resolution Delay) does not apply.
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
    let stream = race(
        interleave(addrs),
        CONNECTION_ATTEMPT_DELAY,
        TcpStream::connect,
    )
    .await
    .map_err(|e| {
        Error::io(ErrorKind::Connect, e).with_message(format!("could not connect to {host}:{port}"))
    })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The addresses with the families alternating, starting with the family of
/// the first, each family in its own order (RFC 8305 §4).
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first_is_v6) = addrs.first().map(SocketAddr::is_ipv6) else {
        return addrs;
    };
    let (first, other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.iter().partition(|a| a.is_ipv6() == first_is_v6);
    let (mut first, mut other) = (first.into_iter(), other.into_iter());
    let mut out = Vec::with_capacity(addrs.len());
    loop {
        match (first.next(), other.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// Connects to the first of `addrs` that answers, starting attempts as
/// [`connect_tcp`] says; `connect` makes one attempt.
async fn race<S, F, Fut>(addrs: Vec<SocketAddr>, delay: Duration, connect: F) -> io::Result<S>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = io::Result<S>>,
{
    let attempt = |addr| {
        let connecting = connect(addr);
        async move { (addr, connecting.await) }
    };
    let mut waiting = addrs.into_iter();
    let mut running = FuturesUnordered::new();
    running.extend(waiting.next().map(attempt));
    let mut last_error = None;
    while !running.is_empty() {
        tokio::select! {
            Some((addr, result)) = running.next() => match result {
                Ok(stream) => return Ok(stream),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "TCP connect failed");
                    last_error = Some(e);
                    // A failure starts the next attempt at once.
                    running.extend(waiting.next().map(attempt));
                }
            },
            () = tokio::time::sleep(delay), if !waiting.as_slice().is_empty() => {
                running.extend(waiting.next().map(attempt));
            }
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn families_alternate_starting_with_the_first() {
        let got = interleave(
            [
                "[::1]:1",
                "[::1]:2",
                "[::1]:3",
                "127.0.0.1:1",
                "127.0.0.1:2",
            ]
            .map(addr)
            .to_vec(),
        );
        let want = [
            "[::1]:1",
            "127.0.0.1:1",
            "[::1]:2",
            "127.0.0.1:2",
            "[::1]:3",
        ]
        .map(addr);
        assert_eq!(got, want);
        let got = interleave(["127.0.0.1:1", "127.0.0.1:2", "[::1]:1"].map(addr).to_vec());
        assert_eq!(got, ["127.0.0.1:1", "[::1]:1", "127.0.0.1:2"].map(addr));
        let one_family = ["127.0.0.1:2", "127.0.0.1:1"].map(addr).to_vec();
        assert_eq!(interleave(one_family.clone()), one_family);
        assert!(interleave(vec![]).is_empty());
    }

    /// How a scripted attempt ends: after so many ms, connected or refused;
    /// or never.
    #[derive(Clone, Copy)]
    enum Plan {
        Connects(u64),
        Refused(u64),
        Hangs,
    }

    /// Races attempts to 127.0.0.1:1, :2... scripted by `plans` (no socket
    /// is opened); returns the port connected to, and when (in ms from the
    /// start) each attempt started.
    async fn race_plans(plans: &[Plan]) -> (io::Result<u16>, Vec<u128>) {
        let t0 = Instant::now();
        let started = Arc::new(Mutex::new(Vec::new()));
        let addrs = (1..=plans.len() as u16)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect();
        let log = started.clone();
        let plans = plans.to_vec();
        let connect = move |a: SocketAddr| {
            log.lock().unwrap().push(t0.elapsed().as_millis());
            let plan = plans[usize::from(a.port()) - 1];
            async move {
                match plan {
                    Plan::Connects(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(a.port())
                    }
                    Plan::Refused(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Err(io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            a.to_string(),
                        ))
                    }
                    Plan::Hangs => std::future::pending().await,
                }
            }
        };
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            race(addrs, CONNECTION_ATTEMPT_DELAY, connect),
        )
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
        let started = started.lock().unwrap().clone();
        (result, started)
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_is_joined_after_250_ms_and_the_first_success_wins() {
        let t0 = Instant::now();
        let (won, started) = race_plans(&[Plan::Hangs, Plan::Connects(10)]).await;
        assert_eq!(won.unwrap(), 2);
        assert_eq!(started, [0, 250]);
        assert_eq!(t0.elapsed(), Duration::from_millis(260));

        // The first attempt, still running, may win over the second.
        let (won, started) = race_plans(&[Plan::Connects(300), Plan::Connects(100)]).await;
        assert_eq!(won.unwrap(), 1);
        assert_eq!(started, [0, 250]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_starts_the_next_attempt_at_once() {
        let (won, started) = race_plans(&[Plan::Refused(10), Plan::Connects(10)]).await;
        assert_eq!(won.unwrap(), 2);
        assert_eq!(started, [0, 10]);
        // A failure while another attempt runs starts a third at once.
        let plans = [Plan::Hangs, Plan::Refused(20), Plan::Connects(5)];
        let (won, started) = race_plans(&plans).await;
        assert_eq!(won.unwrap(), 3);
        assert_eq!(started, [0, 250, 270]);
    }

    #[tokio::test(start_paused = true)]
    async fn all_attempts_run_and_the_last_error_is_kept() {
        let (result, started) = race_plans(&[Plan::Hangs; 3]).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert_eq!(started, [0, 250, 500]);

        let (result, started) = race_plans(&[Plan::Refused(10), Plan::Refused(30)]).await;
        let e = result.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(e.to_string(), "127.0.0.1:2");
        assert_eq!(started, [0, 10]);
    }

    /// A real race over loopback: nothing listens on the IPv6 address, so
    /// the IPv4 one connects as soon as the first is refused, without
    /// waiting for the attempt delay.
    #[tokio::test]
    async fn a_refused_family_falls_back_to_the_other() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        // A port just released: nothing listens there. Without IPv6 on the
        // machine, a closed IPv4 port plays its part.
        let closed = match TcpListener::bind("[::1]:0").await {
            Ok(l) => l.local_addr().unwrap(),
            Err(_) => TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap()
                .local_addr()
                .unwrap(),
        };
        let t0 = std::time::Instant::now();
        let stream = race(
            vec![closed, open],
            Duration::from_secs(5),
            TcpStream::connect,
        )
        .await
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());

        // connect_tcp itself, by name: `localhost` may resolve to ::1 first.
        let stream = connect_tcp("localhost", open.port()).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), open);
        assert!(stream.nodelay().unwrap());

        drop(listener);
        let e = connect_tcp("127.0.0.1", open.port()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connect);
        assert_eq!(e.io_kind(), Some(io::ErrorKind::ConnectionRefused));
    }
}
