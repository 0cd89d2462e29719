//! Keepalive: websockets' `ping_interval` / `ping_timeout`.
//!
//! The rule, in one place: every `ping_interval` a ping is queued unless one
//! is still unanswered; when its pong has not been received `ping_timeout`
//! after the ping was queued, the peer is declared dead. The driver polls
//! this at its one wait point ([`super::driver`]), so the rule holds whatever
//! the socket is waiting for: input, write space, a flush. A peer that
//! stops reading never receives the ping (it sits behind the bytes it did
//! not read), so it never answers, and is declared dead like a silent one.
//!
//! Pongs are seen by whoever reads the connection (`recv`, or the reader
//! half): a connection that nobody reads cannot see its pongs either, and is
//! declared dead at the timeout, as in websockets once its queue is full.

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// What the keepalive asks the driver to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tick {
    /// Nothing to do until a timer fires.
    Idle,
    /// Queue a ping with this payload.
    Ping(Bytes),
    /// No pong within this timeout: fail the connection with 1011.
    Dead(Duration),
}

/// The keepalive state of one connection. Created at the first wait, so a
/// connection that never waits costs nothing.
pub(super) struct Keepalive {
    interval: Duration,
    timeout: Option<Duration>,
    next_ping: Pin<Box<Sleep>>,
    /// The payload counter and send time of the ping awaiting its pong.
    awaiting: Option<(u32, Instant)>,
    deadline: Option<Pin<Box<Sleep>>>,
    counter: u32,
    latency: Option<Duration>,
}

impl Keepalive {
    /// Pings every `interval`; declares the peer dead after `timeout`
    /// without a pong (`None`: never).
    pub(super) fn new(interval: Duration, timeout: Option<Duration>) -> Self {
        Keepalive {
            interval,
            timeout,
            next_ping: Box::pin(tokio::time::sleep(interval)),
            awaiting: None,
            deadline: None,
            counter: 0,
            latency: None,
        }
    }

    /// Polls the timers, registering `cx` with them.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Tick {
        if let Some(d) = &mut self.deadline {
            if d.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                return Tick::Dead(self.timeout.unwrap_or_default());
            }
        }
        let mut tick = Tick::Idle;
        // A loop, so the timer is re-armed and registered before returning.
        while self.next_ping.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            self.next_ping.as_mut().reset(now + self.interval);
            if self.awaiting.is_some() {
                continue; // one ping in flight at a time
            }
            self.counter = self.counter.wrapping_add(1);
            self.awaiting = Some((self.counter, now));
            if let Some(t) = self.timeout {
                let mut d = Box::pin(tokio::time::sleep(t));
                let _ = d.as_mut().poll(cx);
                self.deadline = Some(d);
            }
            tracing::debug!(target: "tether::keepalive", ping = self.counter, "keepalive ping");
            tick = Tick::Ping(Bytes::copy_from_slice(&self.counter.to_be_bytes()));
        }
        tick
    }

    /// A pong arrived: when it answers the ping in flight, the peer is alive
    /// and the round trip is measured.
    pub(super) fn on_pong(&mut self, payload: &[u8]) {
        if let Some((n, at)) = self.awaiting {
            if payload == n.to_be_bytes() {
                let latency = at.elapsed();
                tracing::debug!(target: "tether::keepalive", ping = n, ?latency, "keepalive pong");
                self.latency = Some(latency);
                self.awaiting = None;
                self.deadline = None;
            }
        }
    }

    /// The round trip of the last answered ping.
    pub(super) fn latency(&self) -> Option<Duration> {
        self.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn tick(ka: &mut Keepalive) -> Tick {
        ka.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_and_dies_without_a_pong() {
        let mut ka = Keepalive::new(Duration::from_secs(20), Some(Duration::from_secs(5)));
        assert_eq!(tick(&mut ka), Tick::Idle);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(tick(&mut ka), Tick::Ping(Bytes::from_static(&[0, 0, 0, 1])));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(tick(&mut ka), Tick::Idle);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(tick(&mut ka), Tick::Dead(Duration::from_secs(5)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pong_keeps_it_alive_and_measures_latency() {
        let mut ka = Keepalive::new(Duration::from_secs(20), Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(20)).await;
        let Tick::Ping(p) = tick(&mut ka) else {
            panic!("no ping")
        };
        tokio::time::advance(Duration::from_secs(2)).await;
        ka.on_pong(b"other"); // not ours: ignored
        assert_eq!(ka.latency(), None);
        ka.on_pong(&p);
        assert_eq!(ka.latency(), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(tick(&mut ka), Tick::Idle);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(tick(&mut ka), Tick::Ping(Bytes::from_static(&[0, 0, 0, 2])));
    }

    #[tokio::test(start_paused = true)]
    async fn one_ping_in_flight_and_no_timeout_when_disabled() {
        let mut ka = Keepalive::new(Duration::from_secs(1), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(tick(&mut ka), Tick::Ping(_)));
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(tick(&mut ka), Tick::Idle, "no second ping, never dead");
        }
    }
}
