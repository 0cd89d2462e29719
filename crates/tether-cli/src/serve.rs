//! `tether serve`: an echo or broadcast server.

use crate::output::chain;
use crate::{socket_config, Limits, EXIT_ERROR, EXIT_USAGE};
use clap::Args;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tether::{Message, ServerBuilder, WebSocket};
use tokio::sync::mpsc;

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
    #[command(flatten)]
    limits: Limits,
}

type Peers = Arc<Mutex<HashMap<u64, mpsc::Sender<Message>>>>;

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
                    broadcast_peer(ws, id, peers).await;
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
/// A peer too slow to keep up loses messages rather than slowing the others.
async fn broadcast_peer(ws: WebSocket, id: u64, peers: Peers) {
    let (mut rx, mut tx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(1024);
    peers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, out_tx);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if tx.send(m).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(m)) = rx.recv().await {
        if !m.is_data() {
            continue;
        }
        let targets: Vec<(u64, mpsc::Sender<Message>)> = peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (peer, t) in targets {
            if t.try_send(m.clone()).is_err() {
                tracing::warn!(peer, "peer too slow or gone; message dropped for it");
            }
        }
    }
    peers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    writer.abort();
}
