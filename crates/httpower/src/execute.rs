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
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};
use httpower_core::breaker::{BreakerState, CallOutcome};
use httpower_core::clock::{Clock, Nanos};
use httpower_core::rate::{AcquireError, Algorithm, Strategy};
use httpower_core::retry::{Classification, RetryState, Step, StopReason};
use httpower_core::store::{DecisionSource, LimiterError};
use httpower_core::timeout::{timeout_at_after, TimeoutPhase as CoreTimeoutPhase};
use tracing::Instrument;

use crate::client::{is_idempotent, Client, ClientInner};
use crate::error::{Error, Reason, TimeoutPhase};
use crate::events::{ClientEvent, RequestInfo};
use crate::feedback::{read_feedback, Admission};
use crate::observe;
use crate::request::Prepared;
use crate::response::Response;
use crate::transport::{violation_error, AttemptError, AttemptRequest};

/// Runs one logical request: correlation id, then dedup, then the policies — inside
/// the request's span, with its log lines and metrics.
pub(crate) async fn execute(client: &Client, mut request: Prepared) -> Result<Response, Error> {
    let inner = &*client.inner;
    let correlation_id = correlation_id(inner, &mut request);
    let span = if !inner.telemetry {
        tracing::Span::none()
    } else {
        tracing::info_span!(
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
        )
    };
    let logged = inner.log.enabled && observe::level_enabled(inner.log.level);
    // Retries, refusals and failures are logged at WARN whatever the request lines'
    // level, and carry the correlation id themselves (the request span may be off).
    let warned = inner.log.enabled && observe::level_enabled(tracing::Level::WARN);
    // The request's description (with its sanitized URL) is built only when someone
    // will see it: a log line, a span, an event listener.
    let info = if logged || warned || inner.has_listeners() || !span.is_disabled() {
        let url: Arc<str> = Arc::from(inner.sanitizer.url(&request.url));
        span.record("url.full", &*url);
        RequestInfo {
            method: request.method.clone(),
            url,
            correlation_id: Arc::from(correlation_id),
        }
    } else {
        RequestInfo::unobserved(&request.method)
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
    observe_outcome(
        inner,
        &span,
        &method,
        &info,
        &result,
        took,
        (logged, warned),
    );
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
    took: Duration,
    (logged, warned): (bool, bool),
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
    if inner.telemetry {
        observe::metrics::request(&inner.name, method, outcome, status, took);
    }
    let millis = took.as_millis();
    if !span.is_disabled() {
        if let Some(status) = status {
            span.record("http.response.status_code", status.as_u16());
        }
        span.record("attempts", attempts);
        span.record("outcome", outcome);
        span.record("duration_ms", millis);
    }
    if !(logged || (warned && result.is_err())) {
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
            correlation_id = %info.correlation_id,
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
    let id = new_correlation_id();
    if let Ok(value) = HeaderValue::from_str(&id) {
        request.headers.insert(header.clone(), value);
    }
    id
}

/// `req_` and 16 hex digits, without the formatting machinery.
fn new_correlation_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u64 = rand::random();
    let mut id = String::with_capacity(20);
    id.push_str("req_");
    for shift in (0..16).rev() {
        id.push(char::from(HEX[((n >> (shift * 4)) & 0xf) as usize]));
    }
    id
}

/// The policies, under the total deadline. `buffer` reads the body inside the attempt
/// (deduplicated responses are shared, so they must be in memory).
///
/// The total timeout has no timer of its own: every wait checks the deadline (the
/// retry backoff, the server feedback gate, a waiting limiter), and each attempt runs
/// under the earlier of its own deadline and the total one. One timer per attempt,
/// whatever the number of timeouts.
pub(crate) async fn run_logical(
    inner: &ClientInner,
    request: Prepared,
    info: RequestInfo,
    buffer: bool,
) -> Result<Response, Error> {
    let total = request.overrides.total_timeout.or(inner.total_timeout);
    let deadline = total.map(|total| (inner.clock.now() + total, total));
    run(inner, &request, &info, deadline, buffer)
        .await
        .map_err(|err| err.for_url(&request.url))
}

/// The default breaker and limiter key: `host:port`, borrowed from the URL when the
/// port is written in it.
fn host_key(url: &url::Url) -> Cow<'_, str> {
    if url.port().is_some() {
        return Cow::Borrowed(&url[url::Position::BeforeHost..url::Position::AfterPort]);
    }
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(port) => Cow::Owned(format!("{host}:{port}")),
        None => Cow::Borrowed(host),
    }
}

