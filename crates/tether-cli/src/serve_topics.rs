//! `tether serve --broadcast --redis URL` / `--history N`: the broadcast on
//! the hub's topics. Each URL path is a topic (`/prices` is `prices`); what
//! a peer sends is published to its topic, through Redis to every server
//! process with `--redis`; messages carry ids, and clients that offer
//! `tether.resume.v1` resume where they left off.

use crate::output::chain;
use crate::serve::ServeArgs;
use crate::{EXIT_ERROR, EXIT_USAGE};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tether::hub::{Hub, InProcess};
use tether::{resume, CloseCode, ServerBuilder, WebSocket};

/// The longest topic name (URL path) accepted.
const MAX_TOPIC_LEN: usize = 256;

/// How long `--redis` waits for Redis before listening anyway.
#[cfg(feature = "redis")]
use tether::tether_proto::redact::redact_url;

#[cfg(feature = "redis")]
const REDIS_STARTUP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) async fn run(builder: ServerBuilder, scheme: &str, args: &ServeArgs) -> ExitCode {
    let mut hub = Hub::builder().max_queue_bytes(args.max_queue_bytes);
    match &args.redis {
        #[cfg(feature = "redis")]
        Some(url) => {
            let mut redis = tether::hub::RedisBackend::builder(url.as_str());
            if let Some(n) = args.history {
                redis = redis.history(n);
            }
            match redis.build() {
                Ok(b) => {
                    // Listen once Redis is reached (or not, after a bound):
                    // so that what the first clients publish reaches the
                    // other processes, and has an id, rather than racing
                    // the backend's first connection.
                    let deadline = tokio::time::Instant::now() + REDIS_STARTUP_WAIT;
                    while !b.is_connected() && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    if !b.is_connected() {
                        eprintln!(
                            "* redis {} unreachable: serving local members only until it is back",
                            redact_url(url)
                        );
                    }
                    hub = hub.backend(b);
                }
                Err(e) => {
                    eprintln!("tether: --redis {}: {}", redact_url(url), chain(&e));
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            eprintln!("tether: --redis needs a tether built with the feature `redis`");
            return ExitCode::from(EXIT_USAGE);
        }
        None => {
            let n = args.history.unwrap_or(tether::hub::DEFAULT_HISTORY);
            hub = hub.backend(InProcess::new().history(n)).recent_messages(n);
        }
    }
    let hub = hub.build();
    let ids = Arc::new(AtomicU64::new(0));
    let h = hub.clone();
    let server = builder
        .subprotocols([resume::SUBPROTOCOL])
        .serve(args.addr.as_str(), move |ws: WebSocket| {
            let hub = h.clone();
            let id = ids.fetch_add(1, Ordering::Relaxed);
            async move {
                let peer = ws.get_ref().tcp().peer_addr().ok();
                eprintln!(
                    "* connection {id} from {}",
                    peer.map_or("?".into(), |p| p.to_string())
                );
                peer_on_topic(ws, id, hub).await;
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

/// Joins the peer to the topic of its URL path and publishes what it
/// sends there. A publish that cannot reach Redis still reaches this
/// process's peers; it is said once per outage (the backend logs it), and
/// counted.
async fn peer_on_topic(mut ws: WebSocket, id: u64, hub: Hub) {
    let name = ws
        .request()
        .map(|r| resume::topic_of_target(&r.target).to_string())
        .unwrap_or_default();
    let topic = match (name.len() <= MAX_TOPIC_LEN).then(|| hub.topic(&name)) {
        Some(Ok(t)) => t,
        _ => {
            let _ = ws.close(CloseCode::POLICY_VIOLATION, "topic refused").await;
            return;
        }
    };
    let resuming = ws.subprotocol() == Some(resume::SUBPROTOCOL);
    eprintln!(
        "* connection {id} on topic {name:?}{}",
        if resuming { " (tether.resume.v1)" } else { "" }
    );
    let mut member = topic.join(ws).await;
    let mut failing = false;
    while let Some(Ok(m)) = member.recv().await {
        if !m.is_data() {
            continue;
        }
        match topic.publish(m).await {
            Ok(_) => failing = false,
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    eprintln!(
                        "* connection {id}: {} ({} failed so far)",
                        chain(&e),
                        hub.publish_failures()
                    );
                }
            }
        }
    }
}
