//! A server answers 400 to a request with two `Host` headers or an empty
//! one (RFC 9112 §3.2).

use std::net::SocketAddr;
use std::time::Duration;
use tether::{ServerBuilder, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` to a tether server and returns its answer's status line.
async fn status_for(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    answer.lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn server_answers_400_to_two_hosts_or_an_empty_one() {
    let server = ServerBuilder::new()
        .serve("127.0.0.1:0", |_ws: WebSocket| async {})
        .await
        .unwrap();
    let addr = server.local_addr();
    let request = |hosts: &str| {
        format!(
            "GET / HTTP/1.1\r\n{hosts}Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    for hosts in [
        "Host: a.example\r\nHost: b.example\r\n",
        "Host: a.example\r\nHost: a.example\r\n",
        "Host:\r\n",
        "Host:  \r\n",
    ] {
        let status = status_for(addr, &request(hosts)).await;
        assert!(status.starts_with("HTTP/1.1 400 "), "{hosts:?}: {status}");
    }
    // The control: one Host is upgraded.
    let status = status_for(addr, &request("Host: a.example\r\n")).await;
    assert!(status.starts_with("HTTP/1.1 101 "), "{status}");
    server.shutdown().await;
}