fn total_timeout_error() -> Error {
    Error::new(Reason::Timeout {
        phase: TimeoutPhase::Total,
    })
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
    deadline: Option<(Nanos, Duration)>,
    buffer: bool,
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
        let acquire = limiter.acquire_n(limit_key, cost);
        let decided = match (limiter.strategy(), deadline) {
            // Only a waiting limiter can outlast the deadline.
            (Strategy::Wait { .. }, Some((at, total))) => {
                timeout_at_after(&inner.clock, CoreTimeoutPhase::Total, at, total, acquire)
                    .await
                    .map_err(|_| total_timeout_error())?
            }
            _ => acquire.await,
        };
        let took = inner.clock.now().saturating_duration_since(started);
        let (limiter_label, store_label) = &inner.limiter_labels;
        let result = match &decided {
            Ok(_) if took.is_zero() => "allowed",
            Ok(_) => "waited",
            Err(_) => "denied",
        };
        if inner.telemetry {
            observe::metrics::rate_limit_decision(limiter_label, store_label, result, took);
        }
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
                    observe::metrics::store_fallback(limiter_label, store_label, true);
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
                        observe::metrics::store_fallback(limiter_label, store_label, false);
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
                            correlation_id = %info.correlation_id,
                            limiter = %limiter.name(),
                            reason = reason.name(),
                            "⏸ rate limited by `{}`: retry after {retry_after:.0?}",
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

    let mut permit = None;
    if let Some(breaker) = &breaker {
        match breaker.try_acquire() {
            Ok(granted) => permit = Some(granted),
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

    let result = attempts(inner, request, info, deadline, buffer, limit_key).await;
    if let Some(permit) = permit {
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
    deadline: Option<(Nanos, Duration)>,
    buffer: bool,
    limit_key: &str,
) -> Result<Response, Error> {
    let total_deadline = deadline.map(|(at, _)| at);
    let mut last_status: Option<StatusCode> = None;
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
            wait_for_server(inner, gate, limit_key, info, total_deadline).await?;
        }
        let attempt_span = if inner.telemetry {
            tracing::debug_span!(
                "httpower.attempt",
                attempt,
                "http.request.resend_count" = attempt - 1,
                "http.response.status_code" = tracing::field::Empty,
                duration_ms = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let attempt_started = inner.clock.now();
        // Boxed: the transport's future is large, and moving it through every layer of
        // this state machine costs more than one allocation.
        let send = Box::pin(
            inner
                .transport
                .send(AttemptRequest {
                    method: &request.method,
                    url: &request.url,
                    headers: &request.headers,
                    body: &request.body,
                    buffer,
                })
                .instrument(attempt_span.clone()),
        );
        // One timer: the attempt's deadline or the total one, whichever comes first.
        let limit = match (attempt_timeout, deadline) {
            (None, None) => None,
            (None, Some((total_at, total))) => Some((total_at, total, CoreTimeoutPhase::Total)),
            (Some(each), total) => {
                let attempt_at = inner.clock.now() + each;
                match total {
                    Some((total_at, total)) if total_at <= attempt_at => {
                        Some((total_at, total, CoreTimeoutPhase::Total))
                    }
                    _ => Some((attempt_at, each, CoreTimeoutPhase::Attempt)),
                }
            }
        };
        let outcome = match limit {
            None => into_outcome(send.await),
            Some((at, after, phase)) => {
                match timeout_at_after(&inner.clock, phase, at, after, send).await {
                    Ok(result) => into_outcome(result),
                    Err(elapsed) if elapsed.phase == CoreTimeoutPhase::Total => {
                        return Err(total_timeout_error()
                            .attempts_made(attempt)
                            .status_seen(last_status));
                    }
                    Err(_) => Outcome::TimedOut,
                }
            }
        };

        let attempt_took = inner.clock.now().saturating_duration_since(attempt_started);
        if inner.telemetry {
            observe::metrics::attempt(&inner.name, &request.method, attempt_took);
        }
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
            last_status = Some(response.status());
            let feedback = if may_carry_feedback(response.headers()) {
                read_feedback(response.status(), response.headers(), SystemTime::now())
            } else {
                None
            };
            if let Some(feedback) = feedback {
                server_retry_after = feedback.retry_after;
                if let Some(gate) = &inner.feedback {
                    gate.limits.record(limit_key, &feedback, inner.clock.now());
                }
            }
        }
        if let Outcome::Failed(failed) = &outcome {
            if is_local(&failed.failure.reason) && failed.failure.nothing_sent {
                // Refused before the network: nothing to retry.
                return Err(failed.error.clone().attempts_made(0));
            }
        }

        let classification = classify(inner, &outcome, retry_allowed, server_retry_after);
        let Some(state) = state.as_mut() else {
            return finish(outcome, None, attempt, last_status);
        };
        if matches!(classification, Classification::Retry { .. }) {
            if max_retries.is_some_and(|max| attempt > max) {
                return finish(
                    outcome,
                    Some(StopReason::MaxRetries { attempts: attempt }),
                    attempt,
                    last_status,
                );
            }
            if !request.body.is_replayable() {
                return Err(Error::new(Reason::BodyNotReplayable)
                    .attempts_made(attempt)
                    .status_seen(last_status));
            }
        }
        match state.next_on(classification, &inner.clock, total_deadline) {
            Step::Retry(event) => {
                if inner.telemetry {
                    observe::metrics::retry(&inner.name, &event.reason);
                }
                if inner.log.enabled {
                    tracing::warn!(
                        correlation_id = %info.correlation_id,
                        attempt = event.attempt,
                        reason = %event.reason,
                        delay_ms = event.delay.as_millis(),
                        "↻ attempt {} failed ({}); retrying in {:.0?}{}",
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
            Step::Stop(stop) => return finish(outcome, Some(stop), attempt, last_status),
        }
    }
}

fn into_outcome(result: Result<Response, AttemptError>) -> Outcome {
    match result {
        Ok(response) => Outcome::Response(response),
        Err(err) => Outcome::Failed(err),
    }
}

/// Whether any header could be rate-limit feedback: one pass over the names instead of
/// a lookup per known spelling, for the common response that has none.
fn may_carry_feedback(headers: &http::HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("ratelimit")
            || name.starts_with("x-ratelimit")
            || name.starts_with("x-rate-limit")
            || name == "retry-after"
    })
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
    last_status: Option<StatusCode>,
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
    let error = error.status_seen(last_status);
    Err(match stop {
        // With no retry made, the failure speaks for itself.
        Some(StopReason::MaxRetries { .. } | StopReason::DeadlineWouldPass { .. })
            if attempts > 1 =>
        {
            error.exhausted(attempts)
        }
        Some(StopReason::BudgetExhausted) => {
            let source: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
            Error::new(Reason::RetryBudgetExhausted)
                .source_arc(source)
                .attempts_made(attempts)
                .status_seen(last_status)
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
