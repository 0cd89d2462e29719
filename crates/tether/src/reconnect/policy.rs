//! [`ReconnectPolicy`]: the settings, and the planner that turns each
//! failure into "wait this long" or "stop with this error".

use super::{classify, Attempt, Backoff, Decision, Ended, Failure};
use crate::error::{chain, Error, ErrorKind, Initiator};
use rand::SeedableRng;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tether_proto::CloseCode;
use tokio::time::Instant;

type Classifier = dyn Fn(&Failure<'_>, &Attempt) -> Decision + Send + Sync;
type Observer = dyn Fn(&Event) + Send + Sync;

/// Why a delay was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DelaySource {
    /// The backoff schedule.
    Backoff,
    /// The server's `Retry-After` header (capped by
    /// [`ReconnectPolicy::max_retry_after`]), because it asked for longer
    /// than the backoff. A shorter `Retry-After` (0, or a date in the past)
    /// never shortens the wait: the backoff delay is used, with the source
    /// [`DelaySource::Backoff`].
    RetryAfter,
    /// The hook returned [`Decision::RetryAfter`] with a delay of its own
    /// (not the server's `Retry-After`).
    Hook,
    /// An immediate retry with refreshed credentials after a 401 or 403.
    Refresh,
}

impl fmt::Display for DelaySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DelaySource::Backoff => "backoff",
            DelaySource::RetryAfter => "Retry-After",
            DelaySource::Hook => "policy hook",
            DelaySource::Refresh => "credentials refresh",
        })
    }
}

/// What the reconnect logic is doing, for a user interface or a log. Also
/// emitted as `tracing` events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Attempt `attempt` starts (the URL is redacted).
    Connecting {
        /// The attempt number, from 1.
        attempt: u32,
        /// The URL, credentials redacted.
        url: String,
    },
    /// Attempt `attempt` succeeded.
    Connected {
        /// The attempt number.
        attempt: u32,
    },
    /// An open connection ended: closed by the server, by this end (a
    /// failure, a keepalive timeout, or [`Session::close`](super::Session::close)),
    /// or dropped.
    Closed {
        /// Its close code (1005 without one, 1006 without a close frame).
        code: Option<CloseCode>,
        /// The close frame's reason (often empty); the error that ended the
        /// connection, when one did; or, without either, a few words on how
        /// it dropped. Never the code again: that is `code`.
        reason: String,
        /// Who sent the close frame (or failed the connection); `None` when
        /// it dropped without one.
        initiator: Option<Initiator>,
        /// How long it was open.
        open_for: Duration,
    },
    /// The next attempt waits `delay`.
    Retry {
        /// The number of the attempt that will follow the delay.
        attempt: u32,
        /// How long it waits.
        delay: Duration,
        /// Why this delay.
        source: DelaySource,
        /// What failed: the error and its causes, `": "`-separated.
        reason: String,
        /// The HTTP status, when a response came.
        status: Option<u16>,
    },
    /// The reconnect logic gave up; the error is yielded to the user.
    Stopped {
        /// Why, in words: the error and its causes, `": "`-separated.
        reason: String,
        /// The HTTP status, when a response came.
        status: Option<u16>,
        /// True when a cap on attempts or time was reached.
        exhausted: bool,
    },
}

/// When and how to reconnect. See [the module docs](crate::reconnect).
///
/// ```
/// use std::time::Duration;
/// use tether::reconnect::{Backoff, ReconnectPolicy};
/// let policy = ReconnectPolicy::default()
///     .backoff(Backoff { max: Duration::from_secs(30), ..Backoff::default() })
///     .max_attempts(Some(20))
///     .reset_after(Duration::from_secs(10));
/// ```
#[derive(Clone)]
#[must_use]
pub struct ReconnectPolicy {
    pub(crate) backoff: Backoff,
    classify: Option<Arc<Classifier>>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) max_elapsed: Option<Duration>,
    pub(crate) reset_after: Duration,
    pub(crate) max_retry_after: Duration,
    seed: Option<u64>,
    observer: Option<Arc<Observer>>,
}

impl fmt::Debug for ReconnectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectPolicy")
            .field("backoff", &self.backoff)
            .field("custom_classify", &self.classify.is_some())
            .field("max_attempts", &self.max_attempts)
            .field("max_elapsed", &self.max_elapsed)
            .field("reset_after", &self.reset_after)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            backoff: Backoff::default(),
            classify: None,
            max_attempts: None,
            max_elapsed: None,
            reset_after: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(300),
            seed: None,
            observer: None,
        }
    }
}

impl ReconnectPolicy {
    /// The backoff schedule (default: websockets' curve with jitter).
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// Replaces the default classification with `f`; call
    /// [`classify::default`] inside it for the cases you do not handle.
    pub fn classify<F>(mut self, f: F) -> Self
    where
        F: Fn(&Failure<'_>, &Attempt) -> Decision + Send + Sync + 'static,
    {
        self.classify = Some(Arc::new(f));
        self
    }

    /// Gives up after this many consecutive failed attempts (default: never).
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }

