//! Tolerant parsing of the individual rate-limit header forms.
//!
//! The IETF forms are Structured Fields (RFC 8941), but servers in the wild send sloppy
//! variants of them (extra spaces, tokens where strings belong, integers with fractions),
//! so this is a small forgiving reader rather than a strict Structured Fields parser: it
//! splits lists on commas and parameters on semicolons outside double quotes, and every
//! number is validated on its own, so one malformed member costs only that member.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// `RateLimit` (IETF draft, both the dictionary and the item-list forms).
const RATELIMIT: &str = "ratelimit";
/// `RateLimit-Policy` (IETF draft).
const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// GitHub's count of requests used in the current window.
pub(super) const X_RATELIMIT_USED: &str = "x-ratelimit-used";

/// A longest plausible delta-seconds reset: ten years. A larger value is a Unix time.
const MAX_DELTA_SECONDS: u64 = 10 * 365 * 24 * 60 * 60;
/// From here on, a Unix time in seconds would be more than 1,000 years away (the year
/// 5138), so the value is read as a Unix time in milliseconds.
const MILLIS_EPOCH_FROM: u64 = 100_000_000_000;

/// The names of one family of separate rate-limit headers.
#[derive(Debug)]
pub(super) struct Family {
    /// The limit (quota) header.
    pub(super) limit: &'static str,
    /// The remaining-requests header.
    pub(super) remaining: &'static str,
    /// The reset header: delta seconds or a Unix time, detected.
    pub(super) reset: &'static str,
    /// A reset header that is always delta seconds, when the family has one.
    pub(super) reset_after: Option<&'static str>,
}

/// The separate-header families, most standard first.
pub(super) const FAMILIES: [Family; 3] = [
    Family {
        limit: "ratelimit-limit",
        remaining: "ratelimit-remaining",
        reset: "ratelimit-reset",
        reset_after: None,
    },
    Family {
        limit: "x-ratelimit-limit",
        remaining: "x-ratelimit-remaining",
        reset: "x-ratelimit-reset",
        reset_after: Some("x-ratelimit-reset-after"),
    },
    Family {
        limit: "x-rate-limit-limit",
        remaining: "x-rate-limit-remaining",
        reset: "x-rate-limit-reset",
        reset_after: Some("x-rate-limit-reset-after"),
    },
];

/// What the `RateLimit` header says about the current window.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Current {
    /// The name of the policy the figures belong to (item-list form only).
    pub(super) name: Option<String>,
    /// `limit=` (dictionary form only).
    pub(super) limit: Option<u64>,
    /// `remaining=` or `r=`.
    pub(super) remaining: Option<u64>,
    /// `reset=` or `t=`.
    pub(super) reset_after: Option<Duration>,
    /// A `w=` parameter on `limit=` (dictionary form only).
    pub(super) window: Option<Duration>,
}

/// One quota policy from `RateLimit-Policy`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Policy {
    /// The policy's name (newer form); `None` in the older, unnamed form.
    pub(super) name: Option<String>,
    /// `q=`, or the bare integer of the older form.
    pub(super) quota: Option<u64>,
    /// `w=`.
    pub(super) window: Option<Duration>,
}

/// Reads the `RateLimit` header. With several policies in the item-list form, the most
/// restrictive one is reported: the fewest requests remaining, then the latest reset.
pub(super) fn read_ratelimit(headers: &HeaderMap, now: SystemTime) -> Current {
    let Some(value) = joined(headers, RATELIMIT) else {
        return Current::default();
    };
    let mut current = Current::default();
    let mut tightest: Option<Current> = None;
    for member in split_outside_quotes(&value, b',')
        .into_iter()
        .map(Member::parse)
    {
        match member.key {
            Some(key) if key.eq_ignore_ascii_case("limit") => {
                current.limit = current.limit.or(parse_u64(member.value));
                current.window = current.window.or(member.param("w").and_then(parse_seconds));
            }
            Some(key) if key.eq_ignore_ascii_case("remaining") => {
                current.remaining = current.remaining.or(parse_u64(member.value));
            }
            Some(key) if key.eq_ignore_ascii_case("reset") => {
                current.reset_after = current
                    .reset_after
                    .or(parse_seconds(member.value).and_then(|v| reset_from(v, now)));
            }
            Some(_) => {}
            None => {
                let item = Current {
                    name: Some(unquote(member.value)).filter(|name| !name.is_empty()),
                    remaining: member.param("r").and_then(parse_u64),
                    reset_after: member
                        .param("t")
                        .and_then(parse_seconds)
                        .and_then(|v| reset_from(v, now)),
                    ..Current::default()
                };
                if item.remaining.is_none() && item.reset_after.is_none() {
                    continue;
                }
                if tightest.as_ref().is_none_or(|best| tighter(&item, best)) {
                    tightest = Some(item);
                }
            }
        }
    }
    if let Some(item) = tightest {
        current.name = item.name;
        current.remaining = current.remaining.or(item.remaining);
        current.reset_after = current.reset_after.or(item.reset_after);
    }
    current
}

