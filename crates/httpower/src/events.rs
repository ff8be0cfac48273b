//! What the client reports while it works: retries, limiter waits and denials,
//! requests refused by an open breaker, deduplicated requests.
//!
//! A hook registered with [`ClientBuilder::on_event`](crate::ClientBuilder::on_event)
//! receives each event synchronously, on the task making the request, so it must be
//! cheap (count, log, forward to a channel). Breaker state changes come from the
//! breaker registry itself: [`Client::breakers`](crate::Client::breakers) and its
//! `subscribe`.

use std::sync::Arc;
use std::time::Duration;

use http::Method;

/// The request an event belongs to.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request's method.
    pub method: Method,
    /// The sanitized URL (no userinfo, secret query values or key-like path
    /// segments).
    pub url: Arc<str>,
    /// The correlation id sent upstream.
    pub correlation_id: Arc<str>,
}

impl RequestInfo {
    /// A placeholder for requests nobody observes: no allocation.
    pub(crate) fn unobserved(method: &Method) -> Self {
        static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        let empty = EMPTY.get_or_init(|| Arc::from(""));
        RequestInfo {
            method: method.clone(),
            url: Arc::clone(empty),
            correlation_id: Arc::clone(empty),
        }
    }
}

/// One event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An attempt failed and another follows after `delay`.
    Retry {
        /// The request.
        request: RequestInfo,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// Why it is retried (`status 503`, `connection_reset`, `attempt_timeout`).
        reason: Arc<str>,
        /// The wait before the next attempt.
        delay: Duration,
        /// Whether the wait came from the server's `Retry-After`.
        from_retry_after: bool,
    },
    /// The client-side limiter (or the server's advertised limit) delayed the request.
    RateLimitWait {
        /// The request.
        request: RequestInfo,
        /// The limiter key.
        key: Arc<str>,
        /// How long the request waited.
        waited: Duration,
        /// Whether the wait came from the server's rate-limit headers rather than the
        /// local limiter.
        server: bool,
    },
    /// The client-side limiter (or the server's advertised limit) refused the request.
    RateLimited {
        /// The request.
        request: RequestInfo,
        /// The limiter key.
        key: Arc<str>,
        /// When a request would be admitted.
        retry_after: Duration,
    },
    /// The circuit breaker refused the request without sending it.
    CircuitOpen {
        /// The request.
        request: RequestInfo,
        /// The breaker key.
        key: Arc<str>,
        /// When the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The request joined an identical one already in flight instead of sending its own.
    Deduplicated {
        /// The request.
        request: RequestInfo,
    },
    /// A circuit breaker changed state.
    BreakerStateChange {
        /// The breaker key (`host:port` unless configured).
        key: Arc<str>,
        /// The state before.
        from: httpower_core::breaker::BreakerState,
        /// The state after.
        to: httpower_core::breaker::BreakerState,
        /// Failures in the window when it changed.
        failures: u32,
        /// Failure percentage of the window when it changed.
        failure_rate: f64,
    },
    /// The limiter's store failed and the fail mode decided.
    StoreFallback {
        /// The request.
        request: RequestInfo,
        /// The limiter's name.
        limiter: Arc<str>,
        /// True when the request was admitted (fail-open).
        admitted: bool,
    },
}

impl ClientEvent {
    /// The request the event belongs to (`None` for breaker state changes).
    pub fn request(&self) -> Option<&RequestInfo> {
        match self {
            ClientEvent::Retry { request, .. }
            | ClientEvent::RateLimitWait { request, .. }
            | ClientEvent::RateLimited { request, .. }
            | ClientEvent::CircuitOpen { request, .. }
            | ClientEvent::Deduplicated { request }
            | ClientEvent::StoreFallback { request, .. } => Some(request),
            ClientEvent::BreakerStateChange { .. } => None,
        }
    }

    /// A stable name for the kind of event.
    pub fn name(&self) -> &'static str {
        match self {
            ClientEvent::Retry { .. } => "retry",
            ClientEvent::RateLimitWait { .. } => "rate_limit_wait",
            ClientEvent::RateLimited { .. } => "rate_limited",
            ClientEvent::CircuitOpen { .. } => "circuit_open",
            ClientEvent::Deduplicated { .. } => "deduplicated",
            ClientEvent::StoreFallback { .. } => "store_fallback",
            ClientEvent::BreakerStateChange { .. } => "breaker_state_change",
        }
    }
}

/// The registered hooks.
pub(crate) type EventHook = Arc<dyn Fn(&ClientEvent) + Send + Sync>;