    /// Gives up when a run of failures has lasted this long (default: never).
    pub fn max_elapsed(mut self, d: Option<Duration>) -> Self {
        self.max_elapsed = d;
        self
    }

    /// The backoff resets only after a connection stayed open this long
    /// (default 5 s).
    pub fn reset_after(mut self, d: Duration) -> Self {
        self.reset_after = d;
        self
    }

    /// The longest `Retry-After` honoured (default 5 minutes); longer asks
    /// are cut to this.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Seeds the jitter, for reproducible schedules in tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Calls `f` with every [`Event`] (they are also `tracing` events).
    pub fn on_event<F: Fn(&Event) + Send + Sync + 'static>(mut self, f: F) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    pub(crate) fn decide(&self, failure: &Failure<'_>, attempt: &Attempt) -> Decision {
        match &self.classify {
            Some(f) => f(failure, attempt),
            None => classify::default(failure, attempt),
        }
    }

    pub(crate) fn emit(&self, e: &Event) {
        match e {
            Event::Connecting { attempt, url } => tracing::info!(attempt, %url, "connecting"),
            Event::Connected { attempt } => tracing::info!(attempt, "connected"),
            Event::Closed {
                code,
                reason,
                initiator,
                open_for,
            } => {
                tracing::info!(code = code.map(|c| c.0), %reason, ?initiator, ?open_for, "connection ended")
            }
            Event::Retry {
                attempt,
                delay,
                source,
                reason,
                status,
            } => tracing::warn!(
                next_attempt = attempt,
                delay = ?delay,
                %source,
                status,
                %reason,
                "retrying"
            ),
            Event::Stopped {
                reason,
                status,
                exhausted,
            } => {
                tracing::error!(status, exhausted, %reason, "not reconnecting")
            }
        }
        if let Some(o) = &self.observer {
            o(e);
        }
    }
}

/// The next step after a failure.
#[derive(Debug)]
pub(crate) enum Plan {
    Wait(Duration),
    Stop(Error),
}

/// The pure part of the reconnect loop: counts attempts and failures, asks
/// the policy, draws the delays, enforces the caps, emits events.
pub(crate) struct Planner {
    pub(crate) policy: ReconnectPolicy,
    rng: rand::rngs::StdRng,
    /// Attempts made so far.
    pub(crate) attempts: u32,
    /// Consecutive failures since the backoff last reset: the position in
    /// the backoff schedule. Connections that ended quickly count too.
    failures: u32,
    /// Failed attempts since the last successful connection, for
    /// `max_attempts`.
    failed_attempts: u32,
    run_started: Option<Instant>,
    has_provider: bool,
    /// The last attempt was refused (401/403) and was already retried with
    /// refreshed credentials.
    refreshed: bool,
    /// The next attempt should ask the provider for fresh credentials.
    pub(crate) refresh_next: bool,
    /// The last failure, in words.
    pub(crate) last_reason: Option<String>,
}

impl Planner {
    pub(crate) fn new(policy: ReconnectPolicy, has_provider: bool) -> Self {
        let rng = match policy.seed {
            Some(s) => rand::rngs::StdRng::seed_from_u64(s),
            None => rand::rngs::StdRng::from_entropy(),
        };
        Planner {
            policy,
            rng,
            attempts: 0,
            failures: 0,
            failed_attempts: 0,
            run_started: None,
            has_provider,
            refreshed: false,
            refresh_next: false,
            last_reason: None,
        }
    }

    /// Starts an attempt; returns its number.
    pub(crate) fn start_attempt(&mut self, url: &str) -> u32 {
        self.attempts += 1;
        self.policy.emit(&Event::Connecting {
            attempt: self.attempts,
            url: url.to_string(),
        });
        self.attempts
    }

    pub(crate) fn connected(&mut self) {
        self.refreshed = false;
        // The caps count failed attempts and time since the last success.
        self.failed_attempts = 0;
        self.run_started = None;
        self.policy.emit(&Event::Connected {
            attempt: self.attempts,
        });
    }

    fn attempt(&self) -> Attempt {
        Attempt {
            number: self.attempts,
            failures: self.failures,
            elapsed: self.run_started.map_or(Duration::ZERO, |t| t.elapsed()),
        }
    }

    /// A connection attempt failed with `err`.
    pub(crate) fn attempt_failed(&mut self, err: Error) -> Plan {
        self.failures += 1;
        self.failed_attempts += 1;
        self.run_started.get_or_insert_with(Instant::now);
        // A proxy's refusal (407) is not the server's: the provider's headers
        // go to the server, so refreshing them cannot help.
        let refused = err.is_auth_refused() && !err.is_proxy();
        // With a credentials provider, a 401/403 gets one refresh and one
        // immediate retry; a second refusal in a row goes to the policy.
        if refused && self.has_provider && !self.refreshed {
            self.refreshed = true;
            self.last_reason = Some(chain(&err));
            self.refresh_next = true;
            self.policy.emit(&Event::Retry {
                attempt: self.attempts + 1,
                delay: Duration::ZERO,
                source: DelaySource::Refresh,
                reason: chain(&err),
                status: err.status(),
            });
            return Plan::Wait(Duration::ZERO);
        }
        if !refused {
            self.refreshed = false;
        }
        let decision = self.policy.decide(&Failure::Attempt(&err), &self.attempt());
        let ra = err.retry_after();
        self.apply(decision, chain(&err), err.status(), ra, err)
    }

