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
    // `httpdate` accepts the three HTTP-date forms and rejects non-ASCII input itself,
    // but reads RFC 850's two-digit years with a fixed pivot (00-69 are 20xx), where
    // RFC 9110 asks for a window that moves with `now`: those dates are rebuilt with the
    // right century first.
    let date = match rfc850_with_century(value, now) {
        Some(fixdate) => httpdate::parse_http_date(&fixdate),
        None => httpdate::parse_http_date(value),
    };
    Some(date.ok()?.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Rewrites an RFC 850 date (`Sunday, 06-Nov-94 08:49:37 GMT`) as the equivalent
/// IMF-fixdate, reading the two-digit year as RFC 9110 section 5.6.7 says: the year with
/// those last two digits that is not more than 50 years after `now`'s year. `None` when
/// `value` is not shaped like an RFC 850 date.
fn rfc850_with_century(value: &str, now: SystemTime) -> Option<String> {
    const WEEKDAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let (weekday, rest) = value.split_once(", ")?;
    if !WEEKDAYS.contains(&weekday) {
        return None;
    }
    // `06-Nov-94 08:49:37 GMT`
    let bytes = rest.as_bytes();
    if bytes.len() != 22 || bytes[2] != b'-' || bytes[6] != b'-' || bytes[9] != b' ' {
        return None;
    }
    let two_digits = rest.get(7..9)?;
    if !two_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let yy = i64::from(two_digits.parse::<u8>().ok()?);
    let current = civil_year(now);
    let mut year = current - current.rem_euclid(100) + yy;
    if year > current + 50 {
        year -= 100;
    } else if year <= current - 50 {
        year += 100;
    }
    let (day, month, time) = (rest.get(0..2)?, rest.get(3..6)?, rest.get(10..)?);
    let short_weekday = weekday.get(0..3)?;
    Some(format!("{short_weekday}, {day} {month} {year:04} {time}"))
}

/// The UTC calendar year of `time` (1970 for anything before the Unix epoch).
fn civil_year(time: SystemTime) -> i64 {
    let days = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / 86_400);
    // Days since 1970-01-01 to a proleptic Gregorian year, counting in 400-year eras
    // that start on March 1st (so that the leap day ends each year).
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let year = year_of_era + era * 400;
    if month_index >= 10 {
        year + 1
    } else {
        year
    }
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
    fn rfc850_two_digit_years_follow_now() {
        // 2026-01-01 was a Thursday; 2075-01-01 is a Tuesday.
        let y2026 = 1_767_225_600;
        let y2075 = 3_313_526_400;
        let now = at(y2026 - 60);
        let wait = parse_retry_after("Thursday, 01-Jan-26 00:00:00 GMT", now);
        assert_eq!(wait, Some(Duration::from_secs(60)));
        // In 2025, "75" is 2075 (50 years ahead), not 1975.
        let wait = parse_retry_after("Tuesday, 01-Jan-75 00:00:00 GMT", now);
        assert_eq!(wait, Some(Duration::from_secs(y2075 - (y2026 - 60))));
        // ... while in 1994, "26" is 2026 (32 years ahead) and "94" is 1994.
        let wait = parse_retry_after("Thursday, 01-Jan-26 00:00:00 GMT", at(EXAMPLE));
        assert_eq!(wait, Some(Duration::from_secs(y2026 - EXAMPLE)));
        assert_eq!(civil_year(at(EXAMPLE)), 1994);
        assert_eq!(civil_year(at(y2026 - 1)), 2025);
        assert_eq!(civil_year(at(y2026)), 2026);
        assert_eq!(civil_year(UNIX_EPOCH - Duration::from_secs(1)), 1970);
    }

    #[test]
    fn retry_after_extreme_dates_do_not_panic() {
        let now = at(EXAMPLE);
        // The largest date httpdate represents does not panic.
        assert!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).is_some());
    }

    /// `date` written as IMF-fixdate, RFC 850 and asctime, in that order.
    fn http_date_forms(date: u64) -> [String; 3] {
        let imf = httpdate::fmt_http_date(at(date)); // `Sun, 06 Nov 1994 08:49:37 GMT`
        let (wday, day, month, year, time) = (
            &imf[0..3],
            &imf[5..7],
            &imf[8..11],
            &imf[12..16],
            &imf[17..25],
        );
        let long_wday = match wday {
            "Mon" => "Monday",
            "Tue" => "Tuesday",
            "Wed" => "Wednesday",
            "Thu" => "Thursday",
            "Fri" => "Friday",
            "Sat" => "Saturday",
            _ => "Sunday",
        };
        let rfc850 = format!("{long_wday}, {day}-{month}-{} {time} GMT", &year[2..]);
        let day_padded = format!("{:>2}", day.trim_start_matches('0'));
        let asctime = format!("{wday} {month} {day_padded} {time} {year}");
        [imf, rfc850, asctime]
    }

    /// One edit of a string, at a position taken modulo its length in characters.
    #[derive(Debug, Clone)]
    enum Edit {
        Replace(usize, char),
        Insert(usize, char),
        Delete(usize),
        Truncate(usize),
        Swap(usize, usize),
    }

    /// Characters that keep a date almost valid (digits, separators, letters) as well as
    /// arbitrary ones, multi-byte characters included.
    fn edit_char() -> impl proptest::strategy::Strategy<Value = char> {
        use proptest::prelude::*;
        prop_oneof![
            3 => proptest::char::range('0', '9'),
            2 => proptest::sample::select(vec![' ', ',', '-', ':', '\t', 'G', 'M', 'T']),
            2 => proptest::char::range('A', 'z'),
            2 => any::<char>(),
        ]
    }

    fn edit() -> impl proptest::strategy::Strategy<Value = Edit> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<usize>(), edit_char()).prop_map(|(at, c)| Edit::Replace(at, c)),
            (any::<usize>(), edit_char()).prop_map(|(at, c)| Edit::Insert(at, c)),
            any::<usize>().prop_map(Edit::Delete),
            any::<usize>().prop_map(Edit::Truncate),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        ]
    }

    fn apply(value: &str, edits: &[Edit]) -> String {
        let mut chars: Vec<char> = value.chars().collect();
        for edit in edits {
            let len = chars.len().max(1);
            match *edit {
                Edit::Replace(at, c) if !chars.is_empty() => chars[at % len] = c,
                Edit::Insert(at, c) => chars.insert(at % (chars.len() + 1), c),
                Edit::Delete(at) if !chars.is_empty() => {
                    chars.remove(at % len);
                }
                Edit::Truncate(at) => chars.truncate(at % len),
                Edit::Swap(a, b) if !chars.is_empty() => chars.swap(a % len, b % len),
                Edit::Replace(..) | Edit::Delete(_) | Edit::Swap(..) => {}
            }
        }
        chars.into_iter().collect()
    }

    proptest::proptest! {
        /// Near-valid dates: each of the three forms with a few characters replaced,
        /// inserted, deleted, swapped or cut off. The fixed-position parsing of RFC 850
        /// dates is where a malformed value could index out of bounds or split a
        /// multi-byte character; none may panic, and anything accepted must still be a
        /// date httpdate can represent.
        #[test]
        fn retry_after_survives_mutated_dates(
            now in 0u64..4_000_000_000,
            offset in -1_500_000_000i64..1_500_000_000,
            form in 0usize..3,
            edits in proptest::collection::vec(edit(), 1..4),
        ) {
            // Within the window that RFC 850's two-digit years can express.
            let date = now.saturating_add_signed(offset);
            let original = &http_date_forms(date)[form];
            proptest::prop_assert!(parse_retry_after(original, at(now)).is_some(), "{}", original);
            let mutated = apply(original, &edits);
            let parsed = parse_retry_after(&mutated, at(now));
            if let Some(wait) = parsed {
                if !mutated.trim_matches(|c| c == ' ' || c == '\t').bytes().all(|b| b.is_ascii_digit()) {
                    proptest::prop_assert!(
                        wait <= Duration::from_secs(253_402_300_799),
                        "{:?} gave {:?}", mutated, wait
                    );
                }
            }
        }

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

        /// The same instant written in the two obsolete forms parses the same, for dates
        /// within the 50-year window RFC 850's two-digit years can express.
        #[test]
        fn retry_after_obsolete_forms_match_fixdate(
            now in 0u64..4_000_000_000,
            offset in -1_500_000_000i64..1_500_000_000,
        ) {
            let date = now.saturating_add_signed(offset);
            let [imf, rfc850, asctime] = http_date_forms(date);
            let expected = parse_retry_after(&imf, at(now));
            proptest::prop_assert!(expected.is_some());
            proptest::prop_assert_eq!(parse_retry_after(&rfc850, at(now)), expected, "{}", rfc850);
            proptest::prop_assert_eq!(parse_retry_after(&asctime, at(now)), expected, "{}", asctime);
        }
    }
}
