//! What the server answers over plain HTTP, and which upgrades it
//! refuses: the library's `process_request` hook, which sees every
//! request on the port before the WebSocket handshake.
//!
//! In order:
//! 1. `--health PATH`: GET or HEAD of PATH is `200 ok` (any other method,
//!    405), upgrade or not, at capacity too (the library checks
//!    `--max-connections` after the hook);
//! 2. an upgrade (`Upgrade: websocket`) whose `Origin` the policy refuses
//!    is `403` ([`Origins`]); any other upgrade goes on to the handshake;
//! 3. `--page`: GET or HEAD of `/` is the console page;
//! 4. `--static DIR`: any other GET or HEAD is a file of DIR, or 404;
//!    another method on a path of 3 or 4 is `405`;
//! 5. anything else is left to the library: a request that is not an
//!    upgrade gets `426 Upgrade Required`.

use super::console::Console;
use super::files::Files;
use super::origin::Origins;
use super::page;
use std::sync::Arc;
use tether::tether_proto::handshake::header_has_token;
use tether::{Request, Response, ServerBuilder};

/// The plain-HTTP side of `tether serve`.
pub(crate) struct Routes {
    pub(crate) health: Option<String>,
    pub(crate) page: bool,
    pub(crate) files: Option<Files>,
    pub(crate) origins: Origins,
    pub(crate) console: Arc<Console>,
}

/// What to do with one request.
enum Route {
    /// Send this response.
    Answer(Response),
    /// Send a file of `--static`: its path, without the query.
    File(String),
    /// Leave it to the handshake.
    Upgrade,
}

impl Routes {
    /// Installs the hook on `builder`, unless there is nothing for it to do
    /// (then the server behaves exactly as the library's default).
    pub(crate) fn install(self, builder: ServerBuilder) -> ServerBuilder {
        let idle = self.health.is_none()
            && !self.page
            && self.files.is_none()
            && self.origins == Origins::Any;
        if idle {
            return builder;
        }
        let routes = Arc::new(self);
        builder.process_request_async(move |req| {
            let route = routes.route(req);
            let routes = routes.clone();
            async move {
                match route {
                    Route::Answer(r) => Some(r),
                    Route::Upgrade => None,
                    Route::File(path) => match &routes.files {
                        Some(files) => Some(files.answer(&path).await),
                        None => None,
                    },
                }
            }
        })
    }

    fn route(&self, req: &Request) -> Route {
        let read = matches!(req.method.as_str(), "GET" | "HEAD");
        if self.health.as_deref() == Some(req.path()) {
            return Route::Answer(if read {
                Response::with_body(200, "ok\n")
            } else {
                method_not_allowed()
            });
        }
        if header_has_token(&req.headers, "upgrade", "websocket") {
            return match self.origins.check(req) {
                Ok(()) => Route::Upgrade,
                Err(why) => {
                    self.console.refused(&why);
                    // RFC 6455 §4.2.2: a server that does not accept the
                    // origin answers with an HTTP error such as 403.
                    Route::Answer(Response::with_body(
                        403,
                        "this origin may not open a WebSocket to this server\n",
                    ))
                }
            };
        }
        let page = self.page && req.path() == "/";
        if !page && self.files.is_none() {
            return Route::Upgrade;
        }
        if !read {
            return Route::Answer(method_not_allowed());
        }
        if page {
            Route::Answer(page::response())
        } else {
            Route::File(req.path().to_string())
        }
    }
}

/// 405 for a request other than GET or HEAD to something that is only
/// read (RFC 9110 §15.5.6: with the methods allowed).
fn method_not_allowed() -> Response {
    Response::with_body(405, "use GET or HEAD\n").header("allow", "GET, HEAD")
}
