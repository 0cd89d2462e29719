//! The server's caps: `max_connections` answers 503 with `Retry-After`
//! beyond it, and `max_handshakes` stops accepting while that many
//! connections have not finished their handshake.

use std::time::Duration;
use tether::{ClientBuilder, ErrorKind, ServerBuilder, WebSocket};
use tokio::net::TcpStream;
use tokio::time::timeout;

async fn hold_open(mut ws: WebSocket) {
    while let Some(Ok(_)) = ws.recv().await {}
}

#[tokio::test]
async fn beyond_max_connections_the_answer_is_503_with_retry_after() {
    let server = ServerBuilder::new()
        .max_connections(Some(2))
        .serve("127.0.0.1:0", hold_open)
        .await
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let a = ClientBuilder::new(&url).connect().await.unwrap();
    let b = ClientBuilder::new(&url).connect().await.unwrap();
    let e = ClientBuilder::new(&url).connect().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HttpStatus, "{e}");
    assert_eq!(e.status(), Some(503));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    assert!(e.is_retryable(), "a reconnecting client retries it");
    // One leaves: there is room again.
    drop(a);
    let again = timeout(Duration::from_secs(5), async {
        loop {
            match ClientBuilder::new(&url).connect().await {
                Ok(ws) => return ws,
                Err(e) => assert_eq!(e.status(), Some(503), "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(again.is_ok(), "a slot was freed when a connection closed");
    drop((b, again));
    server.shutdown().await;
}

#[tokio::test]
async fn at_max_handshakes_the_server_stops_accepting() {
    let server = ServerBuilder::new()
        .max_handshakes(1)
        .serve("127.0.0.1:0", hold_open)
        .await
        .unwrap();
    let addr = server.local_addr();
    let url = format!("ws://{addr}/");
    // A client that connects and sends nothing holds the only handshake.
    let silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut waiting = Box::pin(ClientBuilder::new(&url).connect());
    assert!(
        timeout(Duration::from_millis(400), &mut waiting)
            .await
            .is_err(),
        "the second handshake waits while the first is in flight"
    );
    drop(silent);
    let ws = timeout(Duration::from_secs(5), waiting)
        .await
        .expect("accepted once the first handshake ended")
        .unwrap();
    drop(ws);
    server.shutdown().await;
}
