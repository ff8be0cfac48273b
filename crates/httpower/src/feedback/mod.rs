//! Server rate-limit feedback: reading the limits a server advertises, and remembering them.
//!
//! # Why listen to the server?
//!
//! A client-side limiter is configured with a guess of what the server allows. The server
//! knows the real figure, and most APIs say it on every response: how many requests the
//! current window allows, how many are left and when the window resets. A client that
//! ignores those headers only finds out it went too fast when it gets a 429, by which time
//! it has spent a request, maybe earned a longer ban (several APIs escalate repeated
//! 429s), and every other task sharing the key is about to hit the same wall. A client
//! that reads them can slow down *before* the 429: once the server says "0 left, resets in
//! 12 s", the next request waits 12 s instead of being refused.
//!
//! This module has two halves:
//!
//! * [`read_feedback`] turns a response's status and headers into a [`ServerFeedback`]:
//!   a small, format-independent summary (limit, remaining, reset, window, `Retry-After`).
//! * [`ServerLimits`] is a bounded, keyed memory of that feedback which the client
//!   consults before sending ([`ServerLimits::admit`]), so concurrent requests share the
//!   remaining budget and wait out an exhausted window.
//!
//! # Header forms understood
//!
//! | Header(s) | Example | Notes |
//! |---|---|---|
//! | `RateLimit` (IETF draft, structured) | `"default";r=50;t=30` | `r` remaining, `t` seconds to reset; with several policies the most restrictive wins |
//! | `RateLimit-Policy` (structured) | `"default";q=100;w=60` | `q` quota (the limit), `w` window seconds, matched to `RateLimit` by name |
//! | `RateLimit` (older draft dictionary) | `limit=100, remaining=50, reset=30` | |
//! | `RateLimit-Policy` (older draft) | `100;w=60` | a bare integer is the quota |
//! | `RateLimit-Limit` / `-Remaining` / `-Reset` | `100` / `50` / `30` | separate-header draft; `RateLimit-Limit: 100, 100;w=60` also gives the window |
//! | `X-RateLimit-Limit` / `-Remaining` / `-Reset` | `5000` / `4999` / `1700000000` | reset is delta *or* epoch, detected (below) |
//! | `X-RateLimit-Used` (GitHub) | `1` | gives `remaining = limit - used` when remaining is absent |
//! | `X-RateLimit-Reset-After` (Discord and others) | `1.25` | delta seconds, fractions allowed; preferred over an epoch reset because it does not depend on clock agreement |
//! | `X-Rate-Limit-Limit` / `-Remaining` / `-Reset` | | the same, spelled with a dash (Twitter, Okta) |
//! | `Retry-After` | `120`, `Sun, 06 Nov 1994 08:49:37 GMT` | any status; all three HTTP-date forms |
//!
//! When several forms are present, each field is taken from the first form that has a
//! well-formed value for it, in the order of the table (the IETF forms first). A malformed
//! value (a negative number, text, a fraction where an integer belongs) is skipped for that
//! field only; nothing here panics, whatever the server sends.
//!
//! # Delta or epoch?
//!
//! `X-RateLimit-Reset` is seconds-until-reset for some servers and a Unix timestamp for
//! others (GitHub, Twitter). A value of more than ten years' worth of seconds cannot be a
//! sensible delta, so it is read as a Unix timestamp (and a value of 10^11 or more, which
//! would be a timestamp thousands of years away, as a timestamp in milliseconds). A
//! timestamp is converted against the `now` the caller passes; one already in the past
//! means "reset now". The same detection is applied to the IETF reset fields, which are
//! specified as deltas: a server that sends a timestamp there is then still understood.
//!
//! Timestamps depend on the client's and the server's clocks agreeing; when a server sends
//! both a timestamp and `X-RateLimit-Reset-After`, the delta is used.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::{HeaderMap, HeaderValue, StatusCode};
//! use httpower::feedback::{read_feedback, Admission, ServerLimits};
//! use httpower_core::clock::Nanos;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("ratelimit", HeaderValue::from_static("\"default\";r=0;t=30"));
//! headers.insert("ratelimit-policy", HeaderValue::from_static("\"default\";q=100;w=60"));
//!
//! let feedback = read_feedback(StatusCode::OK, &headers, SystemTime::now()).unwrap();
//! assert_eq!(feedback.limit, Some(100));
//! assert_eq!(feedback.remaining, Some(0));
//! assert_eq!(feedback.reset_after, Some(Duration::from_secs(30)));
//! assert_eq!(feedback.window, Some(Duration::from_secs(60)));
//!
//! // The client remembers it, and the next request waits for the reset.
//! let limits = ServerLimits::new(1024);
//! let now = Nanos::ZERO;
//! limits.record("api.example.com", &feedback, now);
//! assert_eq!(
//!     limits.admit("api.example.com", now),
//!     Admission::NotBefore(now + Duration::from_secs(30)),
//! );
//! ```

