//! Public types can cross threads and tasks.

fn is_send<T: Send>() {}
fn is_sync<T: Sync>() {}
fn is_unpin<T: Unpin>() {}

#[test]
fn public_types_are_send_sync_unpin() {
    is_send::<tether::WebSocket>();
    is_sync::<tether::WebSocket>();
    is_unpin::<tether::WebSocket>();
    is_send::<tether::WsReader>();
    is_sync::<tether::WsReader>();
    is_send::<tether::WsWriter>();
    is_sync::<tether::WsWriter>();
    is_send::<tether::Error>();
    is_sync::<tether::Error>();
    is_send::<tether::ClientBuilder>();
    is_sync::<tether::ClientBuilder>();
    is_send::<tether::ServerBuilder>();
    is_sync::<tether::ServerBuilder>();
    is_send::<tether::Server>();
    is_send::<tether::Message>();
    is_sync::<tether::Message>();
    is_send::<tether_proto_connection::Connection>();
    is_send::<tether::hub::Hub>();
    is_sync::<tether::hub::Hub>();
    is_send::<tether::hub::Member>();
    is_sync::<tether::hub::Member>();
    is_unpin::<tether::hub::Member>();
    is_send::<tether::reconnect::SessionSender>();
    is_sync::<tether::reconnect::SessionSender>();
    is_send::<tether::reconnect::Session>();
    is_unpin::<tether::reconnect::Session>();
    is_send::<tether::tether_proto::PreparedMessage>();
    is_sync::<tether::tether_proto::PreparedMessage>();
    is_unpin::<tether::WsWriter>();
}

#[cfg(feature = "hyper")]
#[test]
fn hyper_types_are_send() {
    is_send::<tether::hyper::UpgradeFuture>();
    is_unpin::<tether::hyper::UpgradeFuture>();
    is_send::<tether::hyper::UpgradedWebSocket>();
    is_send::<tether::hyper::UpgradeRejection>();
    is_sync::<tether::hyper::UpgradeRejection>();
}

#[cfg(feature = "axum")]
#[test]
fn axum_types_are_send() {
    // Held by handlers' futures, which axum requires to be Send.
    is_send::<tether::axum::WebSocketUpgrade>();
}

mod tether_proto_connection {
    pub(crate) use tether::tether_proto::Connection;
}

fn is_send_val<T: Send>(_: &T) {}

/// The client's futures can be spawned, whatever they were given.
#[test]
fn client_futures_are_send() {
    let request = tether::http::Request::get("ws://h/").body(()).unwrap();
    is_send_val(&tether::connect(request));
    let (io, _other) = tokio::io::duplex(64);
    is_send_val(&tether::ClientBuilder::new("ws://h/").connect_on(io));
}
