//! The pipeline of one logical request.
//!
//! ```text
//! correlation id → dedup → total timeout ┐
//!   host guard → rate limit (adaptive) → circuit breaker → retry ┐
//!       server feedback gate → attempt timeout → transport
//! ```
//!
//! * The **rate limit** charges one token per logical request, never per attempt, and
//!   comes before the breaker so that local refusals never trip it. While the same
//!   key's breaker is half-open or open, each request costs more (2 or 10 tokens), so
//!   the effective rate drops to a half or a tenth until the dependency recovers.
//! * The **breaker** records one outcome per logical request, after its retries.
//! * Each **attempt** first passes the server feedback gate: if the server said its
//!   quota is spent until some time, the attempt waits for it (or fails at once with
//!   the error strategy), so the client slows down before it is answered 429.
//! * **Retry** follows SPEC §2: only transient outcomes, only for idempotent methods
//!   (or `retry_safe`, or an `Idempotency-Key`), any method when nothing was sent;
//!   `Retry-After` replaces the backoff, capped by `max_retry_after`; no retry that
//!   would end past the total deadline; the shared budget is charged per retry.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};
use httpower_core::breaker::{BreakerPermit, BreakerState, CallOutcome};
use httpower_core::clock::{Clock, Nanos};
use httpower_core::rate::{AcquireError, Algorithm, Strategy};
use httpower_core::retry::{Classification, RetryState, Step, StopReason};
use httpower_core::store::{DecisionSource, LimiterError};
use httpower_core::timeout::{timeout_at_after, TimeoutPhase as CoreTimeoutPhase};
use metrics::SharedString;
use parking_lot::Mutex;
use tracing::Instrument;

use crate::client::{is_idempotent, Client, ClientInner, SharedClock};
use crate::error::{Error, Reason, TimeoutPhase};
use crate::events::{ClientEvent, RequestInfo};
use crate::feedback::{read_feedback, Admission};
use crate::request::Prepared;
use crate::response::Response;
use crate::observe;
use crate::transport::{violation_error, AttemptError, AttemptRequest};

