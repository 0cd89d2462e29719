//! Listening: the accept loop of [`ServerBuilder::serve`], its connection
//! count, and the [`Server`] handle.

use super::ServerBuilder;
use crate::socket::WebSocket;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the accept loop shares with the connections it spawns.
pub(super) struct Serving {
    pub(super) token: CancellationToken,
    /// Upgraded connections still open.
    open: Arc<AtomicUsize>,
}

impl Serving {
    /// Counts one more open connection, unless that would pass `max`.
    pub(super) fn take_slot(&self, max: Option<usize>) -> Option<Slot> {
        let max = max.unwrap_or(usize::MAX);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(self.open.clone()))
    }
}

/// One open connection in [`Serving::open`], released when dropped.
pub(super) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) async fn accept_loop<H, F>(
    listener: TcpListener,
    builder: Arc<ServerBuilder>,
    handler: Arc<H>,
    token: CancellationToken,
) where
    H: Fn(WebSocket) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    let shutting_down = Arc::new(AtomicBool::new(false));
    let serving = Arc::new(Serving {
        token: token.clone(),
        open: Arc::default(),
    });
    let handshakes = Arc::new(Semaphore::new(builder.max_handshakes));
    loop {
        // At max_handshakes, stop accepting until a handshake finishes: the
        // kernel's backlog holds the next clients meanwhile.
        let permit = tokio::select! {
            _ = token.cancelled() => break,
            p = handshakes.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let builder = builder.clone();
        let handler = handler.clone();
        let serving = serving.clone();
        let flag = shutting_down.clone();
        tasks.spawn(async move {
            let accepted = builder.accept_tcp_inner(tcp, Some(&serving)).await;
            drop(permit);
            match accepted {
                Ok((mut ws, slot)) => {
                    tracing::debug!(%peer, "connection open");
                    ws.set_shutdown(serving.token.clone(), flag);
                    handler(ws).await;
                    drop(slot);
                    tracing::debug!(%peer, "connection handler finished");
                }
                Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
            }
        });
    }
    drop(listener);
    shutting_down.store(true, Ordering::Relaxed);
    // Handlers see close 1001 from their sockets; give them the close
    // timeout to finish, then stop them.
    let wait = async { while tasks.join_next().await.is_some() {} };
    let grace = builder
        .config
        .close_timeout
        .unwrap_or(Duration::from_secs(10))
        + Duration::from_secs(1);
    if tokio::time::timeout(grace, wait).await.is_err() {
        tracing::warn!("handlers still running after the close timeout; aborting them");
        tasks.abort_all();
    }
}

/// A running server started by [`serve`](crate::serve) or [`ServerBuilder::serve`].
#[derive(Debug)]
pub struct Server {
    pub(super) local_addr: SocketAddr,
    pub(super) token: CancellationToken,
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shuts down gracefully: stops accepting, answers handshakes in flight
    /// with 503, closes every open connection with 1001 (going away), and
    /// waits for the handlers to finish (at most the close timeout, after
    /// which they are aborted).
    ///
    /// # Cancel safety
    /// Cancelling stops waiting; the shutdown goes on in the background.
    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.task.await;
    }

    /// A token that shuts the server down when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Waits until the server has stopped.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}