/// Whether `a` leaves less room than `b`: fewer remaining, or as few and a later reset.
fn tighter(a: &Current, b: &Current) -> bool {
    let remaining = |c: &Current| c.remaining.unwrap_or(u64::MAX);
    let reset = |c: &Current| c.reset_after.unwrap_or(Duration::ZERO);
    (remaining(a), std::cmp::Reverse(reset(a))) < (remaining(b), std::cmp::Reverse(reset(b)))
}

/// Reads every policy of the `RateLimit-Policy` header.
pub(super) fn read_policies(headers: &HeaderMap) -> Vec<Policy> {
    let Some(value) = joined(headers, RATELIMIT_POLICY) else {
        return Vec::new();
    };
    split_outside_quotes(&value, b',')
        .into_iter()
        .map(Member::parse)
        .filter(|member| member.key.is_none())
        .filter_map(|member| {
            let mut policy = Policy::default();
            match parse_u64(member.value) {
                Some(quota) => policy.quota = Some(quota),
                None => policy.name = Some(unquote(member.value)).filter(|name| !name.is_empty()),
            }
            policy.quota = policy.quota.or(member.param("q").and_then(parse_u64));
            policy.window = member.param("w").and_then(parse_seconds);
            (policy.quota.is_some() || policy.window.is_some()).then_some(policy)
        })
        .collect()
}

/// Reads a limit header: `100`, or the draft's `100, 100;w=60, 1000;w=3600` where the
/// first member is the limit and the member with that quota gives the window.
pub(super) fn read_limit(
    headers: &HeaderMap,
    name: &str,
) -> Option<(Option<u64>, Option<Duration>)> {
    let value = first(headers, name)?;
    let members: Vec<Member<'_>> = split_outside_quotes(value, b',')
        .into_iter()
        .map(Member::parse)
        .collect();
    let head = members.first()?;
    let limit = parse_u64(head.value);
    let window = head.param("w").and_then(parse_seconds).or_else(|| {
        let limit = limit?;
        members
            .iter()
            .skip(1)
            .filter(|member| parse_u64(member.value) == Some(limit))
            .find_map(|member| member.param("w").and_then(parse_seconds))
    });
    (limit.is_some() || window.is_some()).then_some((limit, window))
}

/// Reads a count header (`remaining`, `used`): a non-negative integer, the first member
/// if the server sent a list.
pub(super) fn read_count(headers: &HeaderMap, name: &str) -> Option<u64> {
    parse_u64(first_member(first(headers, name)?))
}

/// Reads a header that is always delta seconds (fractions allowed).
pub(super) fn read_delta(headers: &HeaderMap, name: &str) -> Option<Duration> {
    parse_seconds(first_member(first(headers, name)?))
}

/// Reads a reset header that is delta seconds or a Unix time (detected).
pub(super) fn read_reset(headers: &HeaderMap, name: &str, now: SystemTime) -> Option<Duration> {
    reset_from(read_delta(headers, name)?, now)
}

/// Interprets a reset value as delta seconds or a Unix time, as the module docs explain.
/// `None` when the value is a time too far away to represent.
pub(super) fn reset_from(value: Duration, now: SystemTime) -> Option<Duration> {
    let at = if value.as_secs() >= MILLIS_EPOCH_FROM {
        UNIX_EPOCH.checked_add(value / 1000)?
    } else if value.as_secs() > MAX_DELTA_SECONDS {
        UNIX_EPOCH.checked_add(value)?
    } else {
        return Some(value);
    };
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first value of a header, if it is visible ASCII.
fn first<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// All values of a (list-valued) header joined with commas, skipping values that are not
/// visible ASCII; `None` when none remain.
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The bare value of the first member of a list (`50` in `50;w=60, 10`).
fn first_member(value: &str) -> &str {
    let member = split_outside_quotes(value, b',')
        .into_iter()
        .next()
        .unwrap_or_default();
    Member::parse(member).value
}

/// One list member: `key=value;p1=v1;p2` or `item;p1=v1`.
#[derive(Debug)]
struct Member<'a> {
    /// The dictionary key, when the member is `key=value`.
    key: Option<&'a str>,
    /// The value (dictionary form) or the bare item (list form), trimmed.
    value: &'a str,
    /// Parameters, trimmed; a parameter without `=` has an empty value.
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> Member<'a> {
    fn parse(text: &'a str) -> Self {
        let mut parts = split_outside_quotes(text, b';').into_iter();
        let head = trim(parts.next().unwrap_or_default());
        let (key, value) = match head.split_once('=') {
            Some((key, value)) if !head.starts_with('"') => (Some(trim(key)), trim(value)),
            _ => (None, head),
        };
        let params = parts
            .map(|param| {
                let param = trim(param);
                match param.split_once('=') {
                    Some((name, value)) => (trim(name), trim(value)),
                    None => (param, ""),
                }
            })
            .collect();
        Member { key, value, params }
    }

    /// The value of the first parameter called `name` (ASCII case-insensitive).
    fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|&(_, value)| value)
    }
}

