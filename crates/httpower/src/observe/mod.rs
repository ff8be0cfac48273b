//! Observability: correlation ids, tracing spans and log lines, Prometheus metrics and
//! client events — all of it sanitized.
//!
//! Operators run a service blind without telemetry, and a token in a log line is a
//! security incident. So everything the client reports goes through one
//! [`Sanitizer`](crate::sanitize::Sanitizer) first: URLs lose userinfo and secret query
//! values, sensitive headers and body fields become `[REDACTED]`, card numbers vanish
//! from free text. What is *sent* is never touched; only what is *reported*.
//!
//! * **Correlation ids** tie every line of one request together, and that request to
//!   the service that made it: the id is taken from the caller's context
//!   ([`with_correlation_id`], which the inbound layer sets for each incoming request),
//!   or generated (`req_` + 16 hex digits), and sent upstream in a configurable header.
//! * **Tracing**: one span per logical request (`httpower.request`) and one per attempt
//!   (`httpower.attempt`), with OpenTelemetry HTTP field names where one exists
//!   (`http.request.method`, `url.full`, `http.response.status_code`,
//!   `http.request.resend_count`, `server.address`), and human lines
//!   `→ GET https://api.example.com/users/1` / `← 200 (45ms)` at the configured level.
//! * **Metrics** through the `metrics` facade, named `httpower_*` (see [`metrics`] and
//!   `docs/OBSERVABILITY.md`). Labels are configured names — client, limiter, breaker
//!   key — never URLs or identifiers, so cardinality stays bounded.
//! * **Events**: [`Client::subscribe`](crate::Client::subscribe) hands out a broadcast
//!   receiver of [`ClientEvent`](crate::ClientEvent)s (retries, breaker state changes,
//!   rate-limit waits and refusals, deduplication, store fallbacks).

pub mod metrics;
pub mod prometheus;

use std::future::Future;
use std::sync::Arc;

/// A correlation id: taken from the context, or generated.
pub type CorrelationId = Arc<str>;

tokio::task_local! {
    static CORRELATION_ID: CorrelationId;
}

/// Runs `future` with `id` as the correlation id of every request it makes (unless a
/// request sets its own).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use httpower::observe::{current_correlation_id, with_correlation_id};
///
/// with_correlation_id("req_from_the_caller", async {
///     assert_eq!(current_correlation_id().as_deref(), Some("req_from_the_caller"));
/// })
/// .await;
/// assert_eq!(current_correlation_id(), None);
/// # });
/// ```
pub async fn with_correlation_id<F: Future>(id: impl Into<CorrelationId>, future: F) -> F::Output {
    CORRELATION_ID.scope(id.into(), future).await
}

/// [`with_correlation_id`] as a nameable future type, for middleware that must spell
/// out its future (a tower service's `Future`) without boxing.
pub fn correlation_scope<F: Future>(
    id: impl Into<CorrelationId>,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<CorrelationId, F> {
    CORRELATION_ID.scope(id.into(), future)
}

/// The correlation id of the current task, if one was set with
/// [`with_correlation_id`].
pub fn current_correlation_id() -> Option<CorrelationId> {
    CORRELATION_ID.try_with(Arc::clone).ok()
}

/// A new correlation id: `req_` and 16 hex digits.
pub fn new_correlation_id() -> String {
    format!("req_{:016x}", rand::random::<u64>())
}

/// How requests are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Whether request and response lines are written at all.
    pub enabled: bool,
    /// The level of the request and response lines. Retries, refusals and breaker
    /// state changes are logged at `WARN`.
    pub level: tracing::Level,
    /// Whether the (sanitized) headers are part of the lines.
    pub headers: bool,
    /// Whether the (sanitized, truncated) request body is part of the request line,
    /// and a response body already in memory part of the response line.
    pub body: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            enabled: true,
            level: tracing::Level::INFO,
            headers: false,
            body: false,
        }
    }
}

impl LogOptions {
    /// Logging off: no lines (spans and metrics still exist).
    pub fn off() -> Self {
        LogOptions {
            enabled: false,
            ..LogOptions::default()
        }
    }
}

/// Writes a line at a level chosen at run time (`tracing`'s macros want a constant).
macro_rules! line {
    ($level:expr, $($rest:tt)+) => {
        match $level {
            tracing::Level::ERROR => tracing::error!($($rest)+),
            tracing::Level::WARN => tracing::warn!($($rest)+),
            tracing::Level::INFO => tracing::info!($($rest)+),
            tracing::Level::DEBUG => tracing::debug!($($rest)+),
            _ => tracing::trace!($($rest)+),
        }
    };
}
pub(crate) use line;

/// Whether a line at `level` would be written by the current subscriber.
pub(crate) fn level_enabled(level: tracing::Level) -> bool {
    match level {
        tracing::Level::ERROR => tracing::enabled!(tracing::Level::ERROR),
        tracing::Level::WARN => tracing::enabled!(tracing::Level::WARN),
        tracing::Level::INFO => tracing::enabled!(tracing::Level::INFO),
        tracing::Level::DEBUG => tracing::enabled!(tracing::Level::DEBUG),
        _ => tracing::enabled!(tracing::Level::TRACE),
    }
}

/// Follows the client's breakers: metrics, a `WARN` line and an event per state change.
/// Needs a runtime to run on; a client built outside one reports breaker changes only
/// through [`Breakers::subscribe`](crate::Breakers).
pub(crate) fn watch_breakers(client: &crate::Client) {
    let Some(breakers) = &client.inner.breakers else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut changes = breakers.subscribe();
    // Weak: the watcher must not keep the client alive; it ends when the breakers (and
    // with them the channel) are dropped.
    let client = Arc::downgrade(&client.inner);
    runtime.spawn(async move {
        loop {
            match changes.recv().await {
                Ok(change) => {
                    let Some(inner) = client.upgrade() else {
                        break;
                    };
                    breaker_changed(&inner, &change);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

fn breaker_changed(
    inner: &crate::client::ClientInner,
    change: &httpower_core::breaker::StateChange,
) {
    let key: Arc<str> = change.key.clone().unwrap_or_else(|| Arc::from("default"));
    if inner.telemetry {
        metrics::breaker_transition(&inner.name, &key, change.from, change.to);
    }
    if inner.log.enabled {
        tracing::warn!(
            client = %inner.name,
            breaker = %key,
            from = metrics::state_name(change.from),
            to = metrics::state_name(change.to),
            failures = change.failures,
            failure_rate = change.failure_rate,
            "⚡ circuit {key}: {} → {} ({} failures, {:.0}% failed)",
            change.from,
            change.to,
            change.failures,
            change.failure_rate
        );
    }
    inner.emit(|| crate::ClientEvent::BreakerStateChange {
        key,
        from: change.from,
        to: change.to,
        failures: change.failures,
        failure_rate: change.failure_rate,
    });
}