/// Runs one logical request: correlation id, then dedup, then the policies — inside
/// the request's span, with its log lines and metrics.
pub(crate) async fn execute(client: &Client, mut request: Prepared) -> Result<Response, Error> {
    let inner = &*client.inner;
    let correlation_id = correlation_id(inner, &mut request);
    let span = tracing::info_span!(
        "httpower.request",
        client = %inner.name,
        correlation_id = %correlation_id,
        "http.request.method" = observe::metrics::method_label(&request.method),
        "url.full" = tracing::field::Empty,
        "server.address" = request.url.host_str().unwrap_or(""),
        "http.response.status_code" = tracing::field::Empty,
        attempts = tracing::field::Empty,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let logged = inner.log.enabled && observe::level_enabled(inner.log.level);
    // Sanitizing the URL costs a little: only when someone will see it.
    let url: Arc<str> = if logged || inner.has_listeners() || !span.is_disabled() {
        Arc::from(inner.sanitizer.url(&request.url))
    } else {
        Arc::from("")
    };
    span.record("url.full", &*url);
    let info = RequestInfo {
        method: request.method.clone(),
        url,
        correlation_id: Arc::from(correlation_id),
    };
    if logged {
        span.in_scope(|| log_request(inner, &request, &info));
    }
    let method = request.method.clone();
    let started = inner.clock.now();
    // The client-wide setting covers the safe methods only: two identical POSTs are two
    // orders. A caller may still ask for it on one request of any method.
    let dedup = request
        .overrides
        .dedup
        .unwrap_or_else(|| inner.dedup && is_safe(&request.method))
        && request.body.is_replayable();
    let result = if dedup {
        crate::dedup::run(client, request, info.clone())
            .instrument(span.clone())
            .await
    } else {
        run_logical(inner, request, info.clone(), false)
            .instrument(span.clone())
            .await
    };
    let took = inner.clock.now().saturating_duration_since(started);
    observe_outcome(inner, &span, &method, &info, &result, took, logged);
    result
}

/// The `→ GET url` line, with sanitized headers and body when asked for.
fn log_request(inner: &ClientInner, request: &Prepared, info: &RequestInfo) {
    let level = inner.log.level;
    let headers = inner
        .log
        .headers
        .then(|| inner.sanitizer.headers(&request.headers));
    let body = match (inner.log.body, request.body.bytes()) {
        (true, Some(bytes)) => {
            let content_type = request
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            Some(inner.sanitizer.body(content_type, bytes))
        }
        _ => None,
    };
    match (headers, body) {
        (None, None) => observe::line!(level, "→ {} {}", info.method, info.url),
        (headers, body) => observe::line!(
            level,
            headers = ?headers.unwrap_or_default(),
            body = body.as_deref().unwrap_or(""),
            "→ {} {}",
            info.method,
            info.url
        ),
    }
}

/// The `← 200 (45ms)` line, the span's result fields and the request metrics.
fn observe_outcome(
    inner: &ClientInner,
    span: &tracing::Span,
    method: &http::Method,
    info: &RequestInfo,
    result: &Result<Response, Error>,
    took: std::time::Duration,
    logged: bool,
) {
    let (outcome, status, attempts) = match result {
        Ok(response) => (
            if response.status().is_client_error() || response.status().is_server_error() {
                "error_status"
            } else {
                "ok"
            },
            Some(response.status()),
            response.attempts(),
        ),
        Err(err) => (err.name(), err.last_status(), err.attempts()),
    };
    observe::metrics::request(&inner.name, method, outcome, status, took);
    let millis = took.as_millis();
    if !span.is_disabled() {
        if let Some(status) = status {
            span.record("http.response.status_code", status.as_u16());
        }
        span.record("attempts", attempts);
        span.record("outcome", outcome);
        span.record("duration_ms", millis);
    }
    if !logged {
        return;
    }
    let level = inner.log.level;
    span.in_scope(|| match result {
        Ok(response) if inner.log.headers => observe::line!(
            level,
            headers = ?inner.sanitizer.headers(response.headers()),
            "← {} ({millis}ms) {} {}",
            response.status().as_u16(),
            info.method,
            info.url
        ),
        Ok(response) => observe::line!(
            level,
            "← {} ({millis}ms) {} {}",
            response.status().as_u16(),
            info.method,
            info.url
        ),
        Err(err) => tracing::warn!(
            reason = err.name(),
            attempts,
            "✗ {} ({millis}ms) {} {}: {err}",
            err.name(),
            info.method,
            info.url
        ),
    });
}

/// Methods that only read: sharing one response among identical ones is harmless.
fn is_safe(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// The correlation id: the request's own (builder or header), else the task's
/// ([`observe::with_correlation_id`]), else a new `req_` + 16 hex one. The header is set
/// either way.
fn correlation_id(inner: &ClientInner, request: &mut Prepared) -> String {
    let header = &inner.correlation_header;
    if let Some(id) = request.overrides.correlation_id.take() {
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers.insert(header.clone(), value);
            return id;
        }
    }
    if let Some(id) = request
        .headers
        .get(header)
        .and_then(|value| value.to_str().ok())
    {
        return id.to_owned();
    }
    if let Some(id) = observe::current_correlation_id() {
        if let Ok(value) = HeaderValue::from_str(&id) {
            request.headers.insert(header.clone(), value);
            return id.to_string();
        }
    }
    let id = observe::new_correlation_id();
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers.insert(header.clone(), value);
    }
    id
}

/// What an interrupted request had done: read after a total timeout cancels it.
#[derive(Default)]
struct Progress {
    attempts: AtomicU32,
    last_status: AtomicU16,
    permit: Mutex<Option<BreakerPermit<SharedClock>>>,
}

impl Progress {
    fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }

    fn last_status(&self) -> Option<StatusCode> {
        StatusCode::from_u16(self.last_status.load(Ordering::Relaxed)).ok()
    }
}