/// Splits `text` on `separator` where it is not inside a double-quoted string (a
/// backslash escapes the next character inside quotes).
fn split_outside_quotes(text: &str, separator: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (index, byte) in text.bytes().enumerate() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_quotes = false;
            }
        } else if byte == b'"' {
            in_quotes = true;
        } else if byte == separator {
            // `separator` is ASCII, so `index` is a character boundary.
            parts.push(text.get(start..index).unwrap_or_default());
            start = index + 1;
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

/// A quoted string's content with its escapes removed; anything else as it is.
fn unquote(text: &str) -> String {
    match text
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
    {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => text.to_owned(),
    }
}

/// Trims spaces and tabs (the only whitespace HTTP allows around values).
fn trim(text: &str) -> &str {
    text.trim_matches(|c| c == ' ' || c == '\t')
}

/// A non-negative decimal integer, nothing else (no sign, no fraction, no overflow).
fn parse_u64(text: &str) -> Option<u64> {
    let text = trim(text);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Non-negative decimal seconds with an optional fraction (`30`, `1.25`), read exactly
/// to the nanosecond (further digits are validated and dropped).
fn parse_seconds(text: &str) -> Option<Duration> {
    let text = trim(text);
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let seconds = parse_u64(whole)?;
    let nanos = match fraction {
        None => 0,
        Some(fraction) => {
            if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let mut nanos: u32 = 0;
            for position in 0..9 {
                let digit = fraction.as_bytes().get(position).map_or(0, |b| b - b'0');
                nanos = nanos * 10 + u32::from(digit);
            }
            nanos
        }
    };
    Some(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_u64("42"), Some(42));
        assert_eq!(parse_u64(" 42\t"), Some(42));
        assert_eq!(parse_u64("0"), Some(0));
        for bad in [
            "",
            " ",
            "-1",
            "+1",
            "4.2",
            "1e3",
            "0x10",
            "abc",
            "18446744073709551616",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn seconds_allow_fractions() {
        assert_eq!(parse_seconds("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_seconds("1.25"), Some(Duration::from_millis(1250)));
        assert_eq!(parse_seconds("0.000000001"), Some(Duration::from_nanos(1)));
        assert_eq!(
            parse_seconds("2.1234567899"),
            Some(Duration::new(2, 123_456_789))
        );
        for bad in [
            "", ".5", "5.", "-1", "1.2.3", "1,5", "1.5s", "NaN", "inf", "1e3",
        ] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn splitting_respects_quotes() {
        assert_eq!(
            split_outside_quotes(r#""a,b";r=1, "c\",d";r=2, e"#, b','),
            vec![r#""a,b";r=1"#, r#" "c\",d";r=2"#, " e"]
        );
        assert_eq!(split_outside_quotes("", b','), vec![""]);
        assert_eq!(unquote(r#""c\",d""#), "c\",d");
        assert_eq!(unquote("token"), "token");
        assert_eq!(unquote("\""), "\"");
    }

    #[test]
    fn members() {
        let member = Member::parse(r#" "default" ; r=50;t = 30 ;flag"#);
        assert_eq!(member.key, None);
        assert_eq!(member.value, "\"default\"");
        assert_eq!(member.param("r"), Some("50"));
        assert_eq!(member.param("T"), Some("30"));
        assert_eq!(member.param("flag"), Some(""));
        assert_eq!(member.param("q"), None);

        let member = Member::parse("limit=100;w=60");
        assert_eq!(member.key, Some("limit"));
        assert_eq!(member.value, "100");
        assert_eq!(member.param("w"), Some("60"));

        let member = Member::parse(r#""a=b";q=1"#);
        assert_eq!(member.key, None);
        assert_eq!(member.value, r#""a=b""#);
    }

    #[test]
    fn reset_detection() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = Duration::from_secs;
        assert_eq!(reset_from(secs(0), now), Some(secs(0)));
        assert_eq!(reset_from(secs(30), now), Some(secs(30)));
        assert_eq!(
            reset_from(secs(MAX_DELTA_SECONDS), now),
            Some(secs(MAX_DELTA_SECONDS))
        );
        // Unix seconds, future and past.
        assert_eq!(reset_from(secs(1_700_000_060), now), Some(secs(60)));
        assert_eq!(reset_from(secs(1_600_000_000), now), Some(secs(0)));
        // Just over ten years is not a delta: an epoch long past.
        assert_eq!(reset_from(secs(MAX_DELTA_SECONDS + 1), now), Some(secs(0)));
        // Fractional Unix seconds (Discord).
        assert_eq!(
            reset_from(Duration::from_millis(1_700_000_001_500), now),
            Some(Duration::from_millis(1500))
        );
        // Unix milliseconds.
        assert_eq!(reset_from(secs(1_700_000_002_000), now), Some(secs(2)));
        // Absurd values do not overflow.
        assert_eq!(reset_from(secs(u64::MAX), now).map(|_| ()), Some(()));
        assert_eq!(reset_from(Duration::MAX, now).map(|_| ()), Some(()));
    }
}
