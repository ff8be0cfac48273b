#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::*;

/// 2023-11-14T22:13:20Z.
const NOW_EPOCH: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_EPOCH)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn read(status: u16, pairs: &[(&str, &str)]) -> Option<ServerFeedback> {
    read_feedback(
        StatusCode::from_u16(status).unwrap(),
        &headers(pairs),
        now(),
    )
}

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

/// Shorthand for the expected feedback: (limit, remaining, reset, window, retry_after).
fn fb(
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_after: Option<Duration>,
    window: Option<Duration>,
    retry_after: Option<Duration>,
) -> ServerFeedback {
    ServerFeedback {
        limit,
        remaining,
        reset_after,
        window,
        retry_after,
        throttled: false,
    }
}

/// (description, headers, expected feedback).
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<ServerFeedback>);

#[test]
fn table() {
    let future_epoch = (NOW_EPOCH + 42).to_string();
    let past_epoch = (NOW_EPOCH - 42).to_string();
    let future_millis = ((NOW_EPOCH + 3) * 1000).to_string();
    let cases: Vec<Case<'_>> = vec![
        ("nothing", vec![], None),
        (
            "unrelated headers",
            vec![("content-type", "text/plain")],
            None,
        ),
        // IETF, newer structured form.
        (
            "structured with policy",
            vec![
                ("ratelimit", "\"default\";r=50;t=30"),
                ("ratelimit-policy", "\"default\";q=100;w=60"),
            ],
            Some(fb(Some(100), Some(50), secs(30), secs(60), None)),
        ),
        (
            "structured, token names",
            vec![
                ("ratelimit", "burst;r=5;t=1"),
                ("ratelimit-policy", "burst;q=10;w=1"),
            ],
            Some(fb(Some(10), Some(5), secs(1), secs(1), None)),
        ),
        (
            "structured without policy",
            vec![("ratelimit", "\"default\";r=0;t=12")],
            Some(fb(None, Some(0), secs(12), None, None)),
        ),
        (
            "structured, several policies: the tightest wins and names match",
            vec![
                ("ratelimit", "\"hour\";r=900;t=3000, \"second\";r=2;t=1"),
                (
                    "ratelimit-policy",
                    "\"hour\";q=1000;w=3600, \"second\";q=10;w=1",
                ),
            ],
            Some(fb(Some(10), Some(2), secs(1), secs(1), None)),
        ),
        (
            "structured, equal remaining: the later reset wins",
            vec![("ratelimit", "a;r=0;t=5, b;r=0;t=50, c;r=0;t=7")],
            Some(fb(None, Some(0), secs(50), None, None)),
        ),
        (
            "structured, policies on separate header lines",
            vec![
                ("ratelimit", "\"day\";r=3;t=100"),
                ("ratelimit-policy", "\"minute\";q=60;w=60"),
                ("ratelimit-policy", "\"day\";q=1000;w=86400"),
            ],
            Some(fb(Some(1000), Some(3), secs(100), secs(86400), None)),
        ),
        (
            "structured, unknown name and several policies: no window guessed",
            vec![
                ("ratelimit", "\"x\";r=3;t=100"),
                ("ratelimit-policy", "\"a\";q=1;w=1, \"b\";q=2;w=2"),
            ],
            Some(fb(None, Some(3), secs(100), None, None)),
        ),
        // IETF, older dictionary form.
        (
            "dictionary",
            vec![("ratelimit", "limit=100, remaining=50, reset=30")],
            Some(fb(Some(100), Some(50), secs(30), None, None)),
        ),
        (
            "dictionary with an unnamed policy",
            vec![
                ("ratelimit", "limit=100, remaining=50, reset=30"),
                ("ratelimit-policy", "100;w=60"),
            ],
            Some(fb(Some(100), Some(50), secs(30), secs(60), None)),
        ),
        (
            "dictionary, several unnamed policies matched by quota",
            vec![
                ("ratelimit", "limit=1000, remaining=50, reset=30"),
                ("ratelimit-policy", "10;w=1, 1000;w=3600"),
            ],
            Some(fb(Some(1000), Some(50), secs(30), secs(3600), None)),
        ),
        // Separate-header draft.
        (
            "separate headers",
            vec![
                ("ratelimit-limit", "100"),
                ("ratelimit-remaining", "99"),
                ("ratelimit-reset", "59"),
            ],
            Some(fb(Some(100), Some(99), secs(59), None, None)),
        ),
        (
            "separate headers with quota policies in the limit",
            vec![
                ("ratelimit-limit", "10, 10;w=1, 50;w=60"),
                ("ratelimit-remaining", "9"),
                ("ratelimit-reset", "1"),
            ],
            Some(fb(Some(10), Some(9), secs(1), secs(1), None)),
        ),
        (
            "separate headers with RateLimit-Policy",
            vec![
                ("ratelimit-limit", "100"),
                ("ratelimit-remaining", "1"),
                ("ratelimit-reset", "5"),
                ("ratelimit-policy", "100;w=60"),
            ],
            Some(fb(Some(100), Some(1), secs(5), secs(60), None)),
        ),
        // X-RateLimit.
        (
            "x-ratelimit with a delta reset",
            vec![
                ("x-ratelimit-limit", "60"),
                ("x-ratelimit-remaining", "59"),
                ("x-ratelimit-reset", "60"),
            ],
            Some(fb(Some(60), Some(59), secs(60), None, None)),
        ),
        (
            "x-ratelimit with an epoch reset (GitHub)",
            vec![
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "4999"),
                ("x-ratelimit-reset", &future_epoch),
                ("x-ratelimit-used", "1"),
                ("x-ratelimit-resource", "core"),
            ],
            Some(fb(Some(5000), Some(4999), secs(42), None, None)),
        ),
        (
            "an epoch in the past means reset now",
            vec![
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &past_epoch),
            ],
            Some(fb(None, Some(0), secs(0), None, None)),
        ),
        (
            "an epoch in milliseconds",
            vec![("x-ratelimit-reset", &future_millis)],
            Some(fb(None, None, secs(3), None, None)),
        ),
        (
            "GitHub used without remaining",
            vec![("x-ratelimit-limit", "60"), ("x-ratelimit-used", "45")],
            Some(fb(Some(60), Some(15), None, None, None)),
        ),
        (
            "used above the limit saturates",
            vec![("x-ratelimit-limit", "60"), ("x-ratelimit-used", "61")],
            Some(fb(Some(60), Some(0), None, None, None)),
        ),
        (
            "reset-after wins over an epoch reset, fractions kept",
            vec![
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1470173023.123"),
                ("x-ratelimit-reset-after", "1.25"),
                ("x-ratelimit-bucket", "abcd1234"),
            ],
            Some(fb(
                Some(5),
                Some(0),
                Some(Duration::from_millis(1250)),
                None,
                None,
            )),
        ),
        (
            "x-rate-limit spelling",
            vec![
                ("x-rate-limit-limit", "900"),
                ("x-rate-limit-remaining", "899"),
                ("x-rate-limit-reset", &future_epoch),
            ],
            Some(fb(Some(900), Some(899), secs(42), None, None)),
        ),
        (
            "header names are case-insensitive",
            vec![("X-RateLimit-Remaining", "3"), ("X-RateLimit-Reset", "9")],
            Some(fb(None, Some(3), secs(9), None, None)),
        ),
        // Precedence and mixing.
        (
            "IETF wins over X-RateLimit field by field",
            vec![
                ("ratelimit", "\"default\";r=5"),
                ("x-ratelimit-remaining", "500"),
                ("x-ratelimit-reset", "20"),
                ("x-ratelimit-limit", "1000"),
            ],
            Some(fb(Some(1000), Some(5), secs(20), None, None)),
        ),
        // Retry-After.
        (
            "retry-after seconds",
            vec![("retry-after", "120")],
            Some(fb(None, None, None, None, secs(120))),
        ),
        (
            "retry-after http-date",
            vec![("retry-after", "Tue, 14 Nov 2023 22:14:20 GMT")],
            Some(fb(None, None, None, None, secs(60))),
        ),
        // Malformed values are dropped field by field.
        (
            "malformed remaining, good reset",
            vec![("x-ratelimit-remaining", "-1"), ("x-ratelimit-reset", "10")],
            Some(fb(None, None, secs(10), None, None)),
        ),
        (
            "all malformed",
            vec![
                ("ratelimit", "garbage;;;,,,=\"\""),
                ("ratelimit-policy", "\"unterminated;q=1"),
                ("x-ratelimit-limit", "lots"),
                ("x-ratelimit-remaining", "1.5"),
                ("x-ratelimit-reset", "soon"),
                ("x-ratelimit-reset-after", "-3"),
                ("retry-after", "later"),
            ],
            None,
        ),
        (
            "a malformed IETF field falls back to X-RateLimit",
            vec![
                ("ratelimit", "\"default\";r=abc;t=10"),
                ("x-ratelimit-remaining", "7"),
            ],
            Some(fb(None, Some(7), secs(10), None, None)),
        ),
        (
            "overflowing numbers are ignored",
            vec![
                ("x-ratelimit-remaining", "99999999999999999999999"),
                ("x-ratelimit-limit", "10"),
            ],
            Some(fb(Some(10), None, None, None, None)),
        ),
    ];

    for (name, pairs, expected) in cases {
        assert_eq!(read(200, &pairs), expected, "{name}");
    }
}

