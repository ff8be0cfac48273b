//! Parsing the `Retry-After` header.
//!
//! A server that answers 429 or 503 may say when to come back, either as a number of
//! seconds or as an absolute HTTP-date. RFC 9110 defines one preferred date format and
//! requires recipients to accept two obsolete ones, and servers in the wild still send all
//! three, so a parser that only knows the preferred one turns a valid hint into "no hint"
//! and the client falls back to its own, usually shorter, backoff.
//!
//! [`parse_retry_after`] accepts:
//!
//! * delta-seconds: `120` (surrounding whitespace allowed, absurdly large values saturate);
//! * IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`;
//! * RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`;
//! * asctime: `Sun Nov  6 08:49:37 1994`.
//!
//! A date at or before `now` means "retry now" and yields [`Duration::ZERO`]. Anything
//! else (empty, negative, fractional, non-ASCII, a malformed date) yields `None`; the
//! function never panics, whatever the input.
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use httpower_core::retry::parse_retry_after;
//!
//! let now = UNIX_EPOCH + Duration::from_secs(784_111_717); // 08:48:37 on that Sunday
//! assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
//! assert_eq!(
//!     parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
//!     Some(Duration::from_secs(60)),
//! );
//! assert_eq!(parse_retry_after("soon", now), None);
//! ```

use std::time::{Duration, SystemTime};

/// Parses a `Retry-After` value into how long to wait from `now`.
///
/// `now` is wall-clock time because an HTTP-date is wall-clock time; it is a parameter so
/// that callers (and tests) decide which clock that is. Returns `None` when the value is
/// neither delta-seconds nor an HTTP-date, and `Some(Duration::ZERO)` for a date that is
/// not in the future.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim_matches(|c: char| c == ' ' || c == '\t');
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(parse_delta_seconds(value));
    }
    // `httpdate` accepts the three HTTP-date forms and rejects non-ASCII input itself.
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `value` is a non-empty run of ASCII digits; saturates instead of overflowing.
fn parse_delta_seconds(value: &str) -> Duration {
    let seconds = value.bytes().fold(0u64, |acc, digit| {
        acc.saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    });
    Duration::from_secs(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// 1994-11-06 08:49:37 UTC, the example date of RFC 9110.
    const EXAMPLE: u64 = 784_111_777;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_parses_all_http_date_forms() {
        let now = at(EXAMPLE - 90);
        let expected = Some(Duration::from_secs(90));
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
            "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850
            "Sun Nov  6 08:49:37 1994",       // asctime
            "  Sun, 06 Nov 1994 08:49:37 GMT\t",
        ] {
            assert_eq!(parse_retry_after(form, now), expected, "form {form:?}");
        }

        // delta-seconds
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("007", now), Some(Duration::from_secs(7)));

        // A date in the past (or exactly now) means "retry now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(EXAMPLE + 3600)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", at(EXAMPLE)),
            Some(Duration::ZERO)
        );

        // Overflow saturates instead of panicking.
        assert_eq!(
            parse_retry_after("99999999999999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );

        // Garbage is `None`.
        for garbage in [
            "",
            "   ",
            "-1",
            "+5",
            "1.5",
            "1e3",
            "0x10",
            "12 34",
            "soon",
            "١٢",                            // Arabic-Indic digits
            "Sun, 06 Nov 1994 08:49:37 UTC", // wrong zone
            "Sün, 06 Nov 1994 08:49:37 GMT", // non-ASCII
            "Sun, 06 Nov 1994 08:49:37",     // truncated
            "Sun, 32 Nov 1994 08:49:37 GMT", // no such day
            "Sun, 06 Nov 1994 25:49:37 GMT", // no such hour
            "Mon, 06 Nov 1994 08:49:37 GMT", // weekday does not match the date
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "\u{0}",
        ] {
            assert_eq!(parse_retry_after(garbage, now), None, "input {garbage:?}");
        }
    }

    #[test]
    fn retry_after_future_dates_across_years() {
        let now = at(EXAMPLE);
        // RFC 850 two-digit years below 70 are read as 20xx.
        let wait = parse_retry_after("Thursday, 01-Jan-26 00:00:00 GMT", now);
        assert_eq!(wait, Some(Duration::from_secs(1_767_225_600 - EXAMPLE)));
        // The largest date httpdate represents does not panic.
        assert!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).is_some());
    }

    proptest::proptest! {
        #[test]
        fn retry_after_never_panics(value in ".{0,40}", secs in 0u64..4_000_000_000) {
            let _ = parse_retry_after(&value, at(secs));
        }

        #[test]
        fn retry_after_roundtrips_formatted_dates(date in 0u64..253_402_300_799, now in 0u64..253_402_300_799) {
            let formatted = httpdate::fmt_http_date(at(date));
            let expected = Duration::from_secs(date.saturating_sub(now));
            proptest::prop_assert_eq!(parse_retry_after(&formatted, at(now)), Some(expected));
        }
    }
}
