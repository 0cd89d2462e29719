//! `tether::hyper` (feature `hyper`) in a plain hyper 1 server:
//! `hyper::server::conn::http1` with `serve_connection(...).with_upgrades()`
//! and a `service_fn` that serves `GET /`, `GET /health` and a WebSocket at
//! `/ws` on one port. tether's client and Python `websockets` talk to the
//! WebSocket with and without permessage-deflate, with a subprotocol; the
//! ordinary routes answer beside it.

mod frameworks;
mod peers;
mod protocol;
mod relay;

use frameworks::{
    check_http_routes, check_python_client, check_tether_client, BIG_LIMIT, HOME, SUBPROTOCOL,
};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use protocol::ProtocolHandler;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tether::{Bytes, ErrorKind, ServerBuilder};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the `/ws` route does once the socket's future resolves.
#[derive(Clone)]
enum OnSocket {
    /// Runs the command protocol on it.
    Protocol(ProtocolHandler),
    /// Reports how the future resolved (for the failure test).
    Report(mpsc::UnboundedSender<tether::Result<()>>),
}

async fn route(
    mut req: http::Request<Incoming>,
    settings: ServerBuilder,
    on_socket: OnSocket,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let text = |status: u16, body: &'static str| {
        let mut r = http::Response::new(Full::from(body));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(r)
    };
    match req.uri().path() {
        "/" => return text(200, HOME),
        "/health" => return text(200, "ok\n"),
        "/ws" => {}
        _ => return text(404, "not found\n"),
    }
    let (response, socket) = match tether::hyper::upgrade(&mut req, &settings) {
        Ok(accepted) => accepted,
        Err(refused) => return Ok(refused.into_response()),
    };
    tokio::spawn(async move {
        let ws = socket.await;
        match on_socket {
            OnSocket::Protocol(handler) => match ws {
                Ok(ws) => handler.run(ws).await,
                // The client sees the failure; say why here.
                Err(e) => eprintln!("the upgrade failed: {e}"),
            },
            OnSocket::Report(tx) => {
                let _ = tx.send(ws.map(drop));
            }
        }
    });
    Ok(response)
}

/// Serves `route` on a loopback port, with upgrades enabled or not.
async fn serve(on_socket: OnSocket, with_upgrades: bool) -> SocketAddr {
    let settings = ServerBuilder::new()
        .subprotocols([SUBPROTOCOL])
        .max_message_size(Some(BIG_LIMIT))
        .ping_interval(None);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (settings, on_socket) = (settings.clone(), on_socket.clone());
            let service = service_fn(move |req| route(req, settings.clone(), on_socket.clone()));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            if with_upgrades {
                tokio::spawn(conn.with_upgrades());
            } else {
                tokio::spawn(conn);
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ordinary_routes_answer_beside_the_websocket() {
    let addr = serve(OnSocket::Protocol(ProtocolHandler::default()), true).await;
    check_http_routes(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_client_with_and_without_compression() {
    let handler = ProtocolHandler::default();
    let addr = serve(OnSocket::Protocol(handler.clone()), true).await;
    check_tether_client(addr, &handler).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_with_compression_and_subprotocol() {
    let handler = ProtocolHandler::default();
    let addr = serve(OnSocket::Protocol(handler.clone()), true).await;
    check_python_client(addr, &handler, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_without_compression() {
    let handler = ProtocolHandler::default();
    let addr = serve(OnSocket::Protocol(handler.clone()), true).await;
    check_python_client(addr, &handler, false).await;
}

/// Without `.with_upgrades()`, hyper sends the 101 but keeps the
/// connection: the socket's future fails with `Connect`, and the client
/// sees the connection end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_with_upgrades_the_socket_future_fails() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = serve(OnSocket::Report(tx), false).await;
    let client = tether::ClientBuilder::new(format!("ws://{addr}/ws"))
        .open_timeout(Some(Duration::from_secs(5)))
        .connect();
    let client = tokio::spawn(async move {
        let mut ws = client.await?;
        // Whatever the handshake did, no message can get through.
        ws.recv().await.transpose()
    });
    let outcome = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the socket's future did not resolve")
        .expect("a report");
    let err = outcome.expect_err("the upgrade succeeded without with_upgrades");
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    let got = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .expect("the client hung")
        .expect("the client task");
    assert!(
        !matches!(got, Ok(Some(_))),
        "the client received a message: {got:?}"
    );
}
