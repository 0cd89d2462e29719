//! [`Topic`] on the [`InProcess`](crate::hub::InProcess) backend, over
//! in-memory pipes: replay from the ring, skipping what a member has, gaps
//! when the ring no longer reaches back, and what a member gets between
//! its handshake and its joining.

use crate::hub::{Hub, InProcess, Topic};
use crate::resume::{self, Frame, Gap, MessageId};
use crate::{WebSocket, WebSocketConfig};
use std::time::{Duration, Instant};
use tether_proto::handshake::Request;
use tether_proto::{Message, Role};
use tokio::io::DuplexStream;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

/// A hub whose topics keep `ring` recent messages, with an in-process
/// history of `history`.
fn hub(ring: usize, history: usize) -> Hub {
    Hub::builder()
        .backend(InProcess::new().history(history))
        .recent_messages(ring)
        .build()
}

/// A server socket as a tether server hands it over (request target,
/// subprotocol, the instant of the upgrade when given), and its client end.
fn pair(
    target: &str,
    framed: bool,
    upgraded_at: Option<Instant>,
) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let mut server = WebSocket::from_raw(a, Role::Server, WebSocketConfig::server());
    server.set_request(Request {
        method: "GET".into(),
        target: target.into(),
        headers: Default::default(),
    });
    if framed {
        server.set_subprotocol(Some(resume::SUBPROTOCOL.into()));
    }
    if let Some(at) = upgraded_at {
        server.set_upgraded_at(at);
    }
    let client = WebSocket::from_raw(b, Role::Client, WebSocketConfig::default());
    (server, client)
}

/// Joins `ws` to `topic` and keeps its member reading (and writing out
/// what the topic queues).
async fn join(topic: &Topic, ws: WebSocket<DuplexStream>) {
    let mut member = topic.join(ws).await;
    tokio::spawn(async move { while member.recv().await.is_some() {} });
}

async fn publish_n(topic: &Topic, from: usize, to: usize) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for i in from..to {
        ids.push(topic.publish(Message::text(i.to_string())).await.unwrap());
    }
    ids
}

/// The next frame a framed client gets.
async fn next(c: &mut WebSocket<DuplexStream>) -> Frame {
    let m = timeout(T, c.recv()).await.unwrap().unwrap().unwrap();
    Frame::parse(&m).unwrap()
}

fn message(id: MessageId, i: usize) -> Frame {
    Frame::Message {
        id: Some(id),
        message: Message::text(i.to_string()),
    }
}

/// A Session's policy that reconnects within tens of milliseconds.
fn fast_policy() -> crate::reconnect::ReconnectPolicy {
    crate::reconnect::ReconnectPolicy::default().backoff(crate::reconnect::Backoff {
        initial_max: Duration::from_millis(20),
        min: Duration::from_millis(20),
        factor: 2.0,
        max: Duration::from_millis(100),
        jitter: 0.5,
    })
}

/// Nothing more arrives for a moment.
async fn quiet(c: &mut WebSocket<DuplexStream>) {
    assert!(
        timeout(Duration::from_millis(100), c.recv()).await.is_err(),
        "nothing more"
    );
}

#[tokio::test]
async fn a_resuming_member_gets_what_it_missed_from_the_ring_then_live_ones_once() {
    let hub = hub(100, 100);
    let topic = hub.topic("t").unwrap();
    let ids = publish_n(&topic, 0, 10).await;
    let (server, mut client) = pair(&format!("/t?last_id={}", ids[3]), true, None);
    join(&topic, server).await;
    for (i, id) in ids.iter().enumerate().skip(4) {
        assert_eq!(next(&mut client).await, message(*id, i));
    }
    // Then its position: where its next reconnect resumes.
    assert_eq!(next(&mut client).await, Frame::Position(ids[9]));
    // Live ones follow, each once.
    let live = publish_n(&topic, 10, 12).await;
    assert_eq!(next(&mut client).await, message(live[0], 10));
    assert_eq!(next(&mut client).await, message(live[1], 11));
    quiet(&mut client).await;
}

#[tokio::test]
async fn a_member_that_has_every_message_gets_only_the_next_ones() {
    let hub = hub(100, 100);
    let topic = hub.topic("t").unwrap();
    let ids = publish_n(&topic, 0, 5).await;
    let (server, mut client) = pair(&format!("/t?last_id={}", ids[4]), true, None);
    join(&topic, server).await;
    assert_eq!(next(&mut client).await, Frame::Position(ids[4]));
    let live = publish_n(&topic, 5, 6).await;
    assert_eq!(next(&mut client).await, message(live[0], 5));
    quiet(&mut client).await;
}

