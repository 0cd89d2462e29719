//! The handshake cells: `N` clients, each opening connections one after
//! another (connect, upgrade, close), counting completed upgrades per second.
//!
//! Each connection: TCP connect, the load generator's fixed-key upgrade
//! request (the 101 and its accept key checked), a masked close frame
//! (1000), then read until the server closes the TCP connection (RFC 6455
//! section 7.1.1: the server closes first). The client then closes with
//! `SO_LINGER` 0, so that no socket is left in TIME_WAIT on either side:
//! otherwise tens of thousands of connections a run would use up the
//! loopback's ephemeral ports within a few runs.

use crate::harness::{ConnFuture, Job, Tally};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long a client waits for the server to close after its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// One client of a handshake cell: upgrades in a loop, one at a time.
pub(crate) fn client(addr: SocketAddr, _job: Arc<Job>, tally: Arc<Tally>) -> ConnFuture {
    Box::pin(async move {
        // A close frame with status 1000, masked as a client must.
        let close = crate::raw::masked_frame(0x88, &1000u16.to_be_bytes());
        let mut rd = vec![0u8; 4096];
        tally.ready();
        loop {
            let up = crate::raw::upgrade(addr, None, &mut rd).await?;
            tally.add(1);
            let mut tcp = up.tcp;
            tcp.write_all(&close)
                .await
                .map_err(|e| format!("close write: {e}"))?;
            let eof = async {
                loop {
                    match tcp.read(&mut rd).await {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("read after close: {e}")),
                    }
                }
            };
            tokio::time::timeout(CLOSE_WAIT, eof)
                .await
                .map_err(|_| "the server did not close the connection".to_string())??;
            let _ = tcp.set_zero_linger();
        }
    })
}

/// The ceiling's server: the raw echo server's upgrade answer, without its
/// large echo buffers (allocating and zeroing those for each connection
/// would be most of its work here): read the request head, answer 101,
/// then read until the client's close frame and answer it, and close.
pub(crate) fn raw_server(tcp: tokio::net::TcpStream) -> ConnFuture {
    Box::pin(async move {
        use base64::Engine as _;
        use sha1::{Digest, Sha1};
        let mut tcp = tcp;
        let mut rd = [0u8; 2048];
        let (head_len, mut got) = crate::raw::read_head(&mut tcp, &mut rd).await?;
        let head = std::str::from_utf8(&rd[..head_len]).map_err(|e| e.to_string())?;
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim())
            })
            .ok_or("no Sec-WebSocket-Key")?;
        let mut sha = Sha1::new();
        sha.update(key.as_bytes());
        sha.update(crate::raw::GUID.as_bytes());
        let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        tcp.write_all(response.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        // The client's close frame: 2 header bytes, 4 mask bytes, 2 payload.
        rd.copy_within(head_len..got, 0);
        got -= head_len;
        while got < 8 {
            match tcp.read(&mut rd[got..]).await {
                Ok(0) => return Ok(()),
                Ok(n) => got += n,
                Err(e) => return Err(e.to_string()),
            }
        }
        if rd[0] != 0x88 {
            return Err(format!("expected a close frame, got 0x{:02x}", rd[0]));
        }
        // Echo the status code, unmasked (RFC 6455 section 5.5.1).
        let code = [rd[6] ^ rd[2], rd[7] ^ rd[3]];
        tcp.write_all(&[0x88, 2, code[0], code[1]])
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}
