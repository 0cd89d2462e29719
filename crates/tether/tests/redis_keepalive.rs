//! The Redis backend's keepalive: a Redis that stops answering (frozen
//! with SIGSTOP: no RST, no FIN, like a silent network partition) is
//! noticed by the PING on the subscription, without any publish, and the
//! backend reconnects by itself once it answers again.
//!
//! Needs `redis-server` (`interop/install-redis.sh`, run by
//! `scripts/test.sh`).
#![cfg(feature = "redis")]

use std::process::Stdio;
use std::time::Duration;
use tether::hub::RedisBackend;
use tokio::process::Command;
use tokio::time::{sleep, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn until(what: &str, within: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test]
async fn a_frozen_redis_is_noticed_by_the_ping_and_the_backend_comes_back() {
    let port = free_port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server (install it with interop/install-redis.sh)");
    let pid = redis.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "redis-server did not start");
        sleep(Duration::from_millis(20)).await;
    }
    let backend = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .ping_interval(Duration::from_millis(100))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    until("connected", Duration::from_secs(10), || {
        backend.is_connected()
    })
    .await;
    // Idle for many ping intervals: every ping is answered.
    sleep(Duration::from_millis(800)).await;
    assert!(
        backend.is_connected(),
        "pings are answered while Redis is up"
    );
    assert_eq!(backend.outages(), 0);
    signal(pid, "-STOP");
    // No publish, no command: only the keepalive can notice.
    until("outage noticed", Duration::from_secs(3), || {
        !backend.is_connected()
    })
    .await;
    assert_eq!(backend.outages(), 1);
    signal(pid, "-CONT");
    until("reconnected", Duration::from_secs(15), || {
        backend.is_connected()
    })
    .await;
    let _ = redis.kill().await;
}
