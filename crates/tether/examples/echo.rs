//! Starts an echo server on a free loopback port, connects a client to it,
//! exchanges a few messages, and closes cleanly. No setup, no network.
//!
//! Run: `cargo run --release -p tether --example echo`

use std::time::Instant;
use tether::{CloseCode, Message, WebSocket};

#[tokio::main]
async fn main() -> tether::Result<()> {
    let server = tether::serve("127.0.0.1:0", |mut ws: WebSocket| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    })
    .await?;
    let url = format!("ws://{}/", server.local_addr());
    println!("server listening on {url}");

    let mut ws = tether::connect(&url).await?;
    println!("client connected");
    for text in ["hello", "héllo wörld €", "goodbye"] {
        ws.send(Message::text(text)).await?;
        let echo = ws.recv().await.expect("an answer")?;
        println!("sent {text:?}, got back {echo:?}");
    }

    // A burst: 10,000 messages sent before reading the echoes.
    let started = Instant::now();
    let n = 10_000;
    for i in 0..n {
        ws.send(Message::binary(format!("{i:08}").into_bytes()))
            .await?;
    }
    for i in 0..n {
        let m = ws.recv().await.expect("an echo")?;
        assert_eq!(m.as_payload(), format!("{i:08}").as_bytes());
    }
    println!("echoed {n} messages in {:?}", started.elapsed());

    ws.close(CloseCode::NORMAL, "done").await?;
    println!("closed cleanly: {:?}", ws.state());
    server.shutdown().await;
    Ok(())
}