    /// An established connection ended as `ended` describes.
    pub(crate) fn ended(&mut self, ended: Ended) -> Plan {
        // The event carries the code on its own; its reason is only what
        // adds to it, so that "1001 (going away)" is said once.
        let said = match (&ended.close, &ended.error) {
            (_, Some(e)) => e.clone(),
            (Some(f), None) => f.reason.as_str().to_string(),
            (None, None) if ended.user_closed => "dropped by the application".to_string(),
            (None, None) => "dropped without a close frame".to_string(),
        };
        self.policy.emit(&Event::Closed {
            code: ended.close_code(),
            reason: said,
            initiator: ended.initiator,
            open_for: ended.open_for,
        });
        // The retry that follows names the whole cause.
        let reason = match (&ended.close, &ended.error) {
            (_, Some(e)) => e.clone(),
            (Some(f), None) => format!("closed with {f}"),
            (None, None) => "dropped without a close frame".to_string(),
        };
        // A connection that stayed up long enough resets the backoff, so the
        // next delay is the short random one; one that dropped quickly counts
        // as a failure (no hot loop). 1013 "try again later" never resets.
        let try_later = ended
            .close
            .as_ref()
            .is_some_and(|f| f.code == CloseCode::TRY_AGAIN_LATER);
        if ended.open_for >= self.policy.reset_after && !try_later {
            self.failures = 0;
            self.run_started = None;
        }
        self.failures += 1;
        self.run_started.get_or_insert_with(Instant::now);
        let decision = self.policy.decide(&Failure::Ended(&ended), &self.attempt());
        let err = ended.to_error();
        self.apply(decision, reason, None, None, err)
    }

    fn apply(
        &mut self,
        decision: Decision,
        reason: String,
        status: Option<u16>,
        header: Option<Duration>,
        err: Error,
    ) -> Plan {
        self.last_reason = Some(reason.clone());
        let (delay, source) = match decision {
            Decision::Stop => return self.stop(err.with_attempts(self.attempts), false),
            Decision::StopWith(user) => {
                let e = Error::new(ErrorKind::Stopped)
                    .with_source(user)
                    .with_attempts(self.attempts);
                return self.stop(e, false);
            }
            Decision::Retry => (
                self.policy.backoff.delay(self.failures - 1, &mut self.rng),
                DelaySource::Backoff,
            ),
            // The server's delay (the classifier passed the header's value
            // on) may lengthen the wait, never shorten it below the backoff:
            // a `Retry-After: 0`, or a date in the past (clock skew), would
            // otherwise retry at once forever. The backoff is drawn as for a
            // plain retry, so the schedule keeps growing under it.
            Decision::RetryAfter(d) if header == Some(d) => {
                let server = d.min(self.policy.max_retry_after);
                let backoff = self.policy.backoff.delay(self.failures - 1, &mut self.rng);
                if server >= backoff {
                    (server, DelaySource::RetryAfter)
                } else {
                    (backoff, DelaySource::Backoff)
                }
            }
            // The hook's own delay is the user's decision: honoured as is
            // (capped), even zero.
            Decision::RetryAfter(d) => (d.min(self.policy.max_retry_after), DelaySource::Hook),
        };
        if let Some(max) = self.policy.max_attempts {
            if self.failed_attempts >= max {
                let why = format!("max_attempts {max} reached");
                return self.stop(Error::exhausted(err, self.attempts, &why), true);
            }
        }
        if let (Some(max), Some(start)) = (self.policy.max_elapsed, self.run_started) {
            if start.elapsed() + delay > max {
                let why = format!("max_elapsed {max:?} reached");
                return self.stop(Error::exhausted(err, self.attempts, &why), true);
            }
        }
        self.policy.emit(&Event::Retry {
            attempt: self.attempts + 1,
            delay,
            source,
            reason,
            status,
        });
        Plan::Wait(delay)
    }

    /// Reports a stop decided outside the planner (an invalid URL).
    pub(crate) fn stopped(&mut self, err: &Error) {
        self.policy.emit(&Event::Stopped {
            reason: chain(err),
            status: err.status(),
            exhausted: false,
        });
    }

    fn stop(&mut self, err: Error, exhausted: bool) -> Plan {
        self.policy.emit(&Event::Stopped {
            reason: chain(&err),
            status: err.status(),
            exhausted,
        });
        Plan::Stop(err)
    }
}
