//! What the rate-limit layer answers: the 429 and 503 responses and the quota headers.
//!
//! # Header formats
//!
//! The layer speaks the structured-field form of the IETF httpapi rate-limit headers
//! draft (`draft-ietf-httpapi-ratelimit-headers`, revisions 08 and later), where each
//! quota policy is a list member named by an sf-string:
//!
//! ```text
//! RateLimit-Policy: "login";q=10;w=300
//! RateLimit: "login";r=0;t=42
//! ```
//!
//! - `RateLimit-Policy`: one member per limiter: `q` is the quota (the burst of a token
//!   bucket, the limit of a window) and `w` the time in seconds the whole quota takes to
//!   come back (the window; for a token bucket, `burst × emission interval`).
//! - `RateLimit`: one member per limiter, as that limiter sees the request after the
//!   decision: `r` is the cells left and `t` is delta-seconds (never an epoch): for a
//!   denial, when the same request would be admitted (the value of `Retry-After`);
//!   otherwise when the whole quota is back. Seconds are rounded up.
//! - A composite layer (several limiters) lists every limiter in both headers, in the
//!   order they were configured.
//! - Legacy headers, when enabled with
//!   [`legacy_headers`](crate::layer::RateLimitLayerBuilder::legacy_headers), describe
//!   the deciding limiter only: `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
//!   `X-RateLimit-Reset` (delta-seconds until the whole quota is back, like `t`; not an
//!   epoch timestamp).
//!
//! # Responses
//!
//! Over the limit: `429 Too Many Requests`, `Retry-After` (whole seconds, rounded up, at
//! least 1), the headers above and a JSON body:
//!
//! ```json
//! {"error":"rate_limited","limiter":"login","retry_after":42,
//!  "message":"Too many requests for `login`; retry in 42 seconds."}
//! ```
//!
//! Store unreachable and the limiter fail-closed: `503 Service Unavailable`,
//! `Retry-After` (the limiter's decision timeout, rounded up, at least 1) and:
//!
//! ```json
//! {"error":"rate_limiter_unavailable","limiter":"login","retry_after":1,
//!  "message":"The rate limiter `login` is unavailable; retry in 1 seconds."}
//! ```
//!
//! The store's own error never reaches the body (it may name hosts or addresses).
//!
//! Store unreachable and the limiter fail-open: the request passes **without** quota
//! headers — the layer does not know the quota, and announcing a full one would invite
//! clients to burst exactly when the limiter cannot count.

use std::fmt::Write as _;
use std::time::Duration;

use axum::body::Body;
use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use httpower_core::rate::{Algorithm, AnyAlgorithm, Decision};

/// `RateLimit` (IETF draft).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy` (IETF draft).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `X-RateLimit-Limit` (legacy).
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining` (legacy).
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (legacy, delta-seconds).
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Whole seconds in `duration`, rounded up.
pub fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    }
}

/// The `Retry-After` seconds for a wait of `duration`: rounded up, at least 1.
pub fn retry_after_secs(duration: Duration) -> u64 {
    ceil_secs(duration).max(1)
}

/// How long the whole quota of `algorithm` takes to come back: the window, or for a
/// token bucket the burst times the emission interval.
pub fn policy_window(algorithm: &AnyAlgorithm) -> Duration {
    match algorithm {
        AnyAlgorithm::Gcra(gcra) => {
            let quota = gcra.quota();
            quota
                .emission_interval()
                .saturating_mul(quota.burst().get())
        }
        AnyAlgorithm::SlidingWindow(sliding) => sliding.quota().window(),
        AnyAlgorithm::FixedWindow(fixed) => fixed.quota().window(),
    }
}

/// `name` as a structured-field string: quoted, `"` and `\` escaped, and anything that
/// is not printable ASCII replaced by `?` (an sf-string cannot carry it).
pub fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// The `RateLimit-Policy` member of one limiter, e.g. `"login";q=10;w=300`.
pub fn policy_item(name: &str, algorithm: &AnyAlgorithm) -> String {
    format!(
        "{};q={};w={}",
        sf_string(name),
        algorithm.limit(),
        ceil_secs(policy_window(algorithm))
    )
}

/// The `t` parameter of a decision: seconds until the next admission when denied,
/// otherwise until the whole quota is back.
fn reset_secs(decision: &Decision) -> u64 {
    if !decision.allowed && !decision.retry_after.is_zero() {
        ceil_secs(decision.retry_after)
    } else {
        ceil_secs(decision.reset_after)
    }
}

/// One limiter's share of the `RateLimit` header: its name (already quoted, see
/// [`sf_string`]) and its decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota<'a> {
    pub(crate) quoted_name: &'a str,
    pub(crate) decision: Decision,
}

