//! The server's hooks: [`ServerBuilder::process_request`],
//! [`ServerBuilder::select_subprotocol`] and
//! [`ServerBuilder::process_response`], and the checks that keep a hook's
//! mistake from becoming a broken connection.

use super::ServerBuilder;
use http::HeaderValue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tether_proto::handshake::{ClientOffer, Request, Response};
use tether_proto::HandshakeError;

/// What `process_request` returns, boxed so that the builder stays one type.
pub(super) type RequestFuture = Pin<Box<dyn Future<Output = Option<Response>> + Send>>;
pub(super) type ProcessRequest = dyn Fn(&Request) -> RequestFuture + Send + Sync;
pub(super) type SelectSubprotocol = dyn Fn(&Request, &[String]) -> Option<String> + Send + Sync;
pub(super) type ProcessResponse = dyn Fn(&Request, &mut Response) + Send + Sync;

/// The headers of a 101 that carry the negotiation: `process_response` may
/// not change them (the connection is set up from what was negotiated, and
/// the client checks them).
const NEGOTIATED: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

impl ServerBuilder {
    /// A hook called with **every** HTTP request the server reads, upgrade
    /// or not, before the request is validated, as websockets'
    /// `process_request`. Returning `Some(response)` sends that response
    /// instead of upgrading (`Content-Length` is set, `Connection: close`
    /// added, and the connection closed after it; a `HEAD` request gets the
    /// head alone), and `accept` returns [`ErrorKind::HttpStatus`] with the
    /// response. Returning `None` goes on with the upgrade: a request that
    /// is not one is then answered 426 (see [`ServerBuilder`] for the whole
    /// order).
    ///
    /// The hook sees the request's head (method, target, headers); a body
    /// is not read for it. When the request announced one, the server reads
    /// and drops what the client still sends after the response (up to 64
    /// KiB, for up to 2 s) before closing, so that the client is not reset
    /// before it reads the answer.
    ///
    /// The hook is synchronous here; [`ServerBuilder::process_request_async`]
    /// takes one that awaits (a token lookup, a database).
    ///
    /// ```no_run
    /// # async fn run() -> tether::Result<()> {
    /// use tether::{Response, ServerBuilder};
    /// let server = ServerBuilder::new()
    ///     // A health check on the same port as the WebSockets.
    ///     .process_request(|req| match req.path() {
    ///         "/health" => Some(Response::with_body(200, "ok\n")),
    ///         _ => None,
    ///     })
    ///     .serve("127.0.0.1:9001", |ws| async move { drop(ws) })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`ErrorKind::HttpStatus`]: crate::ErrorKind::HttpStatus
    pub fn process_request<F>(self, f: F) -> Self
    where
        F: Fn(&Request) -> Option<Response> + Send + Sync + 'static,
    {
        self.process_request_async(move |req: &Request| std::future::ready(f(req)))
    }

    /// As [`ServerBuilder::process_request`], with a hook that can await: it
    /// reads what it needs from the borrowed request and returns an owned
    /// future, which runs within the open timeout. It replaces a hook set
    /// with `process_request`, and the other way round.
    ///
    /// ```no_run
    /// # async fn run() -> tether::Result<()> {
    /// # async fn token_is_valid(_: Option<&str>) -> bool { true }
    /// use tether::{Response, ServerBuilder};
    /// let server = ServerBuilder::new()
    ///     .process_request_async(|req| {
    ///         let token = req.header("authorization").map(str::to_owned);
    ///         async move {
    ///             if token_is_valid(token.as_deref()).await {
    ///                 None
    ///             } else {
    ///                 Some(Response::with_body(401, "invalid token\n")
    ///                     .header("www-authenticate", "Bearer"))
    ///             }
    ///         }
    ///     })
    ///     .serve("127.0.0.1:9001", |ws| async move { drop(ws) })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn process_request_async<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(&Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Response>> + Send + 'static,
    {
        self.process_request = Some(Arc::new(move |req: &Request| -> RequestFuture {
            Box::pin(f(req))
        }));
        self
    }