/// The policies under the total timeout. `buffer` reads the body inside the attempt
/// (deduplicated responses are shared, so they must be in memory).
pub(crate) async fn run_logical(
    inner: &ClientInner,
    request: Prepared,
    info: RequestInfo,
    buffer: bool,
) -> Result<Response, Error> {
    let progress = Progress::default();
    let total = request.overrides.total_timeout.or(inner.total_timeout);
    let result = match total {
        None => run(inner, &request, &info, None, buffer, &progress).await,
        Some(total) => {
            let deadline = inner.clock.now() + total;
            let run = run(inner, &request, &info, Some(deadline), buffer, &progress);
            match timeout_at_after(&inner.clock, CoreTimeoutPhase::Total, deadline, total, run)
                .await
            {
                Ok(result) => result,
                Err(_) => {
                    // The attempt in flight was cut short: a dependency too slow to
                    // answer in time failed, as far as the breaker is concerned.
                    if let Some(permit) = progress.permit.lock().take() {
                        permit.record(if progress.attempts() > 0 {
                            CallOutcome::Failure
                        } else {
                            CallOutcome::Ignored
                        });
                    }
                    Err(Error::new(Reason::Timeout {
                        phase: TimeoutPhase::Total,
                    })
                    .attempts_made(progress.attempts())
                    .status_seen(progress.last_status()))
                }
            }
        }
    };
    result.map_err(|err| err.for_url(&request.url))
}

/// `host:port` of the request (the default breaker and limiter key).
fn host_key(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// One attempt's outcome. It lives on the stack for one attempt; boxing the response
/// would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Response(Response),
    Failed(AttemptError),
    TimedOut,
}