/// The `RateLimit-Policy` value of limiters with these policy members (computed once,
/// when a layer is built).
pub(crate) fn policy_header<'a>(items: impl IntoIterator<Item = &'a str>) -> Option<HeaderValue> {
    let joined: Vec<&str> = items.into_iter().collect();
    header_value(&joined.join(", "))
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

/// The quota headers of one decision, ready to go into a response.
///
/// Kept as values rather than a [`HeaderMap`] of their own: an admitted request is the
/// hot path, and inserting two values straight into the response's map saves building
/// and draining a second map per request.
#[derive(Debug, Clone, Default)]
pub(crate) struct QuotaHeaders {
    policy: Option<HeaderValue>,
    state: Option<HeaderValue>,
    legacy: Option<[HeaderValue; 3]>,
}

impl QuotaHeaders {
    /// Appends the headers to `target`.
    pub(crate) fn apply(self, target: &mut HeaderMap) {
        if let Some(value) = self.policy {
            target.append(RATELIMIT_POLICY, value);
        }
        if let Some(value) = self.state {
            target.append(RATELIMIT, value);
        }
        if let Some([limit, remaining, reset]) = self.legacy {
            target.append(X_RATELIMIT_LIMIT, limit);
            target.append(X_RATELIMIT_REMAINING, remaining);
            target.append(X_RATELIMIT_RESET, reset);
        }
    }
}

/// The quota headers for `quotas` under `policy`; legacy headers from
/// `quotas[deciding]` when `legacy`.
pub(crate) fn quota_headers(
    policy: Option<&HeaderValue>,
    quotas: &[Quota<'_>],
    deciding: usize,
    legacy: bool,
) -> QuotaHeaders {
    // Written straight into the buffer the header value will own: one allocation.
    let mut state = BytesMut::with_capacity(quotas.len() * 32);
    for (i, quota) in quotas.iter().enumerate() {
        if i > 0 {
            state.extend_from_slice(b", ");
        }
        let _ = write!(
            state,
            "{};r={};t={}",
            quota.quoted_name,
            quota.decision.remaining,
            reset_secs(&quota.decision)
        );
    }
    let legacy = if legacy {
        quotas.get(deciding).map(|quota| {
            let decision = &quota.decision;
            [
                HeaderValue::from(decision.limit),
                HeaderValue::from(decision.remaining),
                HeaderValue::from(ceil_secs(decision.reset_after)),
            ]
        })
    } else {
        None
    };
    QuotaHeaders {
        policy: policy.cloned(),
        state: HeaderValue::from_maybe_shared(state.freeze()).ok(),
        legacy,
    }
}

fn json_response(
    status: StatusCode,
    retry_after: u64,
    body: &serde_json::Value,
    extra: QuotaHeaders,
) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    extra.apply(headers);
    headers.insert(RETRY_AFTER, HeaderValue::from(retry_after));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The 429 answer for a request denied by `limiter`, which must wait `retry_after`;
/// `headers` are the quota headers.
pub(crate) fn too_many_requests(
    limiter: &str,
    retry_after: Duration,
    headers: QuotaHeaders,
) -> Response<Body> {
    let secs = retry_after_secs(retry_after);
    let body = serde_json::json!({
        "error": "rate_limited",
        "limiter": limiter,
        "retry_after": secs,
        "message": format!("Too many requests for `{limiter}`; retry in {secs} seconds."),
    });
    json_response(StatusCode::TOO_MANY_REQUESTS, secs, &body, headers)
}

/// The 503 answer when `limiter`'s store failed and the limiter is fail-closed.
pub(crate) fn unavailable(limiter: &str, retry_after: Duration) -> Response<Body> {
    let secs = retry_after_secs(retry_after);
    let body = serde_json::json!({
        "error": "rate_limiter_unavailable",
        "limiter": limiter,
        "retry_after": secs,
        "message": format!(
            "The rate limiter `{limiter}` is unavailable; retry in {secs} seconds."
        ),
    });
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        secs,
        &body,
        QuotaHeaders::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use httpower_core::rate::{Gcra, Quota as GcraQuota, SlidingWindow, WindowQuota};

    #[test]
    fn rounding() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(42)), 42);
        assert_eq!(ceil_secs(Duration::from_millis(41_001)), 42);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn sf_strings_are_escaped() {
        assert_eq!(sf_string("login"), "\"login\"");
        assert_eq!(sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(sf_string("é\n"), "\"??\"");
    }

    #[test]
    fn policies() -> Result<(), Box<dyn std::error::Error>> {
        let window = SlidingWindow::new(WindowQuota::new(10, Duration::from_secs(300))?);
        assert_eq!(policy_item("login", &window.into()), "\"login\";q=10;w=300");
        // 2 per second with a burst of 10: the whole bucket refills in 5 s.
        let bucket = Gcra::new(GcraQuota::new(2, Duration::from_secs(1), 10)?);
        assert_eq!(policy_item("api", &bucket.into()), "\"api\";q=10;w=5");
        Ok(())
    }
}
