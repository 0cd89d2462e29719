//! SIGINT and SIGTERM as values: the command closes its connection
//! properly on either, instead of dying with it open.

use crate::{EXIT_INTERRUPTED, EXIT_OK};
use tether::CloseCode;

/// A signal that asks the command to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGINT (Ctrl-C): the user ends the conversation.
    Interrupt,
    /// SIGTERM: the service is stopped (systemd, docker stop, kill).
    Terminate,
}

impl Stop {
    /// The close code sent: 1000 for Ctrl-C (the user is done), 1001 for
    /// SIGTERM (this end is going away, RFC 6455 §7.4.1).
    pub(crate) fn close_code(self) -> CloseCode {
        match self {
            Stop::Interrupt => CloseCode::NORMAL,
            Stop::Terminate => CloseCode::GOING_AWAY,
        }
    }

    /// The exit status: 130 after Ctrl-C (as shells report it); 0 after
    /// SIGTERM, the normal end of a service.
    pub(crate) fn exit_status(self) -> u8 {
        match self {
            Stop::Interrupt => EXIT_INTERRUPTED,
            Stop::Terminate => EXIT_OK,
        }
    }

    /// Words for a note.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "interrupted",
            Stop::Terminate => "terminated",
        }
    }
}

/// Listens for SIGINT and SIGTERM from creation on: a signal that arrives
/// between two calls of [`Signals::recv`] is not lost.
pub(crate) struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next signal.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Stop {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.int) => Stop::Interrupt,
                _ = next(&mut self.term) => Stop::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Stop::Interrupt
        }
    }
}