async fn run(
    inner: &ClientInner,
    request: &Prepared,
    info: &RequestInfo,
    deadline: Option<Nanos>,
    buffer: bool,
    progress: &Progress,
) -> Result<Response, Error> {
    if let Some(policy) = &inner.host_policy {
        policy
            .check_url(&request.url)
            .map_err(|violation| violation_error(violation).error)?;
    }
    let host = host_key(&request.url);
    let breaker_key: &str = request
        .overrides
        .breaker_key
        .as_deref()
        .or(inner.breaker_key.as_deref())
        .unwrap_or(&host);
    let limit_key: &str = request
        .overrides
        .rate_limit_key
        .as_deref()
        .or(inner.rate_limit_key.as_deref())
        .unwrap_or(&host);
    let breaker = inner
        .breakers
        .as_ref()
        .map(|registry| registry.get(breaker_key));

    if let Some(limiter) = &inner.limiter {
        let factor = match (&breaker, inner.adaptive) {
            (Some(breaker), true) => {
                let snapshot = breaker.state();
                match snapshot.state {
                    BreakerState::Closed => 1,
                    BreakerState::HalfOpen => 2,
                    // The open timeout has passed: this request may become the probe,
                    // so it pays the half-open price.
                    BreakerState::Open if snapshot.retry_after.is_some_and(|d| d.is_zero()) => 2,
                    BreakerState::Open => 10,
                }
            }
            _ => 1,
        };
        let cost = factor.min(limiter.algorithm().limit()).max(1);
        let started = inner.clock.now();
        let decided = limiter.acquire_n(limit_key, cost).await;
        let took = inner.clock.now().saturating_duration_since(started);
        let limiter_label = SharedString::from(Arc::clone(limiter.name()));
        let store_label = SharedString::from(limiter.store().name().to_owned());
        let result = match &decided {
            Ok(_) if took.is_zero() => "allowed",
            Ok(_) => "waited",
            Err(_) => "denied",
        };
        observe::metrics::rate_limit_decision(&limiter_label, &store_label, result, took);
        match decided {
            Ok(verdict) => {
                let waited = took;
                if !waited.is_zero() {
                    inner.emit(|| ClientEvent::RateLimitWait {
                        request: info.clone(),
                        key: Arc::from(limit_key),
                        waited,
                        server: false,
                    });
                }
                if let DecisionSource::FailOpen(_) = verdict.source {
                    observe::metrics::store_fallback(&limiter_label, &store_label, true);
                    inner.emit(|| ClientEvent::StoreFallback {
                        request: info.clone(),
                        limiter: Arc::clone(limiter.name()),
                        admitted: true,
                    });
                }
            }
            Err(err) => {
                let reason = match err {
                    LimiterError::Limited { source, .. } => match source {
                        AcquireError::WaitTimeout { retry_after, .. } => {
                            Reason::RateLimitWaitTimeout { retry_after }
                        }
                        other => Reason::TooManyRequests {
                            retry_after: other.retry_after().unwrap_or_default(),
                        },
                    },
                    LimiterError::StoreUnavailable { .. } => {
                        observe::metrics::store_fallback(&limiter_label, &store_label, false);
                        inner.emit(|| ClientEvent::StoreFallback {
                            request: info.clone(),
                            limiter: Arc::clone(limiter.name()),
                            admitted: false,
                        });
                        Reason::StoreUnavailable {
                            store: limiter.store().name().to_owned(),
                        }
                    }
                };
                if let Some(retry_after) = reason.retry_after() {
                    if inner.log.enabled {
                        tracing::warn!(
                            limiter = %limiter.name(),
                            reason = reason.name(),
                            "⏸ rate limited by `{}`: retry after {retry_after:?}",
                            limiter.name()
                        );
                    }
                    inner.emit(|| ClientEvent::RateLimited {
                        request: info.clone(),
                        key: Arc::from(limit_key),
                        retry_after,
                    });
                }
                return Err(Error::new(reason));
            }
        }
    }

    if let Some(breaker) = &breaker {
        match breaker.try_acquire() {
            Ok(permit) => *progress.permit.lock() = Some(permit),
            Err(open) => {
                inner.emit(|| ClientEvent::CircuitOpen {
                    request: info.clone(),
                    key: Arc::from(breaker_key),
                    retry_after: open.retry_after,
                });
                return Err(Error::new(Reason::ServiceUnavailable {
                    retry_after: open.retry_after,
                }));
            }
        }
    }

    let result = attempts(inner, request, info, deadline, buffer, progress, limit_key).await;
    if let Some(permit) = progress.permit.lock().take() {
        permit.record(match &result {
            Ok(response) if (inner.breaker_failure)(response.status()) => CallOutcome::Failure,
            Ok(_) => CallOutcome::Success,
            Err(err) if counts_against_breaker(err.reason()) => CallOutcome::Failure,
            Err(_) => CallOutcome::Ignored,
        });
    }
    result
}

/// Failures of the dependency (not of the request or of a local policy).
fn counts_against_breaker(reason: &Reason) -> bool {
    matches!(
        reason.root(),
        Reason::Timeout { .. }
            | Reason::Connect
            | Reason::ConnectionReset
            | Reason::Dns
            | Reason::Tls
            | Reason::Body
            | Reason::Transport
    )
}