#[tokio::test]
async fn the_backend_history_serves_what_the_ring_no_longer_holds() {
    // The ring holds 3, the backend 50: a resume from the 2nd message is
    // served from the backend, with no gap.
    let hub = hub(3, 50);
    let topic = hub.topic("t").unwrap();
    let ids = publish_n(&topic, 0, 20).await;
    let (server, mut client) = pair(&format!("/t?last_id={}", ids[1]), true, None);
    join(&topic, server).await;
    for (i, id) in ids.iter().enumerate().skip(2) {
        assert_eq!(next(&mut client).await, message(*id, i));
    }
    assert_eq!(next(&mut client).await, Frame::Position(ids[19]));
    quiet(&mut client).await;
}

#[tokio::test]
async fn a_gap_when_neither_ring_nor_history_reaches_back() {
    let hub = hub(5, 5);
    let topic = hub.topic("t").unwrap();
    let ids = publish_n(&topic, 0, 20).await;
    let (server, mut client) = pair(&format!("/t?last_id={}", ids[2]), true, None);
    join(&topic, server).await;
    // Lost: 3 to 14; the gap names the first id still held.
    assert_eq!(
        next(&mut client).await,
        Frame::Gap(Gap {
            after: ids[2],
            before: Some(ids[15]),
        })
    );
    for (i, id) in ids.iter().enumerate().skip(15) {
        assert_eq!(next(&mut client).await, message(*id, i));
    }
    assert_eq!(next(&mut client).await, Frame::Position(ids[19]));
    quiet(&mut client).await;
}

#[tokio::test]
async fn an_id_from_before_the_backend_started_is_a_gap() {
    let hub = hub(100, 100);
    let topic = hub.topic("t").unwrap();
    let ids = publish_n(&topic, 0, 2).await;
    let old = MessageId::new(1, 0);
    let (server, mut client) = pair(&format!("/t?last_id={old}"), true, None);
    join(&topic, server).await;
    assert_eq!(
        next(&mut client).await,
        Frame::Gap(Gap {
            after: old,
            before: Some(ids[0]),
        })
    );
    assert_eq!(next(&mut client).await, message(ids[0], 0));
    assert_eq!(next(&mut client).await, message(ids[1], 1));
    assert_eq!(next(&mut client).await, Frame::Position(ids[1]));
}

#[tokio::test]
async fn plain_members_get_bare_messages_and_nothing_from_before_they_joined() {
    let hub = hub(100, 100);
    let topic = hub.topic("t").unwrap();
    publish_n(&topic, 0, 3).await;
    let (server, mut client) = pair("/t?last_id=1-0", false, None);
    join(&topic, server).await;
    publish_n(&topic, 3, 4).await;
    let m = timeout(T, client.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        m,
        Message::text("3"),
        "bare, and no replay without the subprotocol"
    );
    quiet(&mut client).await;
}

// The window between the 101 and the join: a tether server sends the 101,
// then runs the handler, which joins the topic. A message delivered in
// between used to be lost without a word. Here the handler publishes in
// that window (as another connection's publish would land there).

#[tokio::test]
async fn messages_delivered_between_the_handshake_and_the_join_reach_a_new_member() {
    let hub = hub(100, 100);
    let topic = hub.topic("t").unwrap();
    let before = publish_n(&topic, 0, 2).await;
    let handshake = Instant::now();
    let (framed, mut framed_client) = pair("/t", true, Some(handshake));
    let (plain, mut plain_client) = pair("/t", false, Some(handshake));
    let window = publish_n(&topic, 2, 5).await;
    join(&topic, framed).await;
    join(&topic, plain).await;
    let live = publish_n(&topic, 5, 6).await;
    for (i, id) in window.iter().chain(&live).enumerate() {
        assert_eq!(next(&mut framed_client).await, message(*id, i + 2));
        if i + 1 == window.len() {
            // The replay ends with the framed member's position.
            assert_eq!(next(&mut framed_client).await, Frame::Position(*id));
        }
        let m = timeout(T, plain_client.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m, Message::text((i + 2).to_string()));
    }
    quiet(&mut framed_client).await;
    quiet(&mut plain_client).await;
    assert!(!before.is_empty());
}

