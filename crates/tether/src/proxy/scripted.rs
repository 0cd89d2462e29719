//! Hostile proxies for the unit tests: scripted answers on a loopback
//! listener.

use super::Proxy;
use crate::error::Result;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A one-connection proxy that reads what the client sends first, then
/// writes `answer` (in pieces, to exercise partial reads) and, if
/// `close`, closes.
pub(super) async fn scripted(
    answer: Vec<u8>,
    close: bool,
) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = vec![0u8; 4096];
        let n = s.read(&mut got).await.unwrap_or(0);
        got.truncate(n);
        for piece in answer.chunks(7) {
            if s.write_all(piece).await.is_err() {
                break;
            }
        }
        if !close {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        got
    });
    (format!("127.0.0.1:{}", addr.port()), task)
}

/// A tunnel to `example.com:80` through a [`scripted`] proxy that gives
/// `answer`, with the proxy URL's scheme `scheme`.
pub(super) async fn through(scheme: &str, answer: &[u8], close: bool) -> Result<TcpStream> {
    let (addr, _task) = scripted(answer.to_vec(), close).await;
    let p = Proxy::parse(&format!("{scheme}://{addr}")).unwrap();
    tokio::time::timeout(Duration::from_secs(5), p.tunnel("example.com", 80, None))
        .await
        .expect("a bounded answer")
}
