//! The persistent session: queueing while disconnected, on_connect before
//! queued messages, reconnecting after a restart, stopping on fatal close
//! codes, user close, reconnect_now, and resending what was not written.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether::reconnect::{Backoff, ReconnectPolicy, SessionState};
use tether::{ClientBuilder, CloseCode, ErrorKind, Message, ServerBuilder, WebSocket};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn fast_policy() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .backoff(Backoff {
            initial_max: Duration::from_millis(50),
            min: Duration::from_millis(20),
            factor: 2.0,
            max: Duration::from_millis(200),
            jitter: 0.5,
        })
        .seed(1)
}

type Log = Arc<Mutex<Vec<(usize, String)>>>;

/// A server that logs (connection number, text) for every text message;
/// `behave` decides what each connection does after logging.
async fn logging_server<F>(addr: &str, behave: F) -> (tether::Server, Log)
where
    F: Fn(usize, &str) -> Option<CloseCode> + Send + Sync + 'static,
{
    let log: Log = Arc::default();
    let conns = Arc::new(Mutex::new(0usize));
    let behave = Arc::new(behave);
    let l2 = log.clone();
    let server = ServerBuilder::new()
        .serve(addr.to_string(), move |mut ws: WebSocket| {
            let log = l2.clone();
            let conns = conns.clone();
            let behave = behave.clone();
            async move {
                let n = {
                    let mut c = conns.lock().unwrap();
                    *c += 1;
                    *c
                };
                while let Some(Ok(m)) = ws.recv().await {
                    if let Message::Text(t) = m {
                        log.lock().unwrap().push((n, t.to_string()));
                        if let Some(code) = behave(n, &t) {
                            let _ = ws.close(code, "scripted").await;
                            return;
                        }
                        let _ = ws.send(Message::text(format!("echo {t}"))).await;
                    }
                }
            }
        })
        .await
        .unwrap();
    (server, log)
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn wait_for<F: Fn() -> bool>(f: F) {
    let deadline = tokio::time::Instant::now() + T;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn messages_sent_while_disconnected_arrive_in_order_after_on_connect() {
    let addr = free_addr();
    let session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .on_connect(|mut ws| async move {
            ws.send(Message::text("hello from on_connect")).await?;
            Ok(ws)
        })
        .start();
    for i in 0..5 {
        session
            .send(Message::text(format!("queued {i}")))
            .await
            .unwrap();
    }
    // Nobody listens yet: the session is connecting or waiting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!matches!(session.state(), SessionState::Open { .. }));
    let (server, log) = logging_server(&addr, |_, _| None).await;
    wait_for(|| log.lock().unwrap().len() == 6).await;
    let texts: Vec<String> = log.lock().unwrap().iter().map(|(_, t)| t.clone()).collect();
    let mut expected = vec!["hello from on_connect".to_string()];
    expected.extend((0..5).map(|i| format!("queued {i}")));
    assert_eq!(texts, expected);
    assert!(matches!(session.state(), SessionState::Open { .. }));
    drop(session);
    server.shutdown().await;
}

#[tokio::test]
async fn server_restart_1012_reconnects_and_delivery_goes_on() {
    let addr = free_addr();
    // The first connection is "restarted" after its first message.
    let (server, log) = logging_server(&addr, |conn, _| {
        (conn == 1).then_some(CloseCode::SERVICE_RESTART)
    })
    .await;
    let mut session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .start();
    session.send(Message::text("one")).await.unwrap();
    wait_for(|| log.lock().unwrap().len() == 1).await;
    // Sent around the restart: delivered on the second connection.
    session.send(Message::text("two")).await.unwrap();
    let echo = timeout(T, session.recv()).await.unwrap().unwrap();
    assert_eq!(echo, Message::text("echo two"));
    let entries = log.lock().unwrap().clone();
    assert_eq!(
        entries,
        vec![(1, "one".to_string()), (2, "two".to_string())]
    );
    drop(session);
    server.shutdown().await;
}

#[tokio::test]
async fn fatal_close_code_1008_stops_the_session_with_a_clear_error() {
    let addr = free_addr();
    let (server, _log) = logging_server(&addr, |_, _| Some(CloseCode::POLICY_VIOLATION)).await;
    let mut session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .start();
    session.send(Message::text("bad")).await.unwrap();
    assert!(
        timeout(T, session.recv()).await.unwrap().is_none(),
        "the session ends"
    );
    match session.state() {
        SessionState::Stopped { error: Some(e) } => {
            assert_eq!(e.kind(), ErrorKind::Closed);
            assert_eq!(e.close_code(), Some(CloseCode::POLICY_VIOLATION));
            assert!(e.to_string().contains("1008"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let err = session.send(Message::text("after")).await.unwrap_err();
    assert_eq!(err.close_code(), Some(CloseCode::POLICY_VIOLATION), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn user_close_never_reconnects() {
    let addr = free_addr();
    let (server, log) = logging_server(&addr, |_, _| None).await;
    let session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .start();
    session.send(Message::text("hi")).await.unwrap();
    wait_for(|| log.lock().unwrap().len() == 1).await;
    let left = timeout(T, session.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap();
    assert!(left.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(log.lock().unwrap().iter().all(|(conn, _)| *conn == 1));
    server.shutdown().await;
}

/// Every end of a connection is a `Closed` event, with the code once (not
/// again in the reason) and who closed: the server's 1012, then the
/// user's own close.
#[tokio::test]
async fn every_end_is_a_closed_event_the_users_close_included() {
    use tether::reconnect::Event;
    use tether::Initiator;
    let addr = free_addr();
    let (server, log) = logging_server(&addr, |conn, _| {
        (conn == 1).then_some(CloseCode::SERVICE_RESTART)
    })
    .await;
    let closed = Arc::new(Mutex::new(Vec::new()));
    let c2 = closed.clone();
    let policy = fast_policy().on_event(move |ev| {
        if let Event::Closed {
            code,
            reason,
            initiator,
            ..
        } = ev
        {
            c2.lock().unwrap().push((*code, reason.clone(), *initiator));
        }
    });
    let mut session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(policy)
        .start();
    session.send(Message::text("one")).await.unwrap();
    wait_for(|| log.lock().unwrap().len() == 1).await;
    session.send(Message::text("two")).await.unwrap();
    let echo = timeout(T, session.recv()).await.unwrap().unwrap();
    assert_eq!(echo, Message::text("echo two"));
    timeout(T, session.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap();
    assert_eq!(
        *closed.lock().unwrap(),
        vec![
            (
                Some(CloseCode::SERVICE_RESTART),
                "scripted".to_string(),
                Some(Initiator::Remote)
            ),
            (
                Some(CloseCode::NORMAL),
                "bye".to_string(),
                Some(Initiator::Local)
            ),
        ]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn reconnect_now_cuts_a_long_wait_short() {
    let addr = free_addr();
    let policy = ReconnectPolicy::default()
        .backoff(Backoff {
            initial_max: Duration::from_secs(60),
            min: Duration::from_secs(60),
            ..Backoff::default()
        })
        .seed(3);
    let session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(policy)
        .start();
    let mut watch = session.watch();
    // Refused, then a long wait.
    timeout(
        T,
        watch.wait_for(|s| matches!(s, SessionState::Waiting { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    if let SessionState::Waiting { delay, cause } = session.state() {
        assert!(!cause.is_empty());
        assert!(delay > Duration::from_millis(100) || delay <= Duration::from_secs(60));
    }
    let (server, log) = logging_server(&addr, |_, _| None).await;
    session.reconnect_now();
    timeout(
        Duration::from_secs(5),
        watch.wait_for(|s| matches!(s, SessionState::Open { .. })),
    )
    .await
    .expect("connected soon after reconnect_now")
    .unwrap();
    session.send(Message::text("back")).await.unwrap();
    wait_for(|| log.lock().unwrap().len() == 1).await;
    drop(session);
    server.shutdown().await;
}

/// The first connection's server stops reading, then drops TCP: messages
/// stuck in tether's write buffer are sent again on the next connection,
/// so the second connection sees a gap-free run up to the last message.
#[tokio::test]
async fn messages_not_fully_written_are_sent_again_after_reconnecting() {
    let addr = free_addr();
    let got: Arc<Mutex<Vec<u32>>> = Arc::default();
    let conns = Arc::new(Mutex::new(0));
    let g2 = got.clone();
    let server = ServerBuilder::new()
        .max_message_size(None)
        .serve(addr.clone(), move |mut ws: WebSocket| {
            let got = g2.clone();
            let conns = conns.clone();
            async move {
                let n = {
                    let mut c = conns.lock().unwrap();
                    *c += 1;
                    *c
                };
                if n == 1 {
                    // Never read; drop the connection after a while.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    drop(ws);
                    return;
                }
                while let Some(Ok(m)) = ws.recv().await {
                    if let Message::Binary(b) = m {
                        got.lock()
                            .unwrap()
                            .push(u32::from_be_bytes(b[..4].try_into().unwrap()));
                    }
                }
            }
        })
        .await
        .unwrap();
    let n = 64u32;
    let session = ClientBuilder::new(format!("ws://{addr}/"))
        .write_buffer_limit(64 * 1024)
        .session(fast_policy())
        .queue_capacity(256)
        .start();
    for i in 0..n {
        let mut payload = vec![0u8; 512 * 1024];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        session.send(Message::binary(payload)).await.unwrap();
    }
    wait_for(|| got.lock().unwrap().last() == Some(&(n - 1))).await;
    let second = got.lock().unwrap().clone();
    assert!(!second.is_empty());
    let first = second[0];
    let expected: Vec<u32> = (first..n).collect();
    assert_eq!(second, expected, "a gap-free run up to the last message");
    assert!(first > 0, "the first connection took some messages");
    drop(session);
    server.shutdown().await;
}

/// `Connections::next` in a `select!` that keeps cancelling it: the wait and
/// the attempt in progress carry on, and the connection still arrives.
#[tokio::test]
async fn connections_next_is_cancel_safe() {
    let addr = free_addr();
    let mut conns = ClientBuilder::new(format!("ws://{addr}/")).reconnecting(fast_policy());
    let server_addr = addr.clone();
    let starter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        logging_server(&server_addr, |_, _| None).await
    });
    let mut cancelled = 0;
    let ws = loop {
        tokio::select! {
            c = conns.next() => break c.unwrap().unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(7)) => cancelled += 1,
        }
    };
    assert!(
        cancelled > 10,
        "next() was cancelled many times ({cancelled})"
    );
    assert!(
        conns.attempts() >= 2,
        "it kept retrying across cancellations"
    );
    drop(ws);
    let (server, _) = starter.await.unwrap();
    server.shutdown().await;
}

/// `Session::recv` in a `select!` that keeps cancelling it loses nothing,
/// and a `Session::send` cancelled while the queue is full queues nothing.
#[tokio::test]
async fn session_recv_and_send_are_cancel_safe() {
    let addr = free_addr();
    let (server, log) = logging_server(&addr, |_, _| None).await;
    // Room for every message both ways: the session waits on a full receive
    // queue, so an application that only sends would stall it.
    let mut session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .queue_capacity(64)
        .start();
    for i in 0..50 {
        session.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    let mut got = Vec::new();
    let mut cancelled = 0;
    while got.len() < 50 {
        tokio::select! {
            m = session.recv() => got.push(m.unwrap().as_text().unwrap().to_string()),
            _ = tokio::task::yield_now() => cancelled += 1,
        }
    }
    let expected: Vec<String> = (0..50).map(|i| format!("echo m{i}")).collect();
    assert_eq!(got, expected);
    assert!(cancelled > 0);
    drop(session);
    server.shutdown().await;

    // Nobody listens: the queue (capacity 1) fills, and a cancelled send
    // leaves nothing behind.
    let addr = free_addr();
    let session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .queue_capacity(1)
        .start();
    session.send(Message::text("first")).await.unwrap();
    let mut cancelled_sends = 0;
    for i in 0..3 {
        let r = timeout(
            Duration::from_millis(50),
            session.send(Message::text(format!("dropped {i}"))),
        )
        .await;
        if r.is_err() {
            cancelled_sends += 1;
        }
    }
    assert!(cancelled_sends >= 2, "the full queue made send wait");
    let left = timeout(T, session.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    let left: Vec<String> = left
        .iter()
        .map(|m| m.as_text().unwrap().to_string())
        .collect();
    assert_eq!(
        left,
        vec!["first".to_string()],
        "cancelled sends queued nothing"
    );
    let _ = log;
}

/// The send queue is bounded by bytes too: with nobody listening and a
/// 1,000-byte queue, a second 600-byte message waits, and only the first is
/// left when the session closes.
#[tokio::test]
async fn send_queue_is_bounded_by_bytes() {
    let addr = free_addr();
    let session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .queue_bytes(1000)
        .start();
    session.send(Message::binary(vec![1u8; 600])).await.unwrap();
    let second = timeout(
        Duration::from_millis(200),
        session.send(Message::binary(vec![2u8; 600])),
    )
    .await;
    assert!(
        second.is_err(),
        "600 + 600 bytes do not fit in 1,000: send waits"
    );
    // Small messages still fit in what is left.
    session.send(Message::binary(vec![3u8; 300])).await.unwrap();
    let left = timeout(T, session.close(CloseCode::NORMAL, ""))
        .await
        .unwrap();
    let sizes: Vec<usize> = left.iter().map(|m| m.len()).collect();
    assert_eq!(sizes, vec![600, 300]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_from_several_tasks_deliver_each_tasks_messages_in_order() {
    let addr = free_addr();
    let (server, log) = logging_server(&addr, |_, _| None).await;
    let session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .start();
    let (tasks, per_task) = (6, 100);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let tx = session.sender();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                tx.send(Message::text(format!("{t}:{i}"))).await.unwrap();
            }
        }));
    }
    for h in handles {
        timeout(T, h).await.unwrap().unwrap();
    }
    wait_for(|| log.lock().unwrap().len() == tasks * per_task).await;
    let mut next = vec![0; tasks];
    for (_, text) in log.lock().unwrap().iter() {
        let (t, i) = text.split_once(':').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "task {t} out of order");
        next[t] += 1;
    }
    // A sender refuses control messages, as the session does.
    let e = session
        .sender()
        .send(Message::Close(None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    drop(session);
    server.shutdown().await;
}

#[tokio::test]
async fn a_sender_fails_once_the_session_is_closed() {
    let addr = free_addr();
    let (server, _log) = logging_server(&addr, |_, _| None).await;
    let session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .start();
    let tx = session.sender();
    tx.send(Message::text("before")).await.unwrap();
    session.close(CloseCode::NORMAL, "bye").await;
    let e = tx.send(Message::text("after")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_is_a_stream_of_received_messages() {
    use futures_util::StreamExt;
    let addr = free_addr();
    let (server, _log) = logging_server(&addr, |_, _| None).await;
    let mut session = ClientBuilder::new(format!("ws://{addr}/"))
        .session(fast_policy())
        .start();
    for i in 0..3 {
        session.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..3 {
        let m = timeout(T, session.next()).await.unwrap().unwrap();
        assert_eq!(m, Message::text(format!("echo m{i}")));
    }
    // Stopped: the stream ends.
    let mut stopped = ClientBuilder::new("ws://127.0.0.1:9/")
        .session(ReconnectPolicy::default().max_attempts(Some(1)))
        .start();
    assert_eq!(timeout(T, stopped.next()).await.unwrap(), None);
    drop(session);
    server.shutdown().await;
}