/// The retry loop.
async fn attempts(
    inner: &ClientInner,
    request: &Prepared,
    info: &RequestInfo,
    deadline: Option<Nanos>,
    buffer: bool,
    progress: &Progress,
    limit_key: &str,
) -> Result<Response, Error> {
    let retry_allowed = request
        .overrides
        .retry_safe
        .unwrap_or(inner.retry.retry_safe)
        || is_idempotent(&request.method)
        || request.headers.contains_key("idempotency-key");
    let max_retries = request.overrides.max_retries;
    let mut state: Option<RetryState<'_>> = match (&inner.retry.policy, max_retries) {
        (_, Some(0)) | (None, _) => None,
        (Some(policy), _) => Some(policy.start()),
    };
    let attempt_timeout = request.overrides.attempt_timeout.or(inner.attempt_timeout);
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        if let Some(gate) = &inner.feedback {
            wait_for_server(inner, gate, limit_key, info, deadline).await?;
        }
        progress.attempts.store(attempt, Ordering::Relaxed);
        let attempt_span = tracing::debug_span!(
            "httpower.attempt",
            attempt,
            "http.request.resend_count" = attempt - 1,
            "http.response.status_code" = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let attempt_started = inner.clock.now();
        let send = inner
            .transport
            .send(AttemptRequest {
                method: &request.method,
                url: &request.url,
                headers: &request.headers,
                body: &request.body,
                buffer,
            })
            .instrument(attempt_span.clone());
        let outcome = match attempt_timeout {
            Some(limit) => {
                let attempt_deadline = inner.clock.now() + limit;
                if deadline.is_some_and(|total| attempt_deadline >= total) {
                    // The total timeout ends this attempt first; let it speak.
                    into_outcome(send.await)
                } else {
                    match timeout_at_after(
                        &inner.clock,
                        CoreTimeoutPhase::Attempt,
                        attempt_deadline,
                        limit,
                        send,
                    )
                    .await
                    {
                        Ok(result) => into_outcome(result),
                        Err(_) => Outcome::TimedOut,
                    }
                }
            }
            None => into_outcome(send.await),
        };

        let attempt_took = inner.clock.now().saturating_duration_since(attempt_started);
        observe::metrics::attempt(&inner.name, &request.method, attempt_took);
        if !attempt_span.is_disabled() {
            if let Outcome::Response(response) = &outcome {
                attempt_span.record("http.response.status_code", response.status().as_u16());
            }
            attempt_span.record("duration_ms", attempt_took.as_millis());
        }
        // One reading of the response's rate-limit headers serves both the retry hint
        // and the server feedback gate, so the two agree on when to come back.
        let mut server_retry_after = None;
        if let Outcome::Response(response) = &outcome {
            progress
                .last_status
                .store(response.status().as_u16(), Ordering::Relaxed);
            if let Some(feedback) =
                read_feedback(response.status(), response.headers(), SystemTime::now())
            {
                server_retry_after = feedback.retry_after;
                if let Some(gate) = &inner.feedback {
                    gate.limits.record(limit_key, &feedback, inner.clock.now());
                }
            }
        }
        if let Outcome::Failed(failed) = &outcome {
            if is_local(&failed.failure.reason) {
                // Refused before the network: nothing to retry.
                return Err(failed.error.clone().attempts_made(0));
            }
        }

        let classification = classify(inner, &outcome, retry_allowed, server_retry_after);
        let Some(state) = state.as_mut() else {
            return finish(outcome, None, attempt, progress);
        };
        if matches!(classification, Classification::Retry { .. }) {
            if max_retries.is_some_and(|max| attempt > max) {
                return finish(
                    outcome,
                    Some(StopReason::MaxRetries { attempts: attempt }),
                    attempt,
                    progress,
                );
            }
            if !request.body.is_replayable() {
                return Err(Error::new(Reason::BodyNotReplayable)
                    .attempts_made(attempt)
                    .status_seen(progress.last_status()));
            }
        }
        match state.next_on(classification, &inner.clock, deadline) {
            Step::Retry(event) => {
                observe::metrics::retry(&inner.name, &event.reason);
                if inner.log.enabled {
                    tracing::warn!(
                        attempt = event.attempt,
                        reason = %event.reason,
                        delay_ms = event.delay.as_millis(),
                        "↻ attempt {} failed ({}); retrying in {:?}{}",
                        event.attempt,
                        event.reason,
                        event.delay,
                        if event.from_hint { " (Retry-After)" } else { "" }
                    );
                }
                inner.emit(|| ClientEvent::Retry {
                    request: info.clone(),
                    attempt: event.attempt,
                    reason: Arc::from(event.reason.as_ref()),
                    delay: event.delay,
                    from_retry_after: event.from_hint,
                });
                drop(outcome);
                inner.clock.sleep(event.delay).await;
            }
            Step::Stop(stop) => return finish(outcome, Some(stop), attempt, progress),
        }
    }
}

fn into_outcome(result: Result<Response, AttemptError>) -> Outcome {
    match result {
        Ok(response) => Outcome::Response(response),
        Err(err) => Outcome::Failed(err),
    }
}

