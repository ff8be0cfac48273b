//! The metrics the client (and the server-side layer of httpower-tower) records,
//! through the `metrics` facade.
//!
//! Nothing is recorded anywhere until the application installs a recorder (for
//! Prometheus: [`super::prometheus::install`]); without one each call is a no-op.
//! Every label value is a configured name (client, limiter, store, breaker key) or a
//! small fixed set (outcome, status class, reason), never a URL or an identifier, so
//! the number of series stays bounded however many users or paths there are.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `httpower_requests_total` | counter | client, method, outcome, status_class |
//! | `httpower_request_duration_seconds` | histogram | client, method, outcome |
//! | `httpower_attempt_duration_seconds` | histogram | client, method |
//! | `httpower_retries_total` | counter | client, reason |
//! | `httpower_rate_limit_decisions_total` | counter | limiter, result |
//! | `httpower_rate_limit_decision_seconds` | histogram | store |
//! | `httpower_store_errors_total` | counter | store |
//! | `httpower_store_fallbacks_total` | counter | limiter, mode |
//! | `httpower_circuit_breaker_state` | gauge | client, breaker |
//! | `httpower_circuit_breaker_transitions_total` | counter | client, breaker, from, to |
//! | `httpower_dedup_joined_total` | counter | client |

use std::time::Duration;

use http::Method;
use httpower_core::breaker::BreakerState;
use metrics::{describe_counter, describe_gauge, describe_histogram, SharedString, Unit};

/// Logical requests, by outcome (`ok`, `error_status`, or an error reason).
pub const REQUESTS_TOTAL: &str = "httpower_requests_total";
/// Duration of logical requests, retries and waits included.
pub const REQUEST_DURATION: &str = "httpower_request_duration_seconds";
/// Duration of single attempts, up to the response headers.
pub const ATTEMPT_DURATION: &str = "httpower_attempt_duration_seconds";
/// Retries, by reason (`503`, `connection_reset`, `attempt_timeout`, ...).
pub const RETRIES_TOTAL: &str = "httpower_retries_total";
/// Rate-limit decisions, by result (`allowed`, `waited`, `denied`).
pub const RATE_LIMIT_DECISIONS: &str = "httpower_rate_limit_decisions_total";
/// Time a limiter took to decide (store round trip included).
pub const RATE_LIMIT_DECISION_DURATION: &str = "httpower_rate_limit_decision_seconds";
/// Store failures seen by limiters.
pub const STORE_ERRORS: &str = "httpower_store_errors_total";
/// Decisions made by a fail mode because the store failed (`mode` = `fail_open` or
/// `fail_closed`).
pub const STORE_FALLBACKS: &str = "httpower_store_fallbacks_total";
/// Breaker state: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "httpower_circuit_breaker_state";
/// Breaker state changes.
pub const BREAKER_TRANSITIONS: &str = "httpower_circuit_breaker_transitions_total";
/// Requests that joined an identical request in flight instead of sending their own.
pub const DEDUP_JOINED: &str = "httpower_dedup_joined_total";

/// Every metric name, for documentation and tests.
pub const ALL: [&str; 11] = [
    REQUESTS_TOTAL,
    REQUEST_DURATION,
    ATTEMPT_DURATION,
    RETRIES_TOTAL,
    RATE_LIMIT_DECISIONS,
    RATE_LIMIT_DECISION_DURATION,
    STORE_ERRORS,
    STORE_FALLBACKS,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    DEDUP_JOINED,
];

/// Registers the help text and unit of every metric with the installed recorder.
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Logical HTTP requests by outcome."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Duration of logical requests, retries and waits included."
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Duration of single attempts, up to the response headers."
    );
    describe_counter!(RETRIES_TOTAL, Unit::Count, "Retries by reason.");
    describe_counter!(
        RATE_LIMIT_DECISIONS,
        Unit::Count,
        "Rate-limit decisions by limiter and result."
    );
    describe_histogram!(
        RATE_LIMIT_DECISION_DURATION,
        Unit::Seconds,
        "Time a limiter took to decide, by store."
    );
    describe_counter!(STORE_ERRORS, Unit::Count, "Limiter store failures.");
    describe_counter!(
        STORE_FALLBACKS,
        Unit::Count,
        "Decisions made by the fail mode because the store failed."
    );
    describe_gauge!(
        BREAKER_STATE,
        Unit::Count,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        Unit::Count,
        "Circuit breaker state changes."
    );
    describe_counter!(
        DEDUP_JOINED,
        Unit::Count,
        "Requests that joined an identical request in flight."
    );
}

