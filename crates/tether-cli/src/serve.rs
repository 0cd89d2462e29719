//! `tether serve`: an echo or broadcast server.

use crate::output::chain;
use crate::{socket_config, Limits, EXIT_ERROR, EXIT_USAGE};
use clap::Args;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tether::{CloseCode, Message, ServerBuilder, WebSocket};
use tokio::sync::{mpsc, Notify};

/// Options of `tether serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on, host:port (port 0 picks a free one).
    addr: String,
    /// Echo every message back to its sender (text as text, binary as binary).
    #[arg(long, conflicts_with = "broadcast")]
    echo: bool,
    /// Send every message to every connected peer.
    #[arg(long)]
    broadcast: bool,
    /// Serve TLS (wss://) with this certificate chain (PEM, leaf first);
    /// needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// With --broadcast: the most bytes queued for one peer. A peer that
    /// falls this far behind is closed with 1013 (try again later).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, requires = "broadcast")]
    max_queue_bytes: usize,
    #[command(flatten)]
    limits: Limits,
}

type Peers = Arc<Mutex<HashMap<u64, Peer>>>;

/// A broadcast peer: its queue, and the bytes in it.
#[derive(Clone)]
struct Peer {
    tx: mpsc::UnboundedSender<Message>,
    queued: Arc<AtomicUsize>,
    /// Set once the peer fell too far behind; its writer closes it.
    too_slow: Arc<AtomicBool>,
    kick: Arc<Notify>,
}

impl Peer {
    /// Queues `m` unless that would take the peer past `max` bytes: then
    /// the peer is marked too slow (once) and its writer closes it.
    fn offer(&self, m: &Message, max: usize) -> bool {
        if self.too_slow.load(Ordering::Relaxed) {
            return false;
        }
        let n = m.len();
        if self.queued.fetch_add(n, Ordering::AcqRel) + n > max {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            if !self.too_slow.swap(true, Ordering::AcqRel) {
                self.kick.notify_one();
            }
            return false;
        }
        self.tx.send(m.clone()).is_ok()
    }
}

pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    if !args.echo && !args.broadcast {
        eprintln!("tether: choose what the server does: --echo or --broadcast");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut builder = ServerBuilder::new().config(socket_config(
        tether::WebSocketConfig::server(),
        &args.limits,
    ));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        builder = match builder.tls_pem(cert, key) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("tether: {}", chain(&e));
                return ExitCode::from(EXIT_USAGE);
            }
        };
    }
    let scheme = if args.tls_cert.is_some() { "wss" } else { "ws" };
    let peers: Peers = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    let broadcast = args.broadcast;
    let max_queue = args.max_queue_bytes;
    let server = builder
        .serve(args.addr.as_str(), move |ws: WebSocket| {
            let peers = peers.clone();
            let id = ids.fetch_add(1, Ordering::Relaxed);
            async move {
                let peer = ws.get_ref().tcp().peer_addr().ok();
                tracing::info!(?peer, id, "connection open");
                eprintln!(
                    "* connection {id} from {}",
                    peer.map_or("?".into(), |p| p.to_string())
                );
                if broadcast {
                    broadcast_peer(ws, id, peers, max_queue).await;
                } else {
                    echo(ws).await;
                }
                eprintln!("* connection {id} closed");
            }
        })
        .await;
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tether: {}", chain(&e));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    println!("listening on {scheme}://{}/", server.local_addr());
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("* shutting down (close 1001 to every client)");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Echoes data messages. `send` coalesces writes while more input is
/// buffered, so a burst of messages goes out in one write.
async fn echo(mut ws: WebSocket) {
    while let Some(msg) = ws.recv().await {
        match msg {
            Ok(m) if m.is_data() => {
                if ws.send(m).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::info!(error = %e, "connection failed");
                break;
            }
        }
    }
    let _ = ws.flush().await;
}

/// Relays every data message of this peer to all peers (itself included).
///
/// What one peer can make the server hold is bounded by bytes: each peer's
/// queue holds at most `max_queue` bytes. A peer that falls that far behind
/// (it stopped reading, or reads slower than the others publish) is closed
/// with 1013 "try again later" rather than slowing the others or silently
/// losing messages: the client learns that it missed messages, and a
/// reconnecting client (tether's retries 1013 with backoff) comes back.
async fn broadcast_peer(ws: WebSocket, id: u64, peers: Peers, max_queue: usize) {
    let (mut rx, mut tx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let me = Peer {
        tx: out_tx,
        queued: Arc::default(),
        too_slow: Arc::default(),
        kick: Arc::default(),
    };
    peers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, me.clone());
    let writer = tokio::spawn(async move {
        loop {
            let m = tokio::select! {
                biased;
                _ = me.kick.notified() => break,
                m = out_rx.recv() => match m { Some(m) => m, None => return },
            };
            let n = m.len();
            tokio::select! {
                biased;
                _ = me.kick.notified() => break,
                r = tx.send(m) => if r.is_err() { return },
            }
            me.queued.fetch_sub(n, Ordering::AcqRel);
        }
        // Too slow: drop its backlog now, and close (the close timeout
        // bounds the wait for a peer that does not read at all).
        drop(out_rx);
        tracing::warn!(peer = id, max_queue, "peer too slow: closing it with 1013");
        eprintln!("* connection {id} too slow (over {max_queue} bytes queued): closing with 1013");
        let _ = tx
            .close(
                CloseCode::TRY_AGAIN_LATER,
                "too slow: messages came faster than it read",
            )
            .await;
    });
    while let Some(Ok(m)) = rx.recv().await {
        if !m.is_data() {
            continue;
        }
        let targets: Vec<(u64, Peer)> = peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (_, peer) in targets {
            peer.offer(&m, max_queue);
        }
    }
    peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    writer.abort();
}
