//! The echo servers under test, each written the way its library's own
//! documentation or examples write one. Each gets an accepted `TcpStream`
//! (with `TCP_NODELAY` set by the harness, for all alike).

use crate::harness::ConnFuture;
use futures_util::{future, SinkExt, StreamExt, TryStreamExt};
use tokio::net::TcpStream;

/// tether: `ServerBuilder::accept`, then the plain `recv`/`send` loop.
pub(crate) fn tether(tcp: TcpStream) -> ConnFuture {
    Box::pin(async move {
        let mut ws = tether::ServerBuilder::new()
            .max_message_size(Some(16 << 20))
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
        Ok(())
    })
}

/// tokio-tungstenite as in its `examples/echo-server.rs`: `accept_async`,
/// `split`, and `forward` of the text and binary messages.
pub(crate) fn tungstenite_forward(tcp: TcpStream) -> ConnFuture {
    Box::pin(async move {
        let ws = tokio_tungstenite::accept_async(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (write, read) = ws.split();
        read.try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
            .forward(write)
            .await
            .map_err(|e| e.to_string())
    })
}

/// tokio-tungstenite with one `send` per message received (`next` then `send`).
pub(crate) fn tungstenite_next_send(tcp: TcpStream) -> ConnFuture {
    Box::pin(async move {
        let mut ws = tokio_tungstenite::accept_async(tcp)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
        Ok(())
    })
}

/// fastwebsockets as in its `examples/echo_server.rs`: hyper serves the
/// upgrade, and a `FragmentCollector` echoes with `read_frame`/`write_frame`.
pub(crate) fn fastwebsockets(tcp: TcpStream) -> ConnFuture {
    use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
    use http_body_util::Empty;
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};

    async fn handle_client(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
        let mut ws = FragmentCollector::new(fut.await?);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn server_upgrade(
        mut req: Request<Incoming>,
    ) -> Result<Response<Empty<Bytes>>, WebSocketError> {
        let (response, fut) = upgrade::upgrade(&mut req)?;
        tokio::spawn(async move {
            let _ = handle_client(fut).await;
        });
        Ok(response)
    }

    Box::pin(async move {
        let io = hyper_util::rt::TokioIo::new(tcp);
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, hyper::service::service_fn(server_upgrade))
            .with_upgrades()
            .await
            .map_err(|e| e.to_string())
    })
}

/// tokio-websockets as in its `examples/echo_server.rs`: `ServerBuilder::accept`,
/// then `next` and `send` of the text and binary messages.
pub(crate) fn tokio_websockets(tcp: TcpStream) -> ConnFuture {
    Box::pin(async move {
        let (_request, mut ws) = tokio_websockets::ServerBuilder::new()
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
        Ok(())
    })
}
