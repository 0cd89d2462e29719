//! `tether serve`: an echo or broadcast server.

use crate::output::chain;
use crate::{socket_config, Limits, EXIT_ERROR, EXIT_USAGE};
use clap::Args;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tether::hub::{Hub, MemberId};
use tether::{ServerBuilder, WebSocket};

/// Options of `tether serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on, host:port (port 0 picks a free one).
    pub(crate) addr: String,
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
    pub(crate) max_queue_bytes: usize,
    /// With --broadcast: share the broadcast with every `tether serve
    /// --broadcast --redis` on the same Redis (redis://host:port). Each URL
    /// path is a topic; messages carry ids and clients that offer
    /// tether.resume.v1 resume with no message lost.
    #[arg(long, value_name = "URL", requires = "broadcast")]
    pub(crate) redis: Option<String>,
    /// With --broadcast: the messages kept per topic for resuming clients
    /// (in Redis with --redis, else in memory); turns on topics and
    /// tether.resume.v1 without --redis too. Default 10000 with --redis,
    /// 1000 without.
    #[arg(long, value_name = "N", requires = "broadcast")]
    pub(crate) history: Option<usize>,
    #[command(flatten)]
    limits: Limits,
}

/// The broadcast hub, and the connection number of each member (the
/// numbers this command prints).
#[derive(Clone)]
struct Broadcast {
    hub: Hub,
    numbers: Arc<Mutex<HashMap<MemberId, u64>>>,
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
    if args.redis.is_some() || args.history.is_some() {
        return crate::serve_topics::run(builder, scheme, &args).await;
    }
    let ids = Arc::new(AtomicU64::new(0));
    let broadcast = args.broadcast.then(|| Broadcast {
        hub: Hub::builder().max_queue_bytes(args.max_queue_bytes).build(),
        numbers: Arc::default(),
    });
    let server = builder
        .serve(args.addr.as_str(), move |ws: WebSocket| {
            let broadcast = broadcast.clone();
            let id = ids.fetch_add(1, Ordering::Relaxed);
            async move {
                let peer = ws.get_ref().tcp().peer_addr().ok();
                tracing::info!(?peer, id, "connection open");
                eprintln!(
                    "* connection {id} from {}",
                    peer.map_or("?".into(), |p| p.to_string())
                );
                match broadcast {
                    Some(b) => broadcast_peer(ws, id, b).await,
                    None => echo(ws).await,
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

/// Relays every data message of this peer to all peers (itself included),
/// through the library's [`Hub`].
///
/// What one peer can make the server hold is bounded by bytes: each peer's
/// queue (its connection's unsent bytes) holds at most `--max-queue-bytes`.
/// A peer that falls that far behind (it stopped reading, or reads slower
/// than the others publish) is closed with 1013 "try again later" rather
/// than slowing the others or silently losing messages: the client learns
/// that it missed messages, and a reconnecting client (tether's retries
/// 1013 with backoff) comes back.
async fn broadcast_peer(ws: WebSocket, id: u64, b: Broadcast) {
    let mut member = b.hub.join(ws);
    lock(&b.numbers).insert(member.id(), id);
    while let Some(Ok(m)) = member.recv().await {
        if !m.is_data() {
            continue;
        }
        let Ok(report) = b.hub.broadcast(m) else {
            continue;
        };
        for slow in report.closed_slow {
            let n = lock(&b.numbers).get(&slow).copied();
            let max_queue = b.hub.max_queue_bytes();
            tracing::warn!(peer = n, max_queue, "peer too slow: closing it with 1013");
            eprintln!(
                "* connection {} too slow (over {max_queue} bytes queued): closing with 1013",
                n.map_or("?".into(), |n| n.to_string())
            );
        }
    }
    lock(&b.numbers).remove(&member.id());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
