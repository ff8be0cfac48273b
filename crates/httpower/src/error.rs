//! The one error type of the client, and the reasons it carries.
//!
//! A caller that got an error wants to know three things: *what* went wrong (a stable
//! [`Reason`] to match on or to count in a metric), *when* trying again makes sense
//! ([`Error::retry_after`]), and *how far* the request got ([`Error::attempts`],
//! [`Error::last_status`]). One type answers all three, whichever layer failed: the
//! limiter, the breaker, the retry loop, the transport or the configuration.
//!
//! Errors are cheap to clone (the details sit behind an `Arc`), because a deduplicated
//! request hands the owner's failure to every caller that waited for it.

use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Establishing the connection (TCP and TLS), or waiting for a pooled one.
    Connect,
    /// Waiting for the next chunk of the response.
    Read,
    /// One attempt, from sending to the response headers.
    Attempt,
    /// The whole logical request: every attempt, backoff and wait.
    Total,
    /// Waiting for an identical in-flight request to finish (deduplication).
    DedupWait,
}

impl TimeoutPhase {
    /// A stable name: `connect`, `read`, `attempt`, `total`, `dedup_wait`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::Read => "read",
            TimeoutPhase::Attempt => "attempt",
            TimeoutPhase::Total => "total",
            TimeoutPhase::DedupWait => "dedup_wait",
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request failed.
///
/// Every variant has a stable machine-readable [`name`](Reason::name), for metrics and
/// logs, and a human message (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// A timeout fired.
    Timeout {
        /// Which one.
        phase: TimeoutPhase,
    },
    /// The connection could not be established (refused, unreachable).
    Connect,
    /// The connection was reset or closed while the request was in flight.
    ConnectionReset,
    /// The host name could not be resolved.
    Dns,
    /// The TLS handshake failed (for example, certificate verification).
    Tls,
    /// The client-side rate limiter (or the server, through its rate-limit headers)
    /// refused the request.
    TooManyRequests {
        /// When a request would be admitted.
        retry_after: Duration,
    },
    /// The rate limiter would not admit the request within `max_wait_time`.
    RateLimitWaitTimeout {
        /// How much longer it would have taken.
        retry_after: Duration,
    },
    /// The circuit breaker for this host is open: no request was sent.
    ServiceUnavailable {
        /// When the breaker lets a probe through.
        retry_after: Duration,
    },
    /// Every retry allowed failed; `last` is the last attempt's failure.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: Box<Reason>,
    },
    /// The shared retry budget is spent: retrying would amplify an outage.
    RetryBudgetExhausted,
    /// A retry was needed but the request body was a stream, already consumed.
    BodyNotReplayable,
    /// The URL could not be parsed or has no usable host.
    InvalidUrl,
    /// A header name or value is invalid (for example, it contains CR, LF or NUL).
    InvalidHeader {
        /// The header's name (never its value: it may be a secret).
        name: String,
    },
    /// More than one of body, JSON and form was set on one request.
    ConflictingBody,
    /// The host is not in the client's `allowed_hosts`.
    HostNotAllowed {
        /// The host refused.
        host: String,
    },
    /// The host resolves to a private, loopback or link-local address and the client
    /// blocks those.
    BlockedPrivateIp {
        /// The host refused.
        host: String,
        /// The address it resolved to.
        ip: IpAddr,
    },
    /// The client is in test mode and no stub answered this request.
    NetworkBlocked,
    /// The limiter's store is unreachable and the limiter is fail-closed.
    StoreUnavailable {
        /// The store's name.
        store: String,
    },
    /// The configuration is invalid.
    Config {
        /// The key path (`clients.stripe.retry.max_retries`).
        path: String,
        /// What was expected there.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The response has an error status and the caller asked for
    /// [`error_for_status`](crate::Response::error_for_status).
    Status {
        /// The status.
        status: StatusCode,
    },
    /// The response body could not be decoded (for example, invalid JSON).
    Decode,
    /// The request or response body failed to stream.
    Body,
    /// The redirect chain was too long or refused.
    Redirect,
    /// A blocking call was made from inside an async runtime, where it would block a
    /// worker thread; use the async client there.
    BlockingInAsyncContext,
    /// Any other transport failure.
    Transport,
}