    /// A hook that chooses the subprotocol among the client's offers (its
    /// `Sec-WebSocket-Protocol` values, in its order), in place of the
    /// default rule of [`ServerBuilder::subprotocols`]. `None` chooses none.
    /// It is called only when the client offered at least one.
    ///
    /// Choosing a subprotocol the client did not offer is a bug of the
    /// server (the client would refuse the 101, RFC 6455 §4.1): the request
    /// is answered 500, the mistake is logged at level `error`, and `accept`
    /// returns [`ErrorKind::HttpStatus`](crate::ErrorKind::HttpStatus). To
    /// refuse clients that offer nothing acceptable, answer in
    /// [`ServerBuilder::process_response`] when the 101 has no
    /// `Sec-WebSocket-Protocol`.
    ///
    /// ```
    /// // The newest version the client speaks: the last one it offered.
    /// let builder = tether::ServerBuilder::new()
    ///     .select_subprotocol(|_req, offers| offers.last().cloned());
    /// ```
    pub fn select_subprotocol<F>(mut self, f: F) -> Self
    where
        F: Fn(&Request, &[String]) -> Option<String> + Send + Sync + 'static,
    {
        self.select_subprotocol = Some(Arc::new(f));
        self
    }

    /// A hook called with the 101 response before it is sent: it may add
    /// headers (a `Set-Cookie`, a server name). If it changes the status
    /// away from 101, that response is sent instead of upgrading (with
    /// `Content-Length` and `Connection: close`) and `accept` returns
    /// [`ErrorKind::HttpStatus`](crate::ErrorKind::HttpStatus), as in
    /// websockets.
    ///
    /// A 101 must keep the headers of the negotiation (`Upgrade`,
    /// `Connection`, `Sec-WebSocket-Accept`, `-Protocol`, `-Extensions`) as
    /// they are and have no body: a hook that changes them is a bug, answered
    /// 500 and logged at level `error`.
    ///
    /// ```
    /// use tether::http::HeaderValue;
    /// let builder = tether::ServerBuilder::new().process_response(|req, resp| {
    ///     if req.header("cookie").is_none() {
    ///         resp.headers.append(
    ///             "set-cookie",
    ///             HeaderValue::from_static("visitor=42; HttpOnly"),
    ///         );
    ///     }
    /// });
    /// ```
    pub fn process_response<F>(mut self, f: F) -> Self
    where
        F: Fn(&Request, &mut Response) + Send + Sync + 'static,
    {
        self.process_response = Some(Arc::new(f));
        self
    }

    /// The subprotocol for `offer`: `select_subprotocol`'s choice, else the
    /// first offer (in the client's order) among `subprotocols`.
    pub(super) fn choose_subprotocol(
        &self,
        request: &Request,
        offer: &ClientOffer,
    ) -> Result<Option<String>, HandshakeError> {
        let Some(select) = &self.select_subprotocol else {
            return Ok(offer
                .select_subprotocol(&self.subprotocols)
                .map(str::to_string));
        };
        if offer.subprotocols.is_empty() {
            return Ok(None);
        }
        match select(request, &offer.subprotocols) {
            Some(p) if !offer.subprotocols.contains(&p) => {
                tracing::error!(
                    chosen = %p,
                    offered = ?offer.subprotocols,
                    "select_subprotocol chose a subprotocol the client did not offer; answering 500"
                );
                Err(server_bug())
            }
            chosen => Ok(chosen),
        }
    }

    /// Runs `process_response` on the 101. `Err` holds the response to send
    /// instead: the hook's own (another status), or a 500 when the hook
    /// broke the negotiation.
    pub(super) fn run_process_response(
        &self,
        request: &Request,
        response: &mut Response,
    ) -> Result<(), HandshakeError> {
        let Some(hook) = &self.process_response else {
            return Ok(());
        };
        let before = negotiated(response);
        hook(request, response);
        if response.status != 101 {
            return Err(HandshakeError::Status(Box::new(response.clone())));
        }
        if negotiated(response) != before || !response.body.is_empty() {
            tracing::error!(
                "process_response changed the negotiation headers of the 101 or gave it a body; \
                 answering 500"
            );
            return Err(server_bug());
        }
        Ok(())
    }
}

/// The values of the [`NEGOTIATED`] headers, in order.
fn negotiated(r: &Response) -> Vec<Vec<HeaderValue>> {
    NEGOTIATED
        .iter()
        .map(|n| r.headers.get_all(*n).iter().cloned().collect())
        .collect()
}

/// The answer to a hook's mistake: a 500 that says nothing of the details
/// (they are in the server's log).
pub(super) fn server_bug_response() -> Response {
    Response::with_body(
        500,
        "the server could not complete the WebSocket handshake\n",
    )
}

fn server_bug() -> HandshakeError {
    HandshakeError::Status(Box::new(server_bug_response()))
}