#[tokio::test]
async fn a_gap_when_the_ring_lost_messages_delivered_after_the_handshake() {
    let hub = hub(3, 3);
    let topic = hub.topic("t").unwrap();
    let (server, mut client) = pair("/t", true, Some(Instant::now()));
    let window = publish_n(&topic, 0, 6).await;
    join(&topic, server).await;
    assert_eq!(
        next(&mut client).await,
        Frame::Gap(Gap {
            after: MessageId::ZERO,
            before: Some(window[3]),
        })
    );
    for (i, id) in window.iter().enumerate().skip(3) {
        assert_eq!(next(&mut client).await, message(*id, i));
    }
    assert_eq!(next(&mut client).await, Frame::Position(window[5]));
    quiet(&mut client).await;
}

#[tokio::test]
async fn a_server_handshake_records_the_upgrade_before_the_101() {
    // Through a real handshake: the handler publishes before joining, and
    // the client, open since its 101, still gets the message.
    let hub = hub(100, 100);
    let h = hub.clone();
    let server = crate::ServerBuilder::new()
        .subprotocols([resume::SUBPROTOCOL])
        .serve("127.0.0.1:0", move |ws| {
            let topic = h.topic("t").unwrap();
            async move {
                topic.publish(Message::text("in the window")).await.unwrap();
                let mut member = topic.join(ws).await;
                while member.recv().await.is_some() {}
            }
        })
        .await
        .unwrap();
    let mut ws = crate::ClientBuilder::new(format!("ws://{}/t", server.local_addr()))
        .subprotocol(resume::SUBPROTOCOL)
        .connect()
        .await
        .unwrap();
    let m = timeout(T, ws.recv()).await.unwrap().unwrap().unwrap();
    match Frame::parse(&m).unwrap() {
        Frame::Message { id, message } => {
            assert_eq!(message, Message::text("in the window"));
            assert_eq!(id, hub.topic("t").unwrap().last_id());
        }
        f => panic!("{f:?}"),
    }
    drop(ws);
    server.shutdown().await;
}

// The position notice: a resuming client that has not received a message
// yet learns where it stands, so that a reconnect before its first message
// loses nothing.

#[tokio::test]
async fn a_new_member_learns_its_position_and_resumes_from_it_with_nothing_lost() {
    let hub = hub(100, 100);
    let topic = hub.topic("t").unwrap();
    // An empty topic: the position is a mark before every message.
    let (server, mut client) = pair("/t", true, Some(Instant::now()));
    join(&topic, server).await;
    let Frame::Position(start) = next(&mut client).await else {
        panic!("a position first");
    };
    drop(client);
    // Published while the client is away, before it received anything.
    let missed = publish_n(&topic, 0, 3).await;
    assert!(missed[0] > start);
    let (server, mut client) = pair(&format!("/t?last_id={start}"), true, None);
    join(&topic, server).await;
    for (i, id) in missed.iter().enumerate() {
        assert_eq!(
            next(&mut client).await,
            message(*id, i),
            "no gap, nothing lost"
        );
    }
    assert_eq!(next(&mut client).await, Frame::Position(missed[2]));
    quiet(&mut client).await;
}

#[tokio::test]
async fn a_new_member_of_a_topic_with_messages_starts_after_the_last() {
    let hub = hub(100, 100);
    let topic = hub.topic("t").unwrap();
    let old = publish_n(&topic, 0, 2).await;
    let (server, mut client) = pair("/t", true, Some(Instant::now()));
    join(&topic, server).await;
    assert_eq!(next(&mut client).await, Frame::Position(old[1]));
    // A plain member gets no position.
    let (plain, mut plain_client) = pair("/t", false, Some(Instant::now()));
    join(&topic, plain).await;
    let live = publish_n(&topic, 2, 3).await;
    assert_eq!(next(&mut client).await, message(live[0], 2));
    let m = timeout(T, plain_client.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m, Message::text("2"));
}

