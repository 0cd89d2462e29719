//! A message channel bounded by bytes as well as by count: what a peer (or
//! an application that stops reading) can make us hold is capped in memory,
//! not in messages of any size.
//!
//! Each queued message holds permits of a byte semaphore for its payload
//! length; receiving it gives them back. A message larger than the whole
//! byte cap takes every permit, so it waits for an empty queue instead of
//! waiting forever.

use crate::resume::{Gap, Received};
use std::sync::Arc;
use tether_proto::Message;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// A queued message and the bytes it holds.
struct Item {
    msg: Message,
    /// A gap notice instead of a message (then `msg` is empty).
    gap: Option<Gap>,
    _bytes: OwnedSemaphorePermit,
}

/// The sending side.
#[derive(Clone)]
pub(crate) struct Sender {
    tx: mpsc::Sender<Item>,
    bytes: Arc<Semaphore>,
    max: u32,
}

/// The receiving side.
pub(crate) struct Receiver {
    rx: mpsc::Receiver<Item>,
}

/// A channel of at most `count` messages and `bytes` payload bytes.
pub(crate) fn channel(count: usize, bytes: usize) -> (Sender, Receiver) {
    let max = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
    let (tx, rx) = mpsc::channel(count.max(1));
    let sender = Sender {
        tx,
        bytes: Arc::new(Semaphore::new(max as usize)),
        max,
    };
    (sender, Receiver { rx })
}

impl Sender {
    fn cost(&self, msg: &Message) -> u32 {
        u32::try_from(msg.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.max)
    }

    /// Queues `msg`, waiting while the queue is full (by count or bytes).
    /// Gives the message back when the receiver is gone.
    ///
    /// Cancel-safe: a cancelled call queued nothing.
    pub(crate) async fn send(&self, msg: Message) -> Result<(), Message> {
        let Ok(slot) = self.tx.reserve().await else {
            return Err(msg);
        };
        let Ok(bytes) = self.bytes.clone().acquire_many_owned(self.cost(&msg)).await else {
            return Err(msg);
        };
        slot.send(Item {
            msg,
            gap: None,
            _bytes: bytes,
        });
        Ok(())
    }

    /// Queues a gap notice, in order with the messages. Gives it back when
    /// the receiver is gone.
    pub(crate) async fn send_gap(&self, gap: Gap) -> Result<(), Gap> {
        let Ok(slot) = self.tx.reserve().await else {
            return Err(gap);
        };
        let Ok(bytes) = self.bytes.clone().acquire_many_owned(1).await else {
            return Err(gap);
        };
        slot.send(Item {
            msg: Message::binary(Vec::new()),
            gap: Some(gap),
            _bytes: bytes,
        });
        Ok(())
    }

    /// Queues `msg` if there is room now; gives it back otherwise.
    #[cfg_attr(not(test), allow(dead_code))] // for fan-out, where a slow peer must not block
    pub(crate) fn try_send(&self, msg: Message) -> Result<(), Message> {
        let Ok(slot) = self.tx.try_reserve() else {
            return Err(msg);
        };
        match self.bytes.clone().try_acquire_many_owned(self.cost(&msg)) {
            Ok(bytes) => {
                slot.send(Item {
                    msg,
                    gap: None,
                    _bytes: bytes,
                });
                Ok(())
            }
            Err(_) => Err(msg),
        }
    }

    /// Payload bytes queued now.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.max as usize - self.bytes.available_permits()
    }
}

impl Receiver {
    /// The next message; `None` once every sender is gone and the queue is
    /// empty. Cancel-safe.
    /// Gap notices are skipped.
    pub(crate) async fn recv(&mut self) -> Option<Message> {
        loop {
            let i = self.rx.recv().await?;
            if i.gap.is_none() {
                return Some(i.msg);
            }
        }
    }

    /// The next message or gap notice. Cancel-safe.
    pub(crate) async fn recv_item(&mut self) -> Option<Received> {
        self.rx.recv().await.map(|i| match i.gap {
            Some(g) => Received::Gap(g),
            None => Received::Message(i.msg),
        })
    }

    /// Polls for the next message, as [`Receiver::recv`].
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        loop {
            match self.rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(i)) if i.gap.is_some() => continue,
                p => return p.map(|i| i.map(|i| i.msg)),
            }
        }
    }

    /// The next message if one is queued (gap notices skipped).
    pub(crate) fn try_recv(&mut self) -> Option<Message> {
        loop {
            let i = self.rx.try_recv().ok()?;
            if i.gap.is_none() {
                return Some(i.msg);
            }
        }
    }

    /// Refuses further messages; those queued can still be received.
    pub(crate) fn close(&mut self) {
        self.rx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(n: usize) -> Message {
        Message::binary(vec![0u8; n])
    }

    #[tokio::test]
    async fn bounded_by_bytes_as_well_as_count() {
        let (tx, mut rx) = channel(100, 1000);
        tx.send(msg(600)).await.unwrap();
        assert_eq!(tx.queued_bytes(), 600);
        // 600 + 600 > 1000: no room now, and a send waits.
        assert!(tx.try_send(msg(600)).is_err());
        let waiting = tokio::time::timeout(Duration::from_millis(50), tx.send(msg(600))).await;
        assert!(waiting.is_err(), "send waits for room");
        assert_eq!(tx.queued_bytes(), 600, "a cancelled send queued nothing");
        assert_eq!(rx.recv().await.unwrap().len(), 600);
        assert_eq!(tx.queued_bytes(), 0, "receiving gives the bytes back");
        tx.try_send(msg(600)).unwrap();
    }

    #[tokio::test]
    async fn bounded_by_count_for_small_messages() {
        let (tx, _rx) = channel(2, 1 << 20);
        tx.try_send(msg(1)).unwrap();
        tx.try_send(msg(1)).unwrap();
        assert!(tx.try_send(msg(1)).is_err());
    }

    #[tokio::test]
    async fn a_message_over_the_cap_waits_for_an_empty_queue() {
        let (tx, mut rx) = channel(10, 100);
        tx.try_send(msg(10)).unwrap();
        assert!(tx.try_send(msg(5000)).is_err());
        rx.recv().await.unwrap();
        tx.try_send(msg(5000)).unwrap();
        assert_eq!(tx.queued_bytes(), 100);
        assert_eq!(rx.try_recv().unwrap().len(), 5000);
    }

    #[tokio::test]
    async fn closed_receiver_gives_the_message_back() {
        let (tx, rx) = channel(10, 100);
        drop(rx);
        assert_eq!(tx.send(msg(3)).await.unwrap_err().len(), 3);
    }
}
