//! [`Member`]: a server connection in a [`Hub`](super::Hub).

use super::Group;
use crate::error::Result;
use crate::socket::{Handshake, WsReader, WsWriter};
use futures_core::Stream as FuturesStream;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use tether_proto::handshake::Request;
use tether_proto::{Message, State};
use tokio::io::{AsyncRead, AsyncWrite};

/// Names a member of a [`Hub`](super::Hub), unique within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub(super) u64);

impl MemberId {
    /// The number behind the id (members are numbered from 0 as they join).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A connection in a [`Hub`](super::Hub), made by
/// [`Hub::join`](super::Hub::join). Receive from it with [`Member::recv`]
/// (or as a `Stream`), send to it alone with [`Member::send`] or a clone
/// of [`Member::writer`]. Dropping it leaves the hub (and drops the
/// connection, as dropping a `WebSocket` does: close it first for a clean
/// close).
pub struct Member<S = crate::MaybeTlsStream> {
    id: MemberId,
    reader: WsReader<S>,
    writer: WsWriter<S>,
    handshake: Handshake,
    group: Weak<dyn Group>,
    left: bool,
}

impl<S> std::fmt::Debug for Member<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("subprotocol", &self.handshake.subprotocol)
            .finish_non_exhaustive()
    }
}

impl<S> Member<S> {
    pub(super) fn new(
        id: MemberId,
        reader: WsReader<S>,
        writer: WsWriter<S>,
        handshake: Handshake,
        group: Weak<dyn Group>,
    ) -> Self {
        Member {
            id,
            reader,
            writer,
            handshake,
            group,
            left: false,
        }
    }

    /// This member's id in its hub (the ids of a
    /// [`BroadcastReport`](super::BroadcastReport)).
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// The writer of this member's connection: sends to it alone. Clone it
    /// to send from other tasks.
    pub fn writer(&self) -> &WsWriter<S> {
        &self.writer
    }

    /// The client's upgrade request (path, headers), when the connection
    /// came from a tether server.
    pub fn request(&self) -> Option<&Request> {
        self.handshake.request.as_deref()
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.handshake.subprotocol.as_deref()
    }

    /// The permessage-deflate parameters agreed in the handshake, if any.
    pub fn compression(&self) -> Option<crate::DeflateParams> {
        self.handshake.compression
    }

    /// Leaves the hub (or the topic): broadcasts no longer reach this
    /// member. The connection stays open.
    pub fn leave(&mut self) {
        if !std::mem::replace(&mut self.left, true) {
            if let Some(group) = self.group.upgrade() {
                group.remove(&[self.id]);
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Member<S> {
    /// Receives the next message from this member; `None` once its
    /// connection has closed, and then it has left the hub. As
    /// [`WsReader::recv`], it also writes out what the hub queued while it
    /// waits.
    ///
    /// # Errors
    /// As [`WebSocket::recv`](crate::WebSocket::recv).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        let r = self.reader.recv().await;
        if r.is_none() {
            self.leave();
        }
        r
    }

    /// Sends a message to this member alone, as
    /// [`WsWriter::send`].
    ///
    /// # Errors
    /// As [`WebSocket::send`](crate::WebSocket::send).
    ///
    /// # Cancel safety
    /// As [`WebSocket::send`](crate::WebSocket::send).
    pub async fn send(&self, msg: Message) -> Result<()> {
        self.writer.send(msg).await
    }

    /// The state of the connection.
    pub fn state(&self) -> State {
        self.writer.state()
    }
}

impl<S> Drop for Member<S> {
    fn drop(&mut self) {
        self.leave();
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> FuturesStream for Member<S> {
    type Item = Result<Message>;

    /// As [`Member::recv`]; as for [`WsReader`], a `Stream` consumer does
    /// not write out for others while it waits (each broadcast then makes
    /// its own write attempt).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.reader).poll_next(cx);
        if let Poll::Ready(None) = r {
            this.leave();
        }
        r
    }
}