/// Failures decided locally, before anything reached the network.
fn is_local(reason: &Reason) -> bool {
    matches!(
        reason,
        Reason::NetworkBlocked
            | Reason::HostNotAllowed { .. }
            | Reason::BlockedPrivateIp { .. }
            | Reason::InvalidUrl
    )
}

/// Whether an attempt's outcome is final, or worth another attempt.
fn classify(
    inner: &ClientInner,
    outcome: &Outcome,
    retry_allowed: bool,
    retry_after: Option<Duration>,
) -> Classification {
    match outcome {
        Outcome::Response(response) => {
            let status = response.status();
            if !retry_allowed || !inner.retry.statuses.contains(&status) {
                return Classification::Success;
            }
            let hint = if inner.retry.retry_after_any_status
                || status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE
            {
                retry_after
            } else {
                None
            };
            Classification::retry_after(Cow::Owned(status.as_u16().to_string()), hint)
        }
        Outcome::Failed(failed) => {
            let failure = &failed.failure;
            if failure.transient && (retry_allowed || failure.nothing_sent) {
                Classification::retry(failure.reason.name())
            } else {
                Classification::Fail
            }
        }
        Outcome::TimedOut if retry_allowed => Classification::retry("attempt_timeout"),
        Outcome::TimedOut => Classification::Fail,
    }
}

/// The caller's result once retrying stops.
fn finish(
    outcome: Outcome,
    stop: Option<StopReason>,
    attempts: u32,
    progress: &Progress,
) -> Result<Response, Error> {
    let error = match outcome {
        Outcome::Response(mut response) => {
            // A retryable status that could not be retried is still a response.
            response.set_attempts(attempts);
            return Ok(response);
        }
        Outcome::Failed(failed) => failed.error,
        Outcome::TimedOut => Error::new(Reason::Timeout {
            phase: TimeoutPhase::Attempt,
        }),
    };
    let error = error.status_seen(progress.last_status());
    Err(match stop {
        Some(StopReason::MaxRetries { .. } | StopReason::DeadlineWouldPass { .. }) => {
            error.exhausted(attempts)
        }
        Some(StopReason::BudgetExhausted) => {
            let source: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
            Error::new(Reason::RetryBudgetExhausted)
                .source_arc(source)
                .attempts_made(attempts)
                .status_seen(progress.last_status())
        }
        _ => error.attempts_made(attempts),
    })
}

/// The server feedback gate: waits until the server's advertised quota allows the
/// attempt, or refuses it at once.
async fn wait_for_server(
    inner: &ClientInner,
    gate: &crate::client::FeedbackGate,
    key: &str,
    info: &RequestInfo,
    deadline: Option<Nanos>,
) -> Result<(), Error> {
    let now = inner.clock.now();
    let Admission::NotBefore(at) = gate.limits.admit(key, now) else {
        return Ok(());
    };
    let wait = at.saturating_duration_since(now);
    let refuse = |reason: Reason| {
        inner.emit(|| ClientEvent::RateLimited {
            request: info.clone(),
            key: Arc::from(key),
            retry_after: wait,
        });
        Err(Error::new(reason))
    };
    match gate.strategy {
        Strategy::Error => refuse(Reason::TooManyRequests { retry_after: wait }),
        Strategy::Wait { max_wait } => {
            if wait > max_wait || deadline.is_some_and(|deadline| at >= deadline) {
                return refuse(Reason::RateLimitWaitTimeout { retry_after: wait });
            }
            inner.clock.sleep_until(at).await;
            inner.emit(|| ClientEvent::RateLimitWait {
                request: info.clone(),
                key: Arc::from(key),
                waited: wait,
                server: true,
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request future must be `Send`, or it could not be spawned on a
    /// multi-threaded runtime.
    #[test]
    fn request_future_is_send() {
        fn is_send<T: Send>(_: &T) {}
        let client = Client::builder().test_mode().build().unwrap();
        let (client, prepared) = client.get("http://127.0.0.1/").prepare().unwrap();
        let future = execute(&client, prepared);
        is_send(&future);
    }
}