/// The `status_class` label: `2xx` .. `5xx`, or `none` without a response.
pub(crate) fn status_class(status: Option<http::StatusCode>) -> &'static str {
    match status.map(|s| s.as_u16() / 100) {
        Some(1) => "1xx",
        Some(2) => "2xx",
        Some(3) => "3xx",
        Some(4) => "4xx",
        Some(5) => "5xx",
        _ => "none",
    }
}

/// The `method` label: the standard methods by name, anything else as `other`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The gauge value of a breaker state.
pub(crate) fn state_value(state: BreakerState) -> f64 {
    match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    }
}

pub(crate) fn request(
    client: &SharedString,
    method: &Method,
    outcome: &'static str,
    status: Option<http::StatusCode>,
    duration: Duration,
) {
    let method = method_label(method);
    metrics::counter!(REQUESTS_TOTAL,
        "client" => client.clone(),
        "method" => method,
        "outcome" => outcome,
        "status_class" => status_class(status))
    .increment(1);
    metrics::histogram!(REQUEST_DURATION,
        "client" => client.clone(),
        "method" => method,
        "outcome" => outcome)
    .record(duration.as_secs_f64());
}

pub(crate) fn attempt(client: &SharedString, method: &Method, duration: Duration) {
    metrics::histogram!(ATTEMPT_DURATION,
        "client" => client.clone(),
        "method" => method_label(method))
    .record(duration.as_secs_f64());
}

pub(crate) fn retry(client: &SharedString, reason: &str) {
    metrics::counter!(RETRIES_TOTAL,
        "client" => client.clone(),
        "reason" => retry_reason_label(reason))
    .increment(1);
}

/// Retry reasons are ours (a status code or a reason name); anything unexpected is
/// folded into `other` so a label can never carry arbitrary text.
fn retry_reason_label(reason: &str) -> SharedString {
    let known = reason.len() <= 24
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if known {
        SharedString::from(reason.to_owned())
    } else {
        SharedString::const_str("other")
    }
}

pub(crate) fn rate_limit_decision(
    limiter: &SharedString,
    store: &SharedString,
    result: &'static str,
    took: Duration,
) {
    metrics::counter!(RATE_LIMIT_DECISIONS,
        "limiter" => limiter.clone(),
        "result" => result)
    .increment(1);
    metrics::histogram!(RATE_LIMIT_DECISION_DURATION, "store" => store.clone())
        .record(took.as_secs_f64());
}

/// Counts a decision of an inbound limiter (the server-side layer): `result` is
/// `allowed` or `denied`. Client-side decisions are counted by the client itself.
pub fn inbound_decision(limiter: &SharedString, result: &'static str) {
    metrics::counter!(RATE_LIMIT_DECISIONS,
        "limiter" => limiter.clone(),
        "result" => result)
    .increment(1);
}

/// Counts a store failure that `limiter`'s fail mode answered: admitted (fail-open) or
/// denied (fail-closed).
pub fn store_fallback(limiter: &SharedString, store: &SharedString, admitted: bool) {
    metrics::counter!(STORE_ERRORS, "store" => store.clone()).increment(1);
    metrics::counter!(STORE_FALLBACKS,
        "limiter" => limiter.clone(),
        "mode" => if admitted { "fail_open" } else { "fail_closed" })
    .increment(1);
}

pub(crate) fn breaker_transition(
    client: &SharedString,
    breaker: &str,
    from: BreakerState,
    to: BreakerState,
) {
    let breaker = SharedString::from(breaker.to_owned());
    metrics::gauge!(BREAKER_STATE,
        "client" => client.clone(),
        "breaker" => breaker.clone())
    .set(state_value(to));
    metrics::counter!(BREAKER_TRANSITIONS,
        "client" => client.clone(),
        "breaker" => breaker,
        "from" => state_name(from),
        "to" => state_name(to))
    .increment(1);
}

pub(crate) fn dedup_joined(client: &SharedString) {
    metrics::counter!(DEDUP_JOINED, "client" => client.clone()).increment(1);
}

/// `closed`, `half_open`, `open`: label-safe names.
pub(crate) fn state_name(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    }
}