mod headers;
mod limits;

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

pub use limits::{Admission, ServerLimits};

/// What a server said about its rate limits on one response.
///
/// Every field is optional because servers send different subsets; a field is `None` when
/// the server did not send it or sent it malformed. All durations are relative to the
/// moment the response was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFeedback {
    /// How many requests the current window allows (the quota).
    pub limit: Option<u64>,
    /// How many requests are left in the current window.
    pub remaining: Option<u64>,
    /// How long until the window resets and `remaining` is refilled.
    pub reset_after: Option<Duration>,
    /// The length of the quota window, when the server states it (`w=` in the IETF
    /// forms). Used as an upper bound on the reset when no reset time is given.
    pub window: Option<Duration>,
    /// The `Retry-After` header, on whatever status it came with. Whether it means "stop
    /// sending" depends on [`throttled`](Self::throttled): on a 201 or a 3xx it is only a
    /// polling hint.
    pub retry_after: Option<Duration>,
    /// The response was `429 Too Many Requests` or `503 Service Unavailable`: the server
    /// refused this request for load reasons, so the remaining budget is zero whatever the
    /// other headers say, until `retry_after` (or the reset) has passed.
    pub throttled: bool,
}

impl ServerFeedback {
    /// Whether any rate-limit field or `Retry-After` was found.
    pub fn is_empty(&self) -> bool {
        self.limit.is_none()
            && self.remaining.is_none()
            && self.reset_after.is_none()
            && self.window.is_none()
            && self.retry_after.is_none()
    }
}

/// Reads the rate-limit headers and `Retry-After` of a response.
///
/// `now` is the wall-clock time the response was received, used to convert Unix-timestamp
/// resets and HTTP-date `Retry-After` values into durations; it is a parameter so callers
/// and tests choose the clock. Returns `None` when the response carries nothing
/// recognisable (a bare 429 included: without a time there is nothing to remember). See
/// the [module documentation](self) for the forms understood and their precedence.
pub fn read_feedback(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<ServerFeedback> {
    let mut feedback = ServerFeedback {
        throttled: status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::SERVICE_UNAVAILABLE,
        ..ServerFeedback::default()
    };

    // 1. IETF `RateLimit` (either draft form), and the `RateLimit-Policy` it names.
    let current = headers::read_ratelimit(headers, now);
    let policies = headers::read_policies(headers);
    let named = current.name.as_deref().and_then(|name| {
        policies
            .iter()
            .find(|policy| policy.name.as_deref() == Some(name))
    });
    feedback.remaining = current.remaining;
    feedback.reset_after = current.reset_after;
    feedback.limit = current.limit.or(named.and_then(|policy| policy.quota));
    feedback.window = current.window.or(named.and_then(|policy| policy.window));

    // 2. Separate-header forms, in order of preference.
    for family in headers::FAMILIES {
        if feedback.limit.is_none() || feedback.window.is_none() {
            if let Some((limit, window)) = headers::read_limit(headers, family.limit) {
                feedback.limit = feedback.limit.or(limit);
                feedback.window = feedback.window.or(window);
            }
        }
        if feedback.remaining.is_none() {
            feedback.remaining = headers::read_count(headers, family.remaining);
        }
        if feedback.reset_after.is_none() {
            if let Some(reset_after) = family.reset_after {
                feedback.reset_after = headers::read_delta(headers, reset_after);
            }
        }
        if feedback.reset_after.is_none() {
            feedback.reset_after = headers::read_reset(headers, family.reset, now);
        }
    }

    // 3. An unnamed `RateLimit-Policy` (the older form): the policy whose quota is the
    //    limit found above, or the only policy there is.
    if feedback.limit.is_none() || feedback.window.is_none() {
        let unnamed = policies
            .iter()
            .find(|policy| policy.quota.is_some() && policy.quota == feedback.limit)
            .or(match policies.as_slice() {
                [only] => Some(only),
                _ => None,
            });
        if let Some(policy) = unnamed {
            feedback.limit = feedback.limit.or(policy.quota);
            feedback.window = feedback.window.or(policy.window);
        }
    }

    // 4. GitHub's `X-RateLimit-Used`, when remaining itself is missing.
    if feedback.remaining.is_none() {
        if let (Some(limit), Some(used)) = (
            feedback.limit,
            headers::read_count(headers, headers::X_RATELIMIT_USED),
        ) {
            feedback.remaining = Some(limit.saturating_sub(used));
        }
    }

    // 5. `Retry-After`, on any status.
    feedback.retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| httpower_core::retry::parse_retry_after(value, now));

    if feedback.is_empty() {
        None
    } else {
        Some(feedback)
    }
}

#[cfg(test)]
mod tests;