#[test]
fn throttling_statuses() {
    for status in [429, 503] {
        let feedback = read(status, &[("retry-after", "7")]).unwrap();
        assert!(feedback.throttled, "{status}");
        assert_eq!(feedback.retry_after, secs(7));
    }
    for status in [200, 201, 301, 500] {
        let feedback = read(status, &[("retry-after", "7")]).unwrap();
        assert!(!feedback.throttled, "{status}");
        assert_eq!(feedback.retry_after, secs(7), "{status}");
    }
    // A bare 429: nothing to remember.
    assert_eq!(read(429, &[]), None);
}

#[test]
fn non_ascii_values_are_ignored() {
    let mut map = headers(&[("x-ratelimit-reset", "30")]);
    map.insert(
        "x-ratelimit-remaining",
        HeaderValue::from_bytes(b"5\xff").unwrap(),
    );
    map.append(
        "ratelimit",
        HeaderValue::from_bytes(b"\xe2\x80\x9c").unwrap(),
    );
    let feedback = read_feedback(StatusCode::OK, &map, now()).unwrap();
    assert_eq!(feedback.remaining, None);
    assert_eq!(feedback.reset_after, secs(30));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic fuzz: every header this module reads, filled with
    // pseudo-random printable junk drawn from an alphabet rich in separators.
    const ALPHABET: &[u8] = b"0123456789.,;=\"\\ -+eErtqwlimit";
    const NAMES: [&str; 9] = [
        "ratelimit",
        "ratelimit-policy",
        "ratelimit-limit",
        "ratelimit-reset",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-reset-after",
        "retry-after",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2_000 {
        let mut map = HeaderMap::new();
        for name in NAMES {
            let len = (next() % 24) as usize;
            let value: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.insert(name, value);
            }
        }
        let status = if next() % 2 == 0 { 200 } else { 429 };
        let _ = read_feedback(StatusCode::from_u16(status).unwrap(), &map, now());
    }
}

#[test]
fn feedback_drives_server_limits() {
    let limits = ServerLimits::new(16);
    let start = httpower_core::clock::Nanos::ZERO;

    let ok = read(
        200,
        &[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset", &(NOW_EPOCH + 30).to_string()),
        ],
    )
    .unwrap();
    limits.record("api.github.com", &ok, start);
    assert_eq!(limits.admit("api.github.com", start), Admission::Go);
    assert_eq!(
        limits.admit("api.github.com", start),
        Admission::NotBefore(start + Duration::from_secs(30))
    );

    let too_many = read(429, &[("retry-after", "90")]).unwrap();
    limits.record("api.github.com", &too_many, start);
    assert_eq!(
        limits.admit("api.github.com", start + Duration::from_secs(45)),
        Admission::NotBefore(start + Duration::from_secs(90))
    );
    assert_eq!(
        limits.admit("api.github.com", start + Duration::from_secs(90)),
        Admission::Go
    );
}