#[tokio::test]
async fn a_session_that_drops_before_its_first_message_resumes_from_its_position() {
    // A real server and a resuming Session: the Session connects to an
    // empty topic, the server goes away before any message, three are
    // published while it is down, and the Session gets all three after
    // the server comes back on the same port.
    let hub = hub(100, 100);
    let serve = |addr: String, hub: Hub| async move {
        crate::ServerBuilder::new()
            .subprotocols([resume::SUBPROTOCOL])
            .serve(addr, move |ws| {
                let topic = hub.topic("t").unwrap();
                async move {
                    let mut member = topic.join(ws).await;
                    while member.recv().await.is_some() {}
                }
            })
            .await
            .unwrap()
    };
    let server = serve("127.0.0.1:0".into(), hub.clone()).await;
    let addr = server.local_addr();
    let policy = fast_policy();
    let mut session = crate::ClientBuilder::new(format!("ws://{addr}/t"))
        .session(policy)
        .resume(true)
        .start();
    let deadline = Instant::now() + T;
    while session.last_id().is_none() {
        assert!(Instant::now() < deadline, "no position received");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.shutdown().await;
    let topic = hub.topic("t").unwrap();
    publish_n(&topic, 0, 3).await;
    let server = serve(addr.to_string(), hub.clone()).await;
    for i in 0..3 {
        let got = timeout(T, session.recv_or_gap()).await.unwrap().unwrap();
        assert_eq!(
            got,
            resume::Received::Message(Message::text(i.to_string())),
            "every message published while away, and no gap"
        );
    }
    session.close(crate::CloseCode::NORMAL, "").await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_that_drops_before_it_has_a_position_reports_a_gap() {
    // A server that speaks the protocol but closes the first connection
    // before saying anything: the Session cannot know what it missed.
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    let server = crate::ServerBuilder::new()
        .subprotocols([resume::SUBPROTOCOL])
        .serve("127.0.0.1:0", move |mut ws| {
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n > 0 {
                    let _ = ws.send(Message::text("m 5-0\nhello")).await;
                    while ws.recv().await.is_some() {}
                }
            }
        })
        .await
        .unwrap();
    let policy = fast_policy();
    let mut session = crate::ClientBuilder::new(format!("ws://{}/t", server.local_addr()))
        .session(policy)
        .resume(true)
        .start();
    let got = timeout(T, session.recv_or_gap()).await.unwrap().unwrap();
    assert_eq!(
        got,
        resume::Received::Gap(Gap {
            after: MessageId::ZERO,
            before: None
        })
    );
    let got = timeout(T, session.recv_or_gap()).await.unwrap().unwrap();
    assert_eq!(got, resume::Received::Message(Message::text("hello")));
    assert_eq!(session.last_id(), Some(MessageId::new(5, 0)));
    session.close(crate::CloseCode::NORMAL, "").await;
    server.shutdown().await;
}

/// A backend whose stream is ahead of what reached this process: its
/// position is the id `ahead`, and the test delivers by hand, as pub/sub
/// would, messages still on their way.
struct Ahead {
    ahead: MessageId,
    sink: std::sync::Arc<std::sync::Mutex<Option<crate::hub::TopicSink>>>,
}

impl crate::hub::Backend for Ahead {
    fn publish<'a>(
        &'a self,
        _topic: &'a str,
        _msg: &'a Message,
    ) -> crate::hub::BoxFuture<'a, crate::Result<MessageId>> {
        Box::pin(async { Err(crate::Error::msg(crate::ErrorKind::Backend, "unused")) })
    }

    fn subscribe(&self, _topic: &str, sink: crate::hub::TopicSink) {
        *self.sink.lock().unwrap() = Some(sink);
    }

    fn history<'a>(
        &'a self,
        _topic: &'a str,
        _after: MessageId,
    ) -> crate::hub::BoxFuture<'a, crate::Result<crate::hub::History>> {
        Box::pin(async { Ok(crate::hub::History::default()) })
    }

    fn position<'a>(
        &'a self,
        _topic: &'a str,
    ) -> crate::hub::BoxFuture<'a, crate::Result<Option<MessageId>>> {
        let at = self.ahead;
        Box::pin(async move { Ok(Some(at)) })
    }
}

#[tokio::test]
async fn nothing_at_or_below_the_position_follows_it() {
    let ahead = MessageId::new(100, 5);
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let hub = Hub::builder()
        .backend(Ahead {
            ahead,
            sink: slot.clone(),
        })
        .build();
    let topic = hub.topic("t").unwrap();
    let (server, mut client) = pair("/t", true, Some(Instant::now()));
    join(&topic, server).await;
    assert_eq!(next(&mut client).await, Frame::Position(ahead));
    // Still on their way when the client joined: one older than its
    // position, then a newer one. Only the newer one reaches it.
    let sink = slot.lock().unwrap().clone().unwrap();
    sink.deliver(MessageId::new(100, 4), &Message::text("old"));
    sink.deliver(MessageId::new(100, 6), &Message::text("new"));
    assert_eq!(
        next(&mut client).await,
        Frame::Message {
            id: Some(MessageId::new(100, 6)),
            message: Message::text("new"),
        }
    );
    quiet(&mut client).await;
}