impl Reason {
    /// The stable machine-readable name (`timeout`, `too_many_requests`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Timeout { .. } => "timeout",
            Reason::Connect => "connect",
            Reason::ConnectionReset => "connection_reset",
            Reason::Dns => "dns",
            Reason::Tls => "tls",
            Reason::TooManyRequests { .. } => "too_many_requests",
            Reason::RateLimitWaitTimeout { .. } => "rate_limit_wait_timeout",
            Reason::ServiceUnavailable { .. } => "service_unavailable",
            Reason::RetriesExhausted { .. } => "retries_exhausted",
            Reason::RetryBudgetExhausted => "retry_budget_exhausted",
            Reason::BodyNotReplayable => "body_not_replayable",
            Reason::InvalidUrl => "invalid_url",
            Reason::InvalidHeader { .. } => "invalid_header",
            Reason::ConflictingBody => "conflicting_body",
            Reason::HostNotAllowed { .. } => "host_not_allowed",
            Reason::BlockedPrivateIp { .. } => "blocked_private_ip",
            Reason::NetworkBlocked => "network_blocked",
            Reason::StoreUnavailable { .. } => "store_unavailable",
            Reason::Config { .. } => "config",
            Reason::Status { .. } => "status",
            Reason::Decode => "decode",
            Reason::Body => "body",
            Reason::Redirect => "redirect",
            Reason::BlockingInAsyncContext => "blocking_in_async_context",
            Reason::Transport => "transport",
        }
    }

    /// When trying again makes sense, when the reason says.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Reason::TooManyRequests { retry_after }
            | Reason::RateLimitWaitTimeout { retry_after }
            | Reason::ServiceUnavailable { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The reason underneath a [`RetriesExhausted`](Reason::RetriesExhausted) (itself
    /// otherwise).
    pub fn root(&self) -> &Reason {
        match self {
            Reason::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Timeout { phase } => write!(f, "{phase} timeout elapsed"),
            Reason::Connect => f.write_str("could not connect"),
            Reason::ConnectionReset => f.write_str("connection reset"),
            Reason::Dns => f.write_str("host name could not be resolved"),
            Reason::Tls => f.write_str("TLS handshake failed"),
            Reason::TooManyRequests { retry_after } => {
                write!(f, "rate limited; retry after {retry_after:?}")
            }
            Reason::RateLimitWaitTimeout { retry_after } => write!(
                f,
                "rate limiter would not admit the request within max_wait_time \
                 (needed {retry_after:?} more)"
            ),
            Reason::ServiceUnavailable { retry_after } => {
                write!(f, "circuit breaker is open; retry after {retry_after:?}")
            }
            Reason::RetriesExhausted { attempts, last } => {
                let noun = if *attempts == 1 {
                    "attempt"
                } else {
                    "attempts"
                };
                write!(f, "gave up after {attempts} {noun}: {last}")
            }
            Reason::RetryBudgetExhausted => {
                f.write_str("retry budget exhausted: not retrying during an outage")
            }
            Reason::BodyNotReplayable => {
                f.write_str("a retry was needed but the streaming request body was already sent")
            }
            Reason::InvalidUrl => f.write_str("invalid URL"),
            Reason::InvalidHeader { name } => write!(f, "invalid header `{name}`"),
            Reason::ConflictingBody => {
                f.write_str("more than one of body, json and form set on one request")
            }
            Reason::HostNotAllowed { host } => write!(f, "host `{host}` is not allowed"),
            Reason::BlockedPrivateIp { host, ip } => {
                write!(f, "host `{host}` resolves to private address {ip}")
            }
            Reason::NetworkBlocked => {
                f.write_str("network blocked: the client is in test mode and no stub matched")
            }
            Reason::StoreUnavailable { store } => write!(
                f,
                "rate-limit store `{store}` is unavailable and the limiter fails closed"
            ),
            Reason::Config {
                path,
                expected,
                found,
            } => write!(f, "{path}: expected {expected}, found {found}"),
            Reason::Status { status } => write!(f, "error status {status}"),
            Reason::Decode => f.write_str("could not decode the response body"),
            Reason::Body => f.write_str("body stream failed"),
            Reason::Redirect => f.write_str("redirect refused"),
            Reason::BlockingInAsyncContext => f.write_str(
                "the blocking client was called from inside an async runtime; use the async client",
            ),
            Reason::Transport => f.write_str("transport error"),
        }
    }
}

type Source = Arc<dyn StdError + Send + Sync + 'static>;

#[derive(Debug)]
struct Inner {
    reason: Reason,
    attempts: u32,
    last_status: Option<StatusCode>,
    retry_after: Option<Duration>,
    url: Option<String>,
    source: Option<Source>,
}

/// A failed request: the [`Reason`], plus what the caller needs to act on it.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

impl Error {
    /// An error for `reason`, before any attempt.
    pub fn new(reason: Reason) -> Self {
        Error {
            inner: Arc::new(Inner {
                retry_after: reason.retry_after(),
                reason,
                attempts: 0,
                last_status: None,
                url: None,
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(
        reason: Reason,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        Error::new(reason).source_arc(Arc::new(source))
    }

    fn edit(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                reason: shared.reason.clone(),
                attempts: shared.attempts,
                last_status: shared.last_status,
                retry_after: shared.retry_after,
                url: shared.url.clone(),
                source: shared.source.clone(),
            },
        };
        f(&mut inner);
        Error {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn source_arc(self, source: Source) -> Self {
        self.edit(|inner| inner.source = Some(source))
    }

    pub(crate) fn attempts_made(self, attempts: u32) -> Self {
        self.edit(|inner| inner.attempts = attempts)
    }

    pub(crate) fn status_seen(self, status: Option<StatusCode>) -> Self {
        self.edit(|inner| inner.last_status = status)
    }

    pub(crate) fn retry_after_hint(self, retry_after: Option<Duration>) -> Self {
        self.edit(|inner| {
            if retry_after.is_some() {
                inner.retry_after = retry_after;
            }
        })
    }

    pub(crate) fn for_url(self, url: &url::Url) -> Self {
        self.edit(|inner| inner.url = Some(display_url(url)))
    }

    pub(crate) fn exhausted(self, attempts: u32) -> Self {
        self.edit(|inner| {
            let last = std::mem::replace(&mut inner.reason, Reason::Transport);
            inner.reason = Reason::RetriesExhausted {
                attempts,
                last: Box::new(last),
            };
            inner.attempts = attempts;
        })
    }

    /// Why the request failed.
    pub fn reason(&self) -> &Reason {
        &self.inner.reason
    }

    /// The stable machine-readable name of the reason.
    pub fn name(&self) -> &'static str {
        self.inner.reason.name()
    }

    /// When trying again makes sense: the limiter's or breaker's estimate, or the
    /// server's `Retry-After` when it asked for a longer wait than the client accepts.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Attempts sent to the network (0 when the request never left the client).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The status of the last response received, if any.
    pub fn last_status(&self) -> Option<StatusCode> {
        self.inner.last_status
    }

    /// The request's URL, without credentials or query.
    pub fn url(&self) -> Option<&str> {
        self.inner.url.as_deref()
    }

    /// Whether a timeout fired (in any phase, including the last attempt of an
    /// exhausted retry).
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.reason.root(), Reason::Timeout { .. })
    }

    /// Whether the request never reached the network because a local policy refused it
    /// (limiter, breaker, test mode, host guard, invalid input).
    pub fn is_local(&self) -> bool {
        self.inner.attempts == 0
    }
}

/// The URL as shown in errors: scheme, host, port and path, nothing that may hold a
/// secret (userinfo, query, fragment).
pub(crate) fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("reason", &self.inner.reason);
        if self.inner.attempts > 0 {
            d.field("attempts", &self.inner.attempts);
        }
        if let Some(status) = self.inner.last_status {
            d.field("last_status", &status);
        }
        if let Some(retry_after) = self.inner.retry_after {
            d.field("retry_after", &retry_after);
        }
        if let Some(url) = &self.inner.url {
            d.field("url", url);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner.reason)?;
        if let Some(url) = &self.inner.url {
            write!(f, " ({url})")?;
        }
        if let Some(status) = self.inner.last_status {
            if !matches!(self.inner.reason, Reason::Status { .. }) {
                write!(f, "; last status {}", status.as_u16())?;
            }
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|source| &**source as &(dyn StdError + 'static))
    }
}

impl From<Reason> for Error {
    fn from(reason: Reason) -> Self {
        Error::new(reason)
    }
}
